"""FLOPs of an ONNX graph at a fixed batch, from shape inference: 2·MACs of MatMul, Gemm and Conv
(the ops that dominate this model; element-wise ops are left out and said to be)."""
from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import numpy as np
import onnx
from onnx import shape_inference


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        dims = v.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = tuple(d.dim_value for d in dims)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _macs_per_output(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """Multiply-adds per output element of a MatMul, Gemm or Conv: the reduced dimension, or a Conv's kernel
    volume times its input channels per group; None where shape inference left an operand's shape unknown."""
    a = shapes.get(node.input[0])
    if a is None:
        return None
    if node.op_type == "Conv":
        w = shapes.get(node.input[1]) if len(node.input) > 1 else None
        return None if w is None else int(np.prod(w[1:]))
    if node.op_type == "Gemm":
        trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
        return a[0] if trans_a else a[1]
    return a[-1]


class FlopCount(TypedDict):
    """FLOPs of a graph at one batch: in all, by op type (GFLOP), and how many counted ops lacked a shape."""
    batch: int
    gflops: float
    by_op_gflops: dict[str, float]
    nodes_without_shapes: int
    counted: str  # what was counted


def count_batches(path: str | Path, batches: list[int]) -> dict[int, FlopCount]:
    """:func:`count` for several batch sizes, reading the file once."""
    model = onnx.load(str(path))
    return {b: count(model, b) for b in batches}


def count(path: str | Path | onnx.ModelProto, batch: int = 1) -> FlopCount:
    model = onnx.ModelProto()
    model.CopyFrom(path if isinstance(path, onnx.ModelProto) else onnx.load(str(path)))
    for v in [*model.graph.input, *model.graph.output]:
        d0 = v.type.tensor_type.shape.dim[0]
        if d0.HasField("dim_param"):
            d0.dim_value = batch
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes = _shapes(model)
    total, unknown, by_op = 0, 0, {"MatMul": 0, "Gemm": 0, "Conv": 0}
    for node in model.graph.node:
        if node.op_type not in by_op:
            continue
        out, k = shapes.get(node.output[0]), _macs_per_output(node, shapes)
        if out is None or k is None:
            unknown += 1
            continue
        flops = 2 * int(np.prod(out)) * k
        by_op[node.op_type] += flops
        total += flops
    return {"batch": batch, "gflops": total / 1e9, "by_op_gflops": {k: v / 1e9 for k, v in by_op.items()},
            "nodes_without_shapes": unknown, "counted": "2*MACs of MatMul/Gemm/Conv"}

"""FP16 ONNX: float16 compute with overflow-prone ops kept in float32 and float32 I/O, via
onnxconverter-common's converter with a block list (TensorRT's strongly typed mode reads the types)."""
from __future__ import annotations

import warnings
from pathlib import Path

import onnx

from dcube_edge.runtimes.files import atomic_path

# Reductions, normalisations, softmax and transcendental ops overflow or lose too much in fp16.
KEEP_FP32 = ["LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Exp", "Erf",
             "Div", "BatchNormalization", "Resize", "Sigmoid"]


def convert(src: str | Path, dst: str | Path) -> Path:
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(KEEP_FP32))
    with warnings.catch_warnings():  # one warning per clipped tiny constant: noise, not news
        warnings.simplefilter("ignore", UserWarning)
        half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block,
                                                disable_shape_infer=False)
    restore_fp32_outputs(half, {o.name for o in model.graph.output
                                if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT})
    with atomic_path(dst) as tmp:
        onnx.save(half, str(tmp))
        onnx.checker.check_model(str(tmp))
    return Path(dst)


def restore_fp32_outputs(model: onnx.ModelProto, names: set[str]) -> None:
    """Make the named graph outputs float32 again. The converter leaves an output float16 when a
    blocked op (here the final ReduceMean over timesteps) feeds it through its own fp16 cast."""
    for out in model.graph.output:
        if out.name in names and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
            inner = f"{out.name}__fp16"
            for node in model.graph.node:
                node.output[:] = [inner if o == out.name else o for o in node.output]
                node.input[:] = [inner if i == out.name else i for i in node.input]
            model.graph.node.append(onnx.helper.make_node("Cast", [inner], [out.name], to=onnx.TensorProto.FLOAT,
                                                          name=f"{out.name}__to_fp32"))
            out.type.tensor_type.elem_type = onnx.TensorProto.FLOAT

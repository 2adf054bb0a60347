"""INT8 QDQ ONNX with onnxruntime's static quantizer: symmetric per-channel int8 weights, symmetric
int8 activations (every zero point 0), opset ≥ 13 — the form TensorRT's explicit quantization accepts."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from dcube_edge.runtimes.files import atomic_path
from dcube_edge.runtimes.sections import QDQRecipe

from .scopes import in_scopes


class _Reader:
    """onnxruntime CalibrationDataReader over an in-memory array."""

    def __init__(self, name: str, images: np.ndarray, batch: int = 16):
        self.name, self.images, self.batch, self.i = name, images, batch, 0

    def get_next(self) -> dict | None:
        if self.i >= len(self.images):
            return None
        chunk = self.images[self.i:self.i + self.batch]
        self.i += self.batch
        return {self.name: np.ascontiguousarray(chunk, dtype=np.float32)}

    def rewind(self) -> None:
        self.i = 0


# Q/DQ only in front of the ops TensorRT runs in int8; LayerNorm, Softmax, Add etc. stay float.
OP_TYPES = ["Conv", "MatMul", "Gemm"]


def excluded_nodes(model: onnx.ModelProto, scopes: list[str]) -> list[str]:
    """Nodes whose names fall under any of ``scopes``."""
    return [n.name for n in model.graph.node if in_scopes(n.name, scopes)]


def quantize(src: str | Path, dst: str | Path, images: np.ndarray, input_name: str, keep_float: list[str],
             method: str = "minmax") -> QDQRecipe:
    """Q/DQ in front of :data:`OP_TYPES` except in the modules ``keep_float`` (the precision policy's)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    with tempfile.TemporaryDirectory() as d:
        pre = Path(d) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        exclude = excluded_nodes(onnx.load(str(pre)), keep_float)
        # The MinMax calibrator reduces every tensor to its range inside the graph; only the batch's own
        # activations are held at once, so large images go through in small batches.
        batch = 16 if images.shape[-1] <= 64 else 2
        with atomic_path(dst) as tmp:
            quantize_static(str(pre), str(tmp), _Reader(input_name, images, batch),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=methods[method], op_types_to_quantize=OP_TYPES,
                            nodes_to_exclude=exclude,
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                           "CalibTensorRangeSymmetric": True,
                                           # TensorRT takes int8 Q/DQ only; int32 bias DQ is refused
                                           "QuantizeBias": False})
            onnx.checker.check_model(str(tmp))
    return QDQRecipe("onnxruntime.quantization.quantize_static", "QDQ", "int8 symmetric per-channel",
                     "int8 symmetric per-tensor", method, tuple(OP_TYPES), tuple(keep_float), len(exclude))


def qdq_properties(path: str | Path) -> dict:
    """What TensorRT checks of a QDQ graph: opset, zero points, per-channel weight scales."""
    model = onnx.load(str(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zps = [inits[n.input[2]] for n in q if len(n.input) > 2 and n.input[2] in inits]
    per_channel = [n for n in q if n.op_type == "DequantizeLinear" and n.input[0] in inits
                   and inits[n.input[1]].ndim == 1 and inits[n.input[1]].size > 1]
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {"opset": opset, "qdq_nodes": len(q),
            "zero_points_all_zero": bool(zps) and all(not np.any(z) for z in zps),
            "zero_point_dtypes": sorted({str(z.dtype) for z in zps}),
            "per_channel_weights": len(per_channel)}

"""The mixed-precision fp16 ONNX (calibration/fp16.py): fp16 compute, overflow-prone ops and the I/O float32."""
import onnx
import pytest

from dcube_edge import runtimes

pytestmark = pytest.mark.backends  # make test-isa runs this module as the other CPU classes


def test_fp16_onnx_is_mixed_precision_with_fp32_io(engines):
    path = engines[("onnxruntime", "fp16")] / "model.onnx"
    model = onnx.load(str(path))
    f16 = onnx.TensorProto.FLOAT16
    assert any(i.data_type == f16 for i in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    for node in inferred.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax"):
            assert types.get(node.input[0]) == onnx.TensorProto.FLOAT, node.name
    record = runtimes.read(engines[("onnxruntime", "fp16")]).record
    assert record.precision.recipe.io == "float32"
    assert record.parity.top1_agreement == 1.0
    assert record.parity.max_abs_logit_diff < 0.05

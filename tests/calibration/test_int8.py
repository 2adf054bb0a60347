"""The int8 Q/DQ ONNX (calibration/int8.py): what TensorRT's explicit quantization accepts, run here by ONNX Runtime."""
import numpy as np
import onnx
import pytest

from dcube_edge import runtimes
from dcube_edge.calibration.int8 import qdq_properties

pytestmark = pytest.mark.backends  # make test-isa runs this module as the other CPU classes


def test_int8_qdq_graph_is_what_tensorrt_accepts(engines):
    path = engines[("onnxruntime", "int8")] / "model.onnx"
    props = qdq_properties(path)
    assert props["opset"] >= 13
    assert props["zero_points_all_zero"]
    assert props["zero_point_dtypes"] == ["int8"]
    assert props["per_channel_weights"] > 0
    assert props["qdq_nodes"] > 0
    record = runtimes.read(engines[("onnxruntime", "int8")]).record
    assert record.precision.calibration_set.size == 48
    assert len(record.precision.calibration_set.sha256) == 64
    assert record.calibration.temperature > 0  # the probability calibration, a different thing, has its own section
    assert record.precision.recipe.weights == "int8 symmetric per-channel"
    assert record.parity.top1_agreement >= 0.9
    assert record.parity.logit_cosine_mean > 0.95
    model = onnx.load(str(path))
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    gemms = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    in_head = [n for n in gemms if n.name.startswith("head.")]
    assert any(n.name.startswith("head.resnet") for n in in_head)
    assert in_head
    assert not any(set(n.input) & dq_out for n in in_head)  # the step-2 head stays float (see int8.py)
    assert any(set(n.input) & dq_out for n in gemms if n.name.startswith("trunk."))
    assert not any(n.op_type == "LayerNormalization" and set(n.input) & dq_out for n in model.graph.node)
    with runtimes.load(engines[("onnxruntime", "int8")]) as clf:
        assert clf.logits(np.zeros((3, 1, 32, 32), np.float32)).shape == (3, 3)

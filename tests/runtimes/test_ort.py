"""The ONNX Runtime runner (runtimes/ort.py) on a real session of a one-node graph."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from dcube_edge.errors import RunnerNotActive

pytest.importorskip("onnxruntime")


def negation(path):
    graph = helper.make_graph([helper.make_node("Neg", ["images"], ["logits"])], "neg",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_profile_is_read_while_active_and_refused_after(tmp_path):
    from dcube_edge.runtimes.ort import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(negation(tmp_path / "neg.onnx"), providers=["CPUExecutionProvider"], profile=True)
    with pytest.raises(RunnerNotActive):  # never activated: no session to profile
        runner.op_times()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with runner:
        np.testing.assert_array_equal(runner.infer({"images": x})["logits"], -x)
        assert [op for op, _, _ in runner.op_times()] == ["Neg"]
    with pytest.raises(RunnerNotActive):  # deactivated: the session is gone (was AttributeError on None)
        runner.op_times()

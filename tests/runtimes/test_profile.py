"""Per-op profiles by op type (runtimes/profile.py) on real engines."""
import pytest

from dcube_edge import runtimes

pytestmark = pytest.mark.backends  # make test-isa runs this module as the other CPU classes


@pytest.mark.parametrize("key", [("onnxruntime", "int8"), ("openvino", "int8"), ("openvino", "bf16")])
def test_op_profile_by_type(engines, key):
    from dcube_edge.runtimes.profile import op_profile

    if key not in engines:
        pytest.skip(f"{key} not built here")
    prof = op_profile(runtimes.read(engines[key]), batch=2, iterations=3, warmup=1)
    assert prof["ops"]
    assert sum(o["share"] for o in prof["ops"]) == pytest.approx(1.0)
    assert all(0 <= o["min_ms"] <= o["ms"] and o["ops_per_call"] > 0 for o in prof["ops"])
    assert prof["iterations"] == 3
    types = {o["op_type"] for o in prof["ops"]}
    assert types & {"MatMul", "MatMulInteger", "FullyConnected", "QLinearMatMul", "Convolution", "Conv", "QLinearConv"}, types
    if key[0] == "openvino":
        assert any(o["kernels"] for o in prof["ops"])  # e.g. brgemm_avx512_amx_bf16

"""The OpenVINO export's measured choices on real IRs (export/openvino_checks.py): the timer compiles and times
each IR under each hint; the attention's quantizers are found and removed completely."""
import pytest
from ir_ops import ops_of

from dcube_edge import runtimes
from dcube_edge.export import openvino_checks as ov_checks

pytestmark = pytest.mark.backends  # make test-isa runs this module as the other CPU classes


def test_float_attention_removes_only_the_attention_quantizers(engines):
    """On the real NNCF IR: removing the attention's quantizers is complete (a second pass finds none),
    leaves every other FakeQuantize, and agrees with what the engine's manifest recorded."""
    if ("openvino", "int8") not in engines:
        pytest.skip("openvino int8 cannot be built here")
    import openvino as ov

    attention = runtimes.read(engines[("openvino", "int8")]).record.choices.attention
    ir = ov.Core().read_model(str(engines[("openvino", "int8")] / "model.xml"))
    before = ops_of(ir, "FakeQuantize")
    removed = ov_checks.float_attention(ir)
    assert (removed == 0) == (attention.matmuls == "float")
    after = ops_of(ir, "FakeQuantize")
    assert after == before - removed > 0
    assert ov_checks.float_attention(ir) == 0


def test_an_engine_records_what_its_speed_check_measured(engines):
    """An engine built under a bf16 hint records what the speed check measured; an f32 one has nothing to compare."""
    from dcube_edge.runtimes import isa

    if ("openvino", "fp32") not in engines:
        pytest.skip("openvino is not installed")
    assert runtimes.read(engines[("openvino", "fp32")]).record.choices.latency_by_hint_ms is None
    for precision in ("bf16", "int8"):
        if ("openvino", precision) not in engines:
            continue
        ov = runtimes.read(engines[("openvino", precision)]).record.choices
        if isa.has_bf16():
            assert set(ov.latency_by_hint_ms) == {"bf16", "f32"}
            assert min(ov.latency_by_hint_ms.values()) > 0
        else:  # an int8 engine on a CPU without bf16: its islands are f32, there is no other hint to time
            assert precision == "int8"
            assert ov.inference_precision == "f32"
            assert ov.latency_by_hint_ms is None

"""The real latency probe of the OpenVINO export's measured choices (export/ir_timing.py), on a real IR."""
import pytest

from dcube_edge.export import ir_timing

pytestmark = pytest.mark.backends  # make test-isa runs this module as the other CPU classes


def test_the_probe_times_every_hint_and_every_label_on_the_real_ir(engines):
    """hint_latency compiles the IR under each hint and returns a positive figure per hint; latency times each
    label, every round calling each once."""
    if ("openvino", "fp32") not in engines:
        pytest.skip("openvino is not installed")
    xml = engines[("openvino", "fp32")] / "model.xml"
    ms = ir_timing.hint_latency(xml, 32, hints=("f32",), count=2)
    assert set(ms) == {"f32"}
    assert ms["f32"] > 0
    both = ir_timing.latency({"a": (xml, "f32"), "b": (xml, "f32")}, 32, count=3)
    assert set(both) == {"a", "b"}
    assert min(both.values()) > 0  # each round calls both, the order rotating

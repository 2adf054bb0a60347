"""What a CPU can run, as a function of its flag set (runtimes/isa.py), tested on the flag sets of the CPU classes
the project meets (tests/situations.py) rather than only on the machine running the tests."""
import pytest
from situations import AMX_XEON, EPYC, OLD, VNNI_XEON

from dcube_edge.runtimes import isa


@pytest.mark.parametrize("flags, precision, hint", [
    (AMX_XEON, "fp32", "f32"), (AMX_XEON, "bf16", "bf16"), (AMX_XEON, "int8", "bf16"), (AMX_XEON, "fp16", None),
    (AMX_XEON | {"amx_fp16"}, "fp16", "f16"), (EPYC, "bf16", "bf16"), (EPYC, "int8", "bf16"), (EPYC, "fp16", None),
    (OLD, "bf16", None), (OLD, "int8", "f32"), (OLD, "fp32", "f32"),
    (VNNI_XEON, "bf16", None), (VNNI_XEON, "fp16", None), (VNNI_XEON, "int8", "f32")])
def test_openvino_precision_from_flags(flags, precision, hint):
    if hint is None:
        with pytest.raises(isa.PrecisionUnavailable) as e:
            isa.openvino_hint(precision, flags)
        # an unavailable precision names bf16 as the way out exactly where the CPU has it
        assert ("bf16" in str(e.value)) == isa.has_bf16(flags) or precision == "bf16"
    else:
        assert isa.openvino_hint(precision, flags) == hint


def test_an_isa_cap_hides_the_units_above_it():
    assert isa.isa_cap({"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"}) == "AVX512_CORE_BF16"
    assert isa.isa_cap({"DNNL_MAX_CPU_ISA": "AVX10_1_512_AMX"}) == "AVX512_CORE_AMX"
    assert isa.isa_cap({"ONEDNN_MAX_CPU_ISA": "ALL"}) is None
    assert isa.isa_cap({}) is None
    # an AMX Xeon capped at AVX512_CORE_BF16 is the EPYC class, and gets its precisions
    played = isa.capped(AMX_XEON, "AVX512_CORE_BF16")
    assert played == EPYC
    assert isa.tag(played) == "avx512-bf16"
    assert isa.openvino_hint("int8", played) == "bf16"
    assert isa.capped(AMX_XEON, "AVX2") == OLD
    assert isa.tag(isa.capped(AMX_XEON, "AVX2")) == "avx2"
    assert isa.capped(AMX_XEON, None) == AMX_XEON
    assert isa.tag(VNNI_XEON) == "avx512"
    assert isa.has_int8_dot(VNNI_XEON)
    assert not isa.has_bf16(VNNI_XEON)
    assert "ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16" in isa.recorded({"isa": sorted(EPYC), "isa_cap": "AVX512_CORE_BF16"})


@pytest.mark.parametrize("flags, width, want", [
    (AMX_XEON, 512, "bf16"), (AMX_XEON, 256, "none"), (AMX_XEON, 96, "none"), (EPYC, 512, "bf16"), (OLD, 512, "none"),
    (frozenset(), 512, "none")])
def test_training_autocast_from_flags(flags, width, want):
    assert isa.training_autocast(width, flags) == want
    assert isa.training_autocast(width, flags, cuda=True) == "bf16"


def test_isa_predicates():
    assert isa.has_amx(AMX_XEON)
    assert not isa.has_amx(EPYC)
    assert isa.has_bf16(EPYC)
    assert not isa.has_bf16(OLD)
    assert not isa.has_native_fp16(AMX_XEON)  # avx512_fp16 alone was measured slower than fp32
    assert isa.has_native_fp16(AMX_XEON | {"amx_fp16"})
    assert isa.has_int8_dot(EPYC)
    assert not isa.has_int8_dot(OLD)
    assert "amx_bf16" in isa.notable(AMX_XEON)

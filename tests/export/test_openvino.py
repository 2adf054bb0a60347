"""OpenVINO engines (export/openvino.py): every precision built and run, and the measured choices and parity
fallbacks taken in the situations a test builds (a CPU class's flags, given timings, a tolerance no engine meets)
through the export's context, with the IRs, their compilation and parity real."""
import pytest
from ir_ops import fake_quantized_in, ops_of
from situations import EPYC, VNNI_XEON, CountedReference, context, timings, unmeetable

from dcube_edge import runtimes
from dcube_edge.export import openvino_checks as ov_checks
from dcube_edge.export.build import ExportOptions, export
from dcube_edge.export.policy import DCUBE
from dcube_edge.runtimes.choices import OpenVINOChoices

pytestmark = pytest.mark.backends  # make test-isa runs this module as the other CPU classes

OPTIONS = dict(backend="openvino", precision="int8", calibration_size=24, max_batch=16)
FLOAT_OF_HINT = {"bf16": "bf16", "f32": "fp32"}


def ov_record(engine):
    """An engine's record and its OpenVINO choices, read (and verified) as a workstation reads them."""
    record = runtimes.read(engine).record
    assert isinstance(record.choices, OpenVINOChoices)
    return record, record.choices


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16", "int8"])
def test_openvino_engines(engines, demo_data, precision):
    from dcube_edge.bench import available

    key = ("openvino", precision)
    if key not in engines:
        pytest.skip(f"openvino {precision} cannot be built here: {available('openvino', precision)}")
    r, ov = ov_record(engines[key])
    assert r.model_file == "model.xml"
    assert {"model.xml", "model.bin"} <= set(r.files)
    assert ov.inference_precision in ("f32", "f16", "bf16")
    if precision == "int8":
        assert ov.quantization.tool == "nncf.quantize"
        xml = (engines[key] / "model.xml").read_text()
        assert "FakeQuantize" in xml or "FakeConvert" in xml
    assert r.parity.top1_agreement >= 0.9
    assert r.parity.within_tolerance is True or precision == "int8"  # int8 is checked below
    assert r.parity.tolerance["min_top1_agreement"] == 0.99
    want = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}.get(precision)
    parts = r.precision.parts
    if want:
        assert ov.inference_precision == want
        assert parts["all"] == precision
        assert r.parity.runtime_inference_precision == want
    else:
        assert parts["trunk_matmuls"].startswith("int8")
        assert parts["rest_of_head"] == FLOAT_OF_HINT[ov.inference_precision]
        guide = "fp32" if ov.f32_scopes else FLOAT_OF_HINT[ov.inference_precision]
        if ov.guide_branch is not None and ov.guide_branch.choice == "int8":  # timed faster at export (f32 islands)
            guide = "int8 in stages 2-4, stem and stage 1 fp32"
        assert parts["resnet_guide_branch"] == guide
        assert r.parity.within_tolerance or "pinned to f32" in r.precision.note
    if ov.f32_scopes:  # a fallback marked the guide branch f32 in the IR itself
        assert "guide branch kept in f32" in r.precision.note
        assert 'name="precise"' in (engines[key] / "model.xml").read_text()
    files = sorted((demo_data / "val" / "normal").iterdir())[:3]
    with runtimes.load(engines[key]) as clf:
        preds = list(clf.classify(files))
    assert [p.error for p in preds] == [None] * 3
    assert all(abs(sum(p.probs.values()) - 1) < 1e-4 for p in preds)


def test_int8_float_islands_pinned_when_bf16_breaks_parity(tiny_run, tmp_path):
    """On an AVX512-BF16 EPYC, with a bound no engine can meet, every fallback is taken in order (the guide
    branch pinned to f32, then every float island), each measured against the same reference logits: the
    validation images are loaded once, the PyTorch reference runs once, and no manifest is written before the
    engine is published."""
    pytest.importorskip("nncf")
    reference, manifests_seen = CountedReference(), []

    def log(line: str) -> None:  # called at every step, fallbacks included: is a manifest in the work folder yet?
        manifests_seen.extend(tmp_path.glob(".ov-int8.*.partial/manifest.json"))

    out = tmp_path / "ov-int8"
    times = timings({"bf16": 1.0, "f32": 2.0, "int8": 1.0, "float": 2.0})  # bf16 islands and int8 attention faster
    export(tiny_run, out, ExportOptions(**OPTIONS), context=context(
        flags=EPYC, precisions=unmeetable("int8"), latency=times, reference=reference, log=log))
    r, ov = ov_record(out)
    assert ov.inference_precision == "f32"
    assert r.precision.parts["resnet_guide_branch"] == "fp32"
    note = r.precision.note  # both steps of the ladder, in order
    assert note.index("guide branch kept in f32") < note.index("pinned to f32")
    assert r.parity.within_tolerance is False
    assert ov.f32_scopes == ("head.resnet",)
    assert reference.runs == [24]  # three parity measurements, one reference run on the 24 validation images
    assert manifests_seen == []
    assert (out / "manifest.json").is_file()


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_bf16_hint_is_measured_against_f32_at_export(tiny_run, tmp_path, precision):
    """A CPU with a bf16 unit may still run bf16 slower than f32 (an AMX Xeon capped below AMX does): an
    int8 engine's float islands then go f32, a bf16 engine is built as asked with the measurement and a
    warning in its record. The timings are given; the rest (IR, compile, parity under the hint) is real."""
    pytest.importorskip("nncf")
    said = []
    out = tmp_path / f"ov-{precision}"
    times = timings({"bf16": 3.0, "f32": 2.0, "int8": 1.0, "float": 2.0, "guide-int8": 2.0, "guide-float": 1.0})
    export(tiny_run, out, ExportOptions(**{**OPTIONS, "precision": precision}),
           context=context(flags=EPYC, latency=times, log=said.append))
    r, ov = ov_record(out)
    assert ov.latency_by_hint_ms == {"bf16": 3.0, "f32": 2.0}
    note = r.precision.note
    if precision == "int8":
        assert ov.inference_precision == "f32"
        assert r.parity.runtime_inference_precision == "f32"
        assert r.precision.parts["rest_of_head"] == "fp32"
        assert note.startswith("float islands in f32")
    else:
        assert ov.inference_precision == "bf16"
        assert r.precision.parts["all"] == "bf16"
        assert "slower than f32 on this CPU" in note
        assert any(line.startswith("warning: bf16 as asked") for line in said)


@pytest.mark.parametrize("faster", ["int8", "float"])
def test_int8_attention_products_are_timed_int8_against_float(tiny_run, tmp_path, faster):
    """NNCF quantizes Q·Kᵀ and P·V as inputs of ScaledDotProductAttention; the export times that IR against
    one with those quantizers removed and keeps the faster (the timings are given, the IRs and parity real).
    The kept IR must be what the record says, with no leftover variant files."""
    pytest.importorskip("nncf")
    import openvino

    times = {"bf16": 1.0, "f32": 2.0, "int8": 1.0 if faster == "int8" else 2.0, "float": 1.0 if faster == "float" else 2.0}
    out = tmp_path / "ov-int8"
    export(tiny_run, out, ExportOptions(**OPTIONS), context=context(flags=EPYC, latency=timings(times)))
    r, ov = ov_record(out)  # hashes match the IR that was kept
    attention = ov.attention
    assert attention.matmuls == faster
    assert attention.latency_ms == {"int8": times["int8"], "float": times["float"]}
    assert r.precision.parts["attention_products"] == ("int8" if faster == "int8" else "bf16")
    assert {"model.bin", "model.xml"} <= set(r.files)
    assert not list(out.glob("attention*"))
    assert not any(name.startswith("attention") for name in r.files)
    ir = openvino.Core().read_model(str(out / "model.xml"))
    fake_quantizers = ops_of(ir, "FakeQuantize")
    left = ov_checks.float_attention(ir)  # quantizers still feeding the attention
    assert (left > 0) == (faster == "int8")
    assert fake_quantizers > left  # the projections stay int8 either way
    assert (attention.quantizers_removed or 0) == (0 if faster == "int8" else 2 * ops_of(ir, "ScaledDotProductAttention"))
    assert r.parity.within_tolerance


def test_guide_branch_stages_are_timed_int8_against_float_where_islands_run_f32(tiny_run, tmp_path):
    """On a CPU without bf16 the export also quantizes the guide branch's stages 2-4, times that IR against
    the whole-head-float one and keeps the faster (timings given; the IRs, parity and hashes real). The
    other outcome, float kept, is the fallback test's end state; one export each keeps the suite's time."""
    pytest.importorskip("nncf")
    import openvino

    times = {"int8": 2.0, "float": 1.0, "guide-int8": 1.0, "guide-float": 1.5}
    out = tmp_path / "ov-int8"
    export(tiny_run, out, ExportOptions(**OPTIONS), context=context(flags=VNNI_XEON, latency=timings(times)))
    r, ov = ov_record(out)  # the hashes are of the IR that was kept
    assert ov.guide_branch.choice == "int8"
    assert ov.guide_branch.latency_ms == {"guide-int8": 1.0, "guide-float": 1.5}
    assert ov.quantization.ignored_scope_patterns == (DCUBE.int8_trial_ignored,)
    assert r.precision.parts["resnet_guide_branch"] == "int8 in stages 2-4, stem and stage 1 fp32"
    ir = openvino.Core().read_model(str(out / "model.xml"))
    assert fake_quantized_in(ir, "head.resnet.layer3") > 0
    assert fake_quantized_in(ir, "head.resnet.layer1") == 0
    assert fake_quantized_in(ir, "head.mlp") == 0
    assert fake_quantized_in(ir, "trunk") > 0
    assert set(r.files) == {"model.bin", "model.onnx", "model.xml"}
    assert not list(out.glob("*guide*"))
    assert r.parity.within_tolerance


def test_guide_branch_goes_back_to_float_when_parity_breaks(tiny_run, tmp_path):
    """With a bound no engine can meet, the int8 guide stages are undone first (the spare whole-head-float IR
    put back), the reason recorded, and the spare never left in the engine."""
    pytest.importorskip("nncf")
    import openvino

    times = {"int8": 2.0, "float": 1.0, "guide-int8": 1.0, "guide-float": 2.0}
    out = tmp_path / "ov-int8"
    export(tiny_run, out, ExportOptions(**OPTIONS), context=context(
        flags=VNNI_XEON, precisions=unmeetable("int8"), latency=timings(times)))
    r, ov = ov_record(out)
    assert ov.guide_branch.choice == "float"
    assert "parity" in ov.guide_branch.undone
    assert r.precision.parts["resnet_guide_branch"] == "fp32"
    assert ov.quantization.ignored_scope_patterns == (r"head[./].*",)
    assert "guide branch stages 2-4 back to float" in r.precision.note
    assert r.parity.within_tolerance is False
    assert fake_quantized_in(openvino.Core().read_model(str(out / "model.xml")), "head.resnet.layer3") == 0
    assert set(r.files) == {"model.bin", "model.onnx", "model.xml"}


def test_bf16_engine_keeps_the_guide_branch_f32_when_parity_breaks(tiny_run, tmp_path):
    """bf16 has one step down (guide branch f32 in the IR); the CPU plugin must really run those layers in
    f32 (compiled model's runtimePrecision), and the record must hash the rewritten IR. This CPU's own flags and
    timings: what runs is the real bf16 unit."""
    import openvino
    import openvino.properties.hint as hints

    from dcube_edge.runtimes import isa

    if not isa.has_bf16():
        pytest.skip("this CPU has no bf16 unit (AMX-BF16 or AVX512-BF16): the plugin would run everything in f32")
    out = tmp_path / "ov-bf16"
    export(tiny_run, out, ExportOptions(backend="openvino", precision="bf16", max_batch=16),
           context=context(precisions=unmeetable("bf16")))
    r, ov = ov_record(out)  # file hashes match the rewritten IR
    assert ov.inference_precision == "bf16"
    assert ov.f32_scopes == ("head.resnet",)
    assert r.precision.parts == {"all": "bf16", "resnet_guide_branch": "fp32"}
    assert "pinned" not in r.precision.note
    assert r.parity.within_tolerance is False
    compiled = openvino.Core().compile_model(str(out / "model.xml"), "CPU", {hints.inference_precision(): "bf16"})
    convs = {}
    for node in compiled.get_runtime_model().get_ops():
        info = node.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            names = info["originalLayersNames"].astype(str)
            convs.setdefault(names.startswith("head.resnet"), set()).add(info["runtimePrecision"].astype(str))
    assert convs[True] == {"f32"}
    assert "bf16" in convs[False]

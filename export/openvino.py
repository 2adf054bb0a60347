"""OpenVINO IR builder: ``ov.convert_model`` on the ONNX, ``ov.save_model``; INT8 with
``nncf.quantize`` on the IR (transformer model type, symmetric preset) from the calibration set.
bf16/fp16 are inference-precision hints chosen from the CPU's flags (:func:`runtimes.isa.openvino_hint`)
and recorded; an int8 engine's float islands get the same treatment, then a bf16 hint is timed against f32
on the IR (:func:`speed_check`): islands stay bf16 only where that is faster on this CPU. Then the
attention's two activation × activation products (Q·Kᵀ and P·V, which NNCF quantizes as inputs of
``ScaledDotProductAttention``) are timed int8 against float under the chosen hint (:func:`attention_check`)
and the int8 form is kept only where faster: on an AMX Xeon at a static batch-1 shape the two were level
(paper preset; float is the more precise), capped below AMX the int8 form was 5 % faster under f32. Where
the islands run f32, the ResNet guide branch's stages 2-4 are quantized too if that is faster
(:func:`guide_check`), and put back to float where parity breaks. All
timings compile the IR as the runner does, at a static batch-1 shape (a dynamic-batch compile ranked the
attention forms differently: float 25 % faster).

Where the hint breaks parity, :func:`fallback` keeps the ResNet guide branch in f32 by marking its IR
layers with OpenVINO's ``precise`` run-time attribute (``ov::DisableFP16Compression``, which the CPU plugin
honours under a bf16 hint: the convolutions report runtimePrecision f32). The attribute must be in the IR
file: a string set through ``node.get_rt_info()`` from Python is not that attribute and is ignored (which
is why an earlier attempt changed nothing)."""
from __future__ import annotations

import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from dcube_edge.calibration.int8 import KEEP_FLOAT_SCOPES, in_scopes
from dcube_edge.runtimes import isa
from dcube_edge.runtimes.files import atomic_path

if TYPE_CHECKING:
    from .build import BuildJob


def check(precision: str) -> str:
    """The inference-precision hint for this CPU (raises :class:`isa.PrecisionUnavailable` where it has no unit)."""
    return isa.openvino_hint(precision)


def build(job: BuildJob) -> tuple[str, dict]:
    """IR from the FP32 ONNX (kept beside it as model.onnx for FLOP counts); int8 through NNCF."""
    import openvino as ov

    onnx_path = job.precision_onnx("fp32")
    float_model = ov.convert_model(str(onnx_path))
    info: dict = {"inference_precision": job.hint}
    model, calibration = float_model, None
    if job.precision == "int8":
        patterns = [re.escape(s) + r"[./].*" for s in KEEP_FLOAT_SCOPES]
        calibration = job.calibration_images()
        model = quantize(float_model.clone(), job, calibration, patterns)
        info.update(quantization={"tool": "nncf.quantize", "preset": "performance (symmetric)",
                                  "model_type": "transformer", "subset_size": len(calibration),
                                  "ignored_scope_patterns": patterns})
    ov.save_model(model, str(job.work / "model.xml"), compress_to_fp16=False)
    if job.hint == "bf16":
        info.update(speed_check(job))
    if job.precision == "int8":
        info["attention"] = attention_check(job)
        if job.hint == "f32":
            info["guide_branch"] = guide_check(job, float_model, calibration, info)
    return "model.xml", info


IR_FILES = (".xml", ".bin")


def move_ir(src: Path, dst: Path) -> None:
    """Put the IR ``src`` (.xml and its .bin) in the place of ``dst``."""
    for suffix in IR_FILES:
        os.replace(src.with_suffix(suffix), dst.with_suffix(suffix))


def remove_ir(xml: Path) -> bool:
    """Delete an IR's files; True if any was there."""
    present = [xml.with_suffix(s) for s in IR_FILES if xml.with_suffix(s).exists()]
    for path in present:
        path.unlink()
    return bool(present)


def quantize(model, job: BuildJob, calibration, ignored_patterns: list[str]):
    """``nncf.quantize`` of an IR on the calibration images, the ops matching ``ignored_patterns`` (regular
    expressions over node names) left float."""
    import logging

    import nncf

    if not os.environ.get("DCUBE_EDGE_VERBOSE"):  # `dcube-edge --verbose` keeps them
        nncf.set_log_level(logging.WARNING)  # its INFO lines (about 70 per export) drown our own output
    job.log(f"nncf.quantize on {len(calibration)} calibration images (transformer model type)")
    dataset = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])
    return nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE,
                         model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration),
                         ignored_scope=nncf.IgnoredScope(patterns=ignored_patterns, validate=False))


# Where the float islands run f32 (no bf16 unit, or bf16 measured slower), the step-2 head's guide branch is
# FMA-bound: on a VNNI-only Xeon its convolutions ran at 92 % of the f32 peak and were 80 % of the small preset's
# FLOPs. Quantizing all of it broke parity on BreastMNIST `small` (top-1 98.7 %, AUC -0.009; NNCF's mixed preset
# and full bias correction were worse); with its stem and first stage float and stages 2-4 int8 it held
# (100 %, AUC -0.0008, max |dlogit| 0.12) and the engine ran 1.44x faster (8.2 vs 11.8 ms). So that is tried,
# timed, kept only where faster, and undone by :func:`fallback` where parity breaks on the user's data.
GUIDE_INT8_STAGES = "2-4"
GUIDE_INT8_IGNORED = r"head[./](?!resnet\.layer[234][./]).*"
SPARE = "head-float"  # the engine with the whole head float, kept in the work dir until parity has been measured


def guide_check(job: BuildJob, float_model, calibration, info: dict) -> dict:
    """Quantize the guide branch's stages 2-4 too, time that IR against the chosen one (f32 islands, static
    batch 1) and keep it only if :data:`MIN_GAIN` faster; the chosen one is then kept as :data:`SPARE` for
    :func:`fallback`. Returns the manifest's record of it."""
    import openvino as ov

    xml = job.work / "model.xml"
    head_float = info["quantization"]["ignored_scope_patterns"]
    model = quantize(float_model, job, calibration, [GUIDE_INT8_IGNORED])  # the images the build read
    if info["attention"]["matmuls"] != "int8":
        float_attention(model)  # the attention products as the attention check chose them
    candidate = job.work / "guide-int8.xml"
    ov.save_model(model, str(candidate), compress_to_fp16=False)
    ms = latency({"guide-float": (xml, "f32"), "guide-int8": (candidate, "f32")}, job.cfg.image_size)
    measured = (f"batch 1 under a f32 hint: stages {GUIDE_INT8_STAGES} int8 {ms['guide-int8']:.2f} ms, "
                f"float {ms['guide-float']:.2f} ms")
    keep = ms["guide-int8"] < ms["guide-float"] * (1 - MIN_GAIN)
    if keep:
        move_ir(xml, job.work / SPARE)
        move_ir(candidate, xml)
        info["quantization"]["ignored_scope_patterns"] = [GUIDE_INT8_IGNORED]  # what the kept IR was quantized with
    else:
        remove_ir(candidate)
    choice = "int8" if keep else "float"
    job.log(f"ResNet guide branch stages {GUIDE_INT8_STAGES} {choice}: {measured}")
    return {"choice": choice, "int8_stages": GUIDE_INT8_STAGES, "ignored_scope_pattern": GUIDE_INT8_IGNORED,
            "head_float_ignored_scope_patterns": head_float,
            "latency_ms": {k: round(v, 3) for k, v in ms.items()}, "measured": measured}


# The less precise of two choices (bf16 islands over f32, int8 attention over float) must be faster by this
# much to be kept: of two equal choices the more precise one is kept.
MIN_GAIN = 0.05


def latency(configs: dict[str, tuple[Path, str]], image_size: int, rounds: int = 25) -> dict[str, float]:
    """Batch-1 latency (ms) of each ``label: (IR, inference-precision hint)``, compiled at a static batch-1
    shape as the runner compiles it. Each round calls every configuration once, the order rotating; a label's
    figure is the median over rounds of its call's time relative to the first label's call in the same round,
    times the first label's median. On a shared 2-core host another tenant slows neighbouring calls alike, so
    the ratio cancels it: on one pair of paper-preset IRs, six repeats of this gave int8/float 0.937–0.958
    (sd 0.008) where the earlier median of three 5-call rounds gave 0.84–1.00 (sd 0.05) over eight, and the 5 % decisions
    below flipped between exports."""
    import time

    import numpy as np
    import openvino as ov
    import openvino.properties.hint as ov_hints

    core = ov.Core()

    def request(xml: Path, hint: str):
        model = core.read_model(str(xml))  # a static batch-1 shape, as the runner compiles it
        model.reshape({i.get_any_name(): [1, *i.get_partial_shape()[1:]] for i in model.inputs})
        return core.compile_model(model, "CPU", {ov_hints.inference_precision(): hint,
                                                 ov_hints.performance_mode(): ov_hints.PerformanceMode.LATENCY}
                                  ).create_infer_request()

    requests = {label: request(xml, hint) for label, (xml, hint) in configs.items()}
    feed = np.random.default_rng(0).uniform(-1, 1, (1, 1, image_size, image_size)).astype(np.float32)

    def call(label: str) -> float:
        start = time.perf_counter()
        requests[label].infer([feed])
        return (time.perf_counter() - start) * 1e3

    labels = list(requests)
    for label in labels:  # warm-up
        call(label)
    ms: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            ms[label].append(call(label))
    ref = np.asarray(ms[labels[0]])
    return {label: float(np.median(np.asarray(v) / ref) * np.median(ref)) for label, v in ms.items()}


def hint_latency(xml: Path, image_size: int, hints: tuple[str, ...] = ("bf16", "f32"), rounds: int = 25) -> dict[str, float]:
    """Batch-1 latency (ms) of one IR compiled under each inference-precision hint (see :func:`latency`)."""
    return latency({h: (xml, h) for h in hints}, image_size, rounds)


def speed_check(job: BuildJob) -> dict:
    """Measure, don't assume: a CPU may list AVX512-BF16 and still run bf16 slower than f32 (an AMX Xeon
    capped below AMX: 1.5× slower, its bf16 dot product has the FMA's rate plus conversions; an AMD EPYC:
    2× faster). An int8 engine's float islands stay bf16 only where measured faster; a bf16 engine is built
    as asked, with a warning where fp32 would be faster here. Returns the manifest's record of it."""
    ms = hint_latency(job.work / "model.xml", job.cfg.image_size)
    record: dict = {"latency_by_hint_ms": {h: round(v, 3) for h, v in ms.items()}}
    measured = f"batch 1 at export: bf16 {ms['bf16']:.2f} ms, f32 {ms['f32']:.2f} ms"
    if job.precision == "int8" and ms["bf16"] > ms["f32"] * (1 - MIN_GAIN):
        job.hint = "f32"
        record.update(inference_precision="f32",
                      hint_choice=f"float islands in f32: bf16 islands were not faster here ({measured})")
        job.log(record["hint_choice"])
    elif job.precision == "bf16" and ms["bf16"] > ms["f32"]:
        record["hint_choice"] = f"bf16 as asked, but slower than f32 on this CPU ({measured}): fp32 or int8 would be faster here"
        job.log(f"warning: {record['hint_choice']}")
    return record


# Ops that only move or view data: an attention input's FakeQuantize may sit behind a chain of them.
_LAYOUT_OPS = {"Reshape", "Transpose", "Squeeze", "Unsqueeze"}


def float_attention(model) -> int:
    """Remove the FakeQuantize nodes that feed ``ScaledDotProductAttention`` inputs (directly or through
    layout ops that feed nothing else), so Q·Kᵀ and P·V run at the float islands' precision. Returns how
    many were removed; the projections around the attention stay int8."""
    removed = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "ScaledDotProductAttention":
            continue
        for port in range(min(3, op.get_input_size())):
            node = op.input_value(port).get_node()
            while node.get_type_name() in _LAYOUT_OPS and len(node.output(0).get_target_inputs()) == 1:
                node = node.input_value(0).get_node()
            if node.get_type_name() == "FakeQuantize" and len(node.output(0).get_target_inputs()) == 1:
                node.output(0).replace(node.input_value(0))
                removed += 1
    return removed


def attention_check(job: BuildJob) -> dict:
    """Time the int8 IR against the same IR with float attention products, under the chosen hint, and keep
    the faster (int8 only when faster by :data:`MIN_GAIN`). Returns the manifest's record of it."""
    import openvino as ov

    xml = job.work / "model.xml"
    model = ov.Core().read_model(str(xml))
    removed = float_attention(model)
    if not removed:
        return {"matmuls": "int8", "choice": "no quantized attention inputs in the IR"}
    variant = job.work / "attention-float.xml"
    ov.save_model(model, str(variant), compress_to_fp16=False)
    hint = job.hint or "f32"
    ms = latency({"int8": (xml, hint), "float": (variant, hint)}, job.cfg.image_size)
    measured = f"batch 1 under a {hint} hint: int8 {ms['int8']:.2f} ms, float {ms['float']:.2f} ms"
    keep_int8 = ms["int8"] < ms["float"] * (1 - MIN_GAIN)
    if keep_int8:
        remove_ir(variant)
    else:
        move_ir(variant, xml)
    choice = "int8" if keep_int8 else "float"
    job.log(f"attention products (Q·Kᵀ, P·V) {choice}: {measured}")
    return {"matmuls": choice, "quantizers_removed": removed if choice == "float" else 0,
            "latency_ms": {k: round(v, 3) for k, v in ms.items()}, "choice": measured}


def tool_versions() -> dict:
    import nncf
    import openvino

    return {"openvino": openvino.get_version(), "nncf": nncf.__version__}


def effective_precision(precision: str, hint: str | None, info: dict | None = None) -> dict:
    """What each part computes in, as built, from the hint and the builder's manifest section ``info``
    (guide branch pinned to f32, attention products float or int8). OpenVINO may keep some ops, e.g.
    reductions, in f32 under a bf16 hint; the runner reads the compiled model's actual hint back."""
    info = info or {}
    float_part = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(hint or "", precision)
    guide = "fp32" if info.get("f32_scopes") else float_part
    if info.get("guide_branch", {}).get("choice") == "int8":
        guide = f"int8 in stages {GUIDE_INT8_STAGES}, stem and stage 1 {float_part}"
    if precision == "int8":
        attention = info.get("attention", {}).get("matmuls", "int8")
        return {"trunk_matmuls": "int8 (NNCF, symmetric, per-channel weights)",
                "attention_products": "int8" if attention == "int8" else float_part,
                "resnet_guide_branch": guide, "rest_of_head": float_part, "other_ops": float_part}
    if info.get("f32_scopes"):
        return {"all": float_part, "resnet_guide_branch": guide}
    return {"all": float_part}


# Under a bf16 hint the guide branch is what flips predictions (BreastMNIST `small`: 2 of 78 with it in bf16, 0 with
# it in f32; the trunk, attention, norms or the rest of the head in f32 changed nothing). It is 7.5 % of the paper
# preset's FLOPs, so it is kept f32 only when parity needs it.
BF16_F32_SCOPES = ["head.resnet"]


def keep_f32(xml: Path, scopes: list[str] = BF16_F32_SCOPES) -> int:
    """Mark every computing layer of the IR under ``scopes`` (module names at export) ``precise``, so the
    CPU plugin runs it in f32 whatever the inference-precision hint. Returns how many layers were marked."""
    tree = ET.parse(xml)
    marked = 0
    for layer in tree.getroot().iter("layer"):
        if layer.get("type") in ("Const", "Parameter", "Result") or not in_scopes(layer.get("name", ""), scopes):
            continue
        rt = layer.find("rt_info")
        if rt is None:
            rt = ET.Element("rt_info")
            layer.insert(0, rt)
        if not any(a.get("name") == "precise" for a in rt.iter("attribute")):
            ET.SubElement(rt, "attribute", {"name": "precise", "version": "0"})
            marked += 1
    with atomic_path(xml) as tmp:
        tree.write(tmp, encoding="utf-8", xml_declaration=True)
    return marked


def finish(work: Path) -> bool:
    """Remove what the build kept only for :func:`fallback`; True if anything was removed."""
    return remove_ir(work / SPARE)


def fallback(work: Path, manifest: dict, failed: dict) -> str | None:
    """The next step down when a bf16 hint broke the parity tolerance (the caller measures again, and calls
    again while it still fails): first the ResNet guide branch in f32 — measured on BreastMNIST `small`, it
    is the part whose bf16 rounding flips predictions (2 of 78; with it in f32: 0, max |Δlogit| 0.64 → 0.02)
    — then, for int8, every float island in f32. Returns the note for the manifest, or None when done."""
    info = manifest["openvino"]
    was = f"top-1 agreement {failed['top1_agreement']:.4f}, AUC delta {failed.get('auc_delta') or 0:.4f}"
    if info.get("guide_branch", {}).get("choice") == "int8" and (work / SPARE).with_suffix(".xml").is_file():
        move_ir(work / SPARE, work / manifest["model_file"])
        shutil.rmtree(work / "ov_cache", ignore_errors=True)
        info["guide_branch"] = {**info["guide_branch"], "choice": "float", "undone": f"parity: {was}"}
        info["quantization"]["ignored_scope_patterns"] = info["guide_branch"]["head_float_ignored_scope_patterns"]
        manifest["effective_precision"] = effective_precision(manifest["precision"], info["inference_precision"], info)
        return f"ResNet guide branch back to float: with stages {GUIDE_INT8_STAGES} int8, {was}"
    if info.get("inference_precision") != "bf16":
        return None
    if not info.get("f32_scopes"):
        count = keep_f32(work / manifest["model_file"])
        shutil.rmtree(work / "ov_cache", ignore_errors=True)  # blobs compiled from the unmarked IR
        info["f32_scopes"] = list(BF16_F32_SCOPES)
        manifest["effective_precision"] = effective_precision(manifest["precision"], "bf16", info)
        return f"ResNet guide branch kept in f32 ({count} IR layers marked precise): with it in bf16, {was}"
    if manifest["precision"] != "int8":
        return None
    info["inference_precision"] = "f32"
    manifest["effective_precision"] = effective_precision("int8", "f32", info)
    return f"float islands pinned to f32: with bf16 islands (guide branch f32), {was}"

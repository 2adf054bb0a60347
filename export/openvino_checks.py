"""The OpenVINO export's measured choices: each times two forms of the IR on this CPU, compiled as the runner
compiles them (a static batch-1 shape, latency hint), and keeps the less precise form only where it is at least
:data:`MIN_GAIN` faster. ``docs/decisions/openvino-precision.md`` records what the choices measured where.

- :func:`speed_check`: bf16 against f32 islands (a CPU may list AVX512-BF16 and run bf16 slower).
- :func:`attention_check`: the attention's two activation × activation products (Q·Kᵀ and P·V, which NNCF
  quantizes as inputs of ``ScaledDotProductAttention``) int8 against float.
- :func:`int8_trial`: where islands run f32, the policy's trial part (D-Cube: the guide branch's stages 2-4)
  int8 too, against it float; the float IR is kept as :data:`SPARE` for the parity fallback."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dcube_edge.runtimes.timing import relative, rounds

from .openvino_ir import move_ir, quantize, remove_ir

if TYPE_CHECKING:
    from .job import BuildJob

# The less precise of two choices must be faster by this much to be kept: of two equal ones, the more precise.
MIN_GAIN = 0.05
SPARE = "head-float"  # the IR without the trial, kept in the work dir until parity has been measured
# Ops that only move or view data: an attention input's FakeQuantize may sit behind a chain of them.
_LAYOUT_OPS = {"Reshape", "Transpose", "Squeeze", "Unsqueeze"}


def latency(configs: dict[str, tuple[Path, str]], image_size: int, count: int = 25) -> dict[str, float]:
    """Batch-1 latency (ms) of each ``label: (IR, inference-precision hint)``, compiled at a static batch-1
    shape as the runner compiles it, by :func:`~dcube_edge.runtimes.timing.rounds` (one call each per round,
    order rotating) and :func:`~dcube_edge.runtimes.timing.relative` (per-round ratios to the first label)."""
    import openvino as ov
    import openvino.properties.hint as ov_hints

    core = ov.Core()

    def request(xml: Path, hint: str):
        model = core.read_model(str(xml))
        model.reshape({i.get_any_name(): [1, *i.get_partial_shape()[1:]] for i in model.inputs})
        return core.compile_model(model, "CPU", {ov_hints.inference_precision(): hint,
                                                 ov_hints.performance_mode(): ov_hints.PerformanceMode.LATENCY}
                                  ).create_infer_request()

    feed = np.random.default_rng(0).uniform(-1, 1, (1, 1, image_size, image_size)).astype(np.float32)
    requests = {label: request(xml, hint) for label, (xml, hint) in configs.items()}
    calls = {label: functools.partial(r.infer, [feed]) for label, r in requests.items()}
    return relative(rounds(calls, count, warmup=1))


def hint_latency(xml: Path, image_size: int, hints: tuple[str, ...] = ("bf16", "f32"), count: int = 25) -> dict[str, float]:
    """Batch-1 latency (ms) of one IR compiled under each inference-precision hint (see :func:`latency`)."""
    return latency({h: (xml, h) for h in hints}, image_size, count)


def speed_check(job: BuildJob) -> dict:
    """bf16 against f32 under this CPU's units: an int8 engine's float islands stay bf16 only where measured
    faster; a bf16 engine is built as asked, with a warning where f32 would be faster. The manifest's record."""
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
    """The int8 IR against the same IR with float attention products, under the chosen hint; the faster kept
    (int8 only when faster by :data:`MIN_GAIN`). The manifest's record."""
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


def int8_trial(job: BuildJob, float_model, calibration, info: dict) -> dict:
    """Quantize the policy's trial part too, time that IR against the chosen one (f32 islands, static batch 1)
    and keep it only if :data:`MIN_GAIN` faster; the chosen one is then kept as :data:`SPARE` for the
    builder's fallback. The manifest's record (``guide_branch``)."""
    import openvino as ov

    policy, xml = job.policy, job.work / "model.xml"
    head_float = info["quantization"]["ignored_scope_patterns"]
    model = quantize(float_model, job, calibration, [policy.int8_trial_ignored])  # the images the build read
    if info["attention"]["matmuls"] != "int8":
        float_attention(model)  # the attention products as the attention check chose them
    candidate = job.work / "guide-int8.xml"
    ov.save_model(model, str(candidate), compress_to_fp16=False)
    ms = latency({"guide-float": (xml, "f32"), "guide-int8": (candidate, "f32")}, job.cfg.image_size)
    measured = (f"batch 1 under a f32 hint: {policy.int8_trial_name} int8 {ms['guide-int8']:.2f} ms, "
                f"float {ms['guide-float']:.2f} ms")
    keep = ms["guide-int8"] < ms["guide-float"] * (1 - MIN_GAIN)
    if keep:
        move_ir(xml, job.work / SPARE)
        move_ir(candidate, xml)
        info["quantization"]["ignored_scope_patterns"] = [policy.int8_trial_ignored]  # what the kept IR was quantized with
    else:
        remove_ir(candidate)
    choice = "int8" if keep else "float"
    job.log(f"{policy.int8_trial_name} {choice}: {measured}")
    return {"choice": choice, "int8_part": policy.int8_trial_name, "ignored_scope_pattern": policy.int8_trial_ignored,
            "head_float_ignored_scope_patterns": head_float,
            "latency_ms": {k: round(v, 3) for k, v in ms.items()}, "measured": measured}

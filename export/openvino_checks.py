"""The OpenVINO export's measured choices: each times two forms of the IR through the export context's latency
probe (on this CPU, compiled as the runner compiles them: :mod:`.ir_timing`; or a test's given timings) and
keeps the less precise form only where it is at least :data:`MIN_GAIN` faster.
``docs/decisions/openvino-precision.md`` records what the choices measured where.

- :func:`speed_check`: bf16 against f32 islands (a CPU may list AVX512-BF16 and run bf16 slower).
- :func:`attention_check`: the attention's two activation × activation products (Q·Kᵀ and P·V, which NNCF
  quantizes as inputs of ``ScaledDotProductAttention``) int8 against float.
- :func:`int8_trial`: where islands run f32, the policy's trial part (D-Cube: the guide branch's stages 2-4)
  int8 too, against it float; the float IR is kept as :data:`SPARE` for the parity fallback."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dcube_edge.runtimes.choices import AttentionChoice, OpenVINOChoices, Quantization, TrialChoice

from .openvino_ir import move_ir, quantize, remove_ir

if TYPE_CHECKING:
    from .job import BuildJob

# The less precise of two choices must be faster by this much to be kept: of two equal ones, the more precise.
MIN_GAIN = 0.05
SPARE = "head-float"  # the IR without the trial, kept in the work dir until parity has been measured
# Ops that only move or view data: an attention input's FakeQuantize may sit behind a chain of them.
_LAYOUT_OPS = {"Reshape", "Transpose", "Squeeze", "Unsqueeze"}


def speed_check(job: BuildJob, choices: OpenVINOChoices) -> OpenVINOChoices:
    """bf16 against f32 under this CPU's units (timed by the context's probe): an int8 engine's float islands stay
    bf16 only where measured faster; a bf16 engine is built as asked, with a warning where f32 would be faster."""
    xml = job.work / "model.xml"
    ms = job.context.latency({h: (xml, h) for h in ("bf16", "f32")}, job.cfg.image_size)
    choices = replace(choices, latency_by_hint_ms={h: round(v, 3) for h, v in ms.items()})
    measured = f"batch 1 at export: bf16 {ms['bf16']:.2f} ms, f32 {ms['f32']:.2f} ms"
    if job.precision == "int8" and ms["bf16"] > ms["f32"] * (1 - MIN_GAIN):
        choice = f"float islands in f32: bf16 islands were not faster here ({measured})"
        job.log(choice)
        return replace(choices, inference_precision="f32", hint_choice=choice)
    if job.precision == "bf16" and ms["bf16"] > ms["f32"]:
        choice = f"bf16 as asked, but slower than f32 on this CPU ({measured}): fp32 or int8 would be faster here"
        job.log(f"warning: {choice}")
        return replace(choices, hint_choice=choice)
    return choices


def float_attention(model: Any) -> int:
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


def attention_check(job: BuildJob, hint: str) -> AttentionChoice:
    """The int8 IR against the same IR with float attention products, under ``hint``; the faster kept (int8 only
    when faster by :data:`MIN_GAIN`)."""
    import openvino as ov

    xml = job.work / "model.xml"
    model = ov.Core().read_model(str(xml))
    removed = float_attention(model)
    if not removed:
        return AttentionChoice("int8", "no quantized attention inputs in the IR")
    variant = job.work / "attention-float.xml"
    ov.save_model(model, str(variant), compress_to_fp16=False)
    ms = job.context.latency({"int8": (xml, hint), "float": (variant, hint)}, job.cfg.image_size)
    measured = f"batch 1 under a {hint} hint: int8 {ms['int8']:.2f} ms, float {ms['float']:.2f} ms"
    keep_int8 = ms["int8"] < ms["float"] * (1 - MIN_GAIN)
    if keep_int8:
        remove_ir(variant)
    else:
        move_ir(variant, xml)
    choice = "int8" if keep_int8 else "float"
    job.log(f"attention products (Q·Kᵀ, P·V) {choice}: {measured}")
    return AttentionChoice(choice, measured, 0 if keep_int8 else removed, {k: round(v, 3) for k, v in ms.items()})


def int8_trial(job: BuildJob, float_model: Any, choices: OpenVINOChoices) -> OpenVINOChoices:
    """Quantize the policy's trial part too, time that IR against the chosen one (f32 islands, static batch 1)
    and keep it only if :data:`MIN_GAIN` faster; the chosen one is then kept as :data:`SPARE` for the
    builder's fallback."""
    import openvino as ov

    policy, xml = job.policy, job.work / "model.xml"
    pattern = policy.int8_trial_ignored
    if pattern is None:  # a policy without a trial (the CNN baselines)
        return choices
    quantization = choices.quantization or Quantization()
    model = quantize(float_model, job, job.calibration.images, [pattern])  # the images the build read
    if choices.attention is not None and choices.attention.matmuls != "int8":
        float_attention(model)  # the attention products as the attention check chose them
    candidate = job.work / "guide-int8.xml"
    ov.save_model(model, str(candidate), compress_to_fp16=False)
    ms = job.context.latency({"guide-float": (xml, "f32"), "guide-int8": (candidate, "f32")}, job.cfg.image_size)
    measured = (f"batch 1 under a f32 hint: {policy.int8_trial_name} int8 {ms['guide-int8']:.2f} ms, "
                f"float {ms['guide-float']:.2f} ms")
    keep = ms["guide-int8"] < ms["guide-float"] * (1 - MIN_GAIN)
    if keep:
        move_ir(xml, job.work / SPARE)
        move_ir(candidate, xml)
        # what the kept IR was quantized with
        choices = replace(choices, quantization=replace(quantization, ignored_scope_patterns=(pattern,)))
    else:
        remove_ir(candidate)
    choice = "int8" if keep else "float"
    job.log(f"{policy.int8_trial_name} {choice}: {measured}")
    return replace(choices, guide_branch=TrialChoice(
        choice, policy.int8_trial_name, pattern, quantization.ignored_scope_patterns,
        {k: round(v, 3) for k, v in ms.items()}, measured))

"""OpenVINO IR builder: ``ov.convert_model`` on the ONNX, ``ov.save_model``; INT8 with ``nncf.quantize`` on
the IR (the policy's model type, symmetric preset) from the calibration set, the policy's float scopes left
float. bf16/fp16 are inference-precision hints chosen from the CPU's flags (:func:`runtimes.isa.openvino_hint`)
and recorded; the measured choices (bf16 against f32 islands, int8 attention products, the policy's int8
trial) are in :mod:`.openvino_checks`.

Where parity breaks, :meth:`OpenVINOBuilder.fallback` steps back: the int8 trial undone; under a bf16 hint
the policy's pinned part kept in f32 by marking its IR layers with OpenVINO's ``precise`` run-time attribute
(``ov::DisableFP16Compression``, which the CPU plugin honours under a bf16 hint); for int8, every float island
in f32. The attribute must be in the IR file: a string set through ``node.get_rt_info()`` from Python is not
that attribute and is ignored."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from dcube_edge.calibration.scopes import scope_patterns
from dcube_edge.runtimes import isa
from dcube_edge.runtimes.choices import Choices, OpenVINOChoices, Quantization
from dcube_edge.runtimes.sections import Parity

from . import openvino_checks as checks
from .builder import Builder, Built, Step
from .openvino_ir import keep_f32, move_ir, quantize, remove_ir

if TYPE_CHECKING:
    from .job import BuildJob
    from .policy import Policy

FLOAT_OF_HINT = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


class OpenVINOBuilder(Builder):
    def check(self, precision: str, flags: frozenset[str]) -> str:
        """The inference-precision hint for a CPU with ``flags`` (raises :class:`isa.PrecisionUnavailable` where it
        has no unit)."""
        return isa.openvino_hint(precision, flags)

    def build(self, job: BuildJob) -> Built:
        """IR from the FP32 ONNX (kept beside it as model.onnx for FLOP counts); int8 through NNCF; then the
        measured choices: bf16 against f32 islands, int8 against float attention products, the policy's trial."""
        import openvino as ov

        float_model = ov.convert_model(str(job.precision_onnx("fp32").path))
        model, quantization = float_model, None
        if job.precision == "int8":
            patterns = scope_patterns(job.policy.int8_float_scopes)
            model = quantize(float_model.clone(), job, job.calibration.images, patterns)
            quantization = Quantization(model_type=job.policy.nncf_model_type or "default (CNN)",
                                        subset_size=len(job.calibration.images), ignored_scope_patterns=tuple(patterns))
        ov.save_model(model, str(job.work / "model.xml"), compress_to_fp16=False)
        choices = OpenVINOChoices(inference_precision=job.hint or "f32", quantization=quantization)
        if job.hint == "bf16":
            choices = checks.speed_check(job, choices)
        if job.precision == "int8":
            choices = replace(choices, attention=checks.attention_check(job, choices.inference_precision))
            if choices.inference_precision == "f32" and job.policy.int8_trial_ignored is not None:
                choices = checks.int8_trial(job, float_model, choices)
        return Built("model.xml", choices, calibration_set=job.calibration.described if quantization else None,
                     notes=(choices.hint_choice,) if choices.hint_choice else ())

    def tool_versions(self) -> dict[str, str]:
        import nncf
        import openvino

        return {"openvino": openvino.get_version(), "nncf": nncf.__version__}

    def effective_precision(self, job: BuildJob, choices: Choices | None) -> dict[str, str]:
        return parts(job.policy, job.precision, choices if isinstance(choices, OpenVINOChoices) else OpenVINOChoices())

    def finish(self, work: Path) -> bool:
        return remove_ir(work / checks.SPARE)

    def fallback(self, job: BuildJob, choices: Choices | None, failed: Parity) -> Step | None:
        """Undo the int8 trial; then, under a bf16 hint, pin the policy's part to f32; then, for int8, every
        float island f32."""
        if not isinstance(choices, OpenVINOChoices):
            return None
        work, policy, xml = job.work, job.policy, job.work / "model.xml"
        was = f"top-1 agreement {failed.top1_agreement:.4f}, AUC delta {failed.auc_delta or 0:.4f}"
        trial = choices.guide_branch
        if trial is not None and trial.choice == "int8" and (work / checks.SPARE).with_suffix(".xml").is_file():
            move_ir(work / checks.SPARE, xml)
            shutil.rmtree(work / "ov_cache", ignore_errors=True)
            quantization = choices.quantization or Quantization()
            return Step(f"{policy.int8_trial_name} back to float: with them int8, {was}", replace(
                choices, guide_branch=replace(trial, choice="float", undone=f"parity: {was}"),
                quantization=replace(quantization, ignored_scope_patterns=trial.head_float_ignored_scope_patterns)))
        if choices.inference_precision != "bf16":
            return None
        if not choices.f32_scopes:
            count = keep_f32(xml, policy.bf16_f32_scopes)
            shutil.rmtree(work / "ov_cache", ignore_errors=True)  # blobs compiled from the unmarked IR
            return Step(f"{policy.pinned_name} kept in f32 ({count} IR layers marked precise): with it in bf16, {was}",
                        replace(choices, f32_scopes=tuple(policy.bf16_f32_scopes)))
        if job.precision != "int8":
            return None
        return Step(f"float islands pinned to f32: with bf16 islands ({policy.pinned_name} f32), {was}",
                    replace(choices, inference_precision="f32"))


def parts(policy: Policy, precision: str, choices: OpenVINOChoices) -> dict[str, str]:
    """What each part computes in, as built, from the hint and the other choices (pinned scopes, attention products
    float or int8, the int8 trial). OpenVINO may keep some ops, e.g. reductions, in f32 under a bf16 hint; the
    runner reads the compiled model's actual hint back."""
    float_part = FLOAT_OF_HINT.get(choices.inference_precision, precision)
    guide = "fp32" if choices.f32_scopes else float_part
    if choices.guide_branch is not None and choices.guide_branch.choice == "int8":
        guide = policy.int8_trial_parts.format(float=float_part)
    attention = "int8" if choices.attention is None or choices.attention.matmuls == "int8" else float_part
    return policy.ir_parts(precision, float_part, attention, guide, pinned=bool(choices.f32_scopes))

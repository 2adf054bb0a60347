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
from pathlib import Path
from typing import TYPE_CHECKING

from dcube_edge.runtimes import isa

from . import openvino_checks as checks
from .builder import Builder
from .openvino_ir import keep_f32, move_ir, quantize, remove_ir
from .policy import scope_patterns

if TYPE_CHECKING:
    from .job import BuildJob
    from .policy import Policy

FLOAT_OF_HINT = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


class OpenVINOBuilder(Builder):
    def check(self, precision: str) -> str:
        """The inference-precision hint for this CPU (raises :class:`isa.PrecisionUnavailable` where it has no unit)."""
        return isa.openvino_hint(precision)

    def build(self, job: BuildJob) -> tuple[str, dict]:
        """IR from the FP32 ONNX (kept beside it as model.onnx for FLOP counts); int8 through NNCF."""
        import openvino as ov

        float_model = ov.convert_model(str(job.precision_onnx("fp32")))
        info: dict = {"inference_precision": job.hint}
        model, calibration = float_model, None
        if job.precision == "int8":
            patterns = scope_patterns(job.policy.int8_float_scopes)
            calibration = job.calibration_images()
            model = quantize(float_model.clone(), job, calibration, patterns)
            info.update(quantization={"tool": "nncf.quantize", "preset": "performance (symmetric)",
                                      "model_type": job.policy.nncf_model_type or "default (CNN)",
                                      "subset_size": len(calibration),
                                      "ignored_scope_patterns": patterns})
        ov.save_model(model, str(job.work / "model.xml"), compress_to_fp16=False)
        if job.hint == "bf16":
            info.update(checks.speed_check(job))
        if job.precision == "int8":
            info["attention"] = checks.attention_check(job)
            if job.hint == "f32" and job.policy.int8_trial_ignored is not None:
                info["guide_branch"] = checks.int8_trial(job, float_model, calibration, info)
        return "model.xml", info

    def tool_versions(self) -> dict[str, str]:
        import nncf
        import openvino

        return {"openvino": openvino.get_version(), "nncf": nncf.__version__}

    def effective_precision(self, job: BuildJob, info: dict | None) -> dict[str, str]:
        return parts(job.policy, job.precision, job.hint, info)

    def finish(self, work: Path) -> bool:
        return remove_ir(work / checks.SPARE)

    def fallback(self, job: BuildJob, manifest: dict, failed: dict) -> str | None:
        """Undo the int8 trial; then, under a bf16 hint, pin the policy's part to f32; then, for int8, every
        float island f32. Returns the manifest's note, or None when no step is left."""
        work, info, policy = job.work, manifest["openvino"], job.policy
        was = f"top-1 agreement {failed['top1_agreement']:.4f}, AUC delta {failed.get('auc_delta') or 0:.4f}"
        if info.get("guide_branch", {}).get("choice") == "int8" and (work / checks.SPARE).with_suffix(".xml").is_file():
            move_ir(work / checks.SPARE, work / manifest["model_file"])
            shutil.rmtree(work / "ov_cache", ignore_errors=True)
            info["guide_branch"] = {**info["guide_branch"], "choice": "float", "undone": f"parity: {was}"}
            info["quantization"]["ignored_scope_patterns"] = info["guide_branch"]["head_float_ignored_scope_patterns"]
            manifest["effective_precision"] = parts(policy, manifest["precision"], info["inference_precision"], info)
            return f"{policy.int8_trial_name} back to float: with them int8, {was}"
        if info.get("inference_precision") != "bf16":
            return None
        if not info.get("f32_scopes"):
            count = keep_f32(work / manifest["model_file"], policy.bf16_f32_scopes)
            shutil.rmtree(work / "ov_cache", ignore_errors=True)  # blobs compiled from the unmarked IR
            info["f32_scopes"] = list(policy.bf16_f32_scopes)
            manifest["effective_precision"] = parts(policy, manifest["precision"], "bf16", info)
            return f"{policy.pinned_name} kept in f32 ({count} IR layers marked precise): with it in bf16, {was}"
        if manifest["precision"] != "int8":
            return None
        info["inference_precision"] = "f32"
        manifest["effective_precision"] = parts(policy, "int8", "f32", info)
        return f"float islands pinned to f32: with bf16 islands ({policy.pinned_name} f32), {was}"


def parts(policy: Policy, precision: str, hint: str | None, info: dict | None) -> dict[str, str]:
    """What each part computes in, as built, from the hint and the manifest's ``openvino`` section (pinned
    scopes, attention products float or int8, the int8 trial). OpenVINO may keep some ops, e.g. reductions, in
    f32 under a bf16 hint; the runner reads the compiled model's actual hint back."""
    info = info or {}
    float_part = FLOAT_OF_HINT.get(hint or "", precision)
    guide = "fp32" if info.get("f32_scopes") else float_part
    if info.get("guide_branch", {}).get("choice") == "int8":
        guide = policy.int8_trial_parts.format(float=float_part)
    attention = "int8" if info.get("attention", {}).get("matmuls", "int8") == "int8" else float_part
    return policy.ir_parts(precision, float_part, attention, guide, pinned=bool(info.get("f32_scopes")))

"""OpenVINO IR builder: ``ov.convert_model`` on the ONNX, ``ov.save_model``; INT8 with
``nncf.quantize`` on the IR (transformer model type, symmetric preset) from the calibration set.
bf16/fp16 are inference-precision hints chosen from the CPU's flags (:func:`runtimes.isa.openvino_hint`)
and recorded, not a rewritten graph; an int8 engine's float islands get the same treatment."""
from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from dcube_edge.runtimes import isa

if TYPE_CHECKING:
    from .build import BuildJob


def check(precision: str) -> str:
    """The inference-precision hint for this CPU (raises :class:`isa.PrecisionUnavailable` where it has no unit)."""
    return isa.openvino_hint(precision)


def build(job: BuildJob) -> tuple[str, dict]:
    """IR from the FP32 ONNX (kept beside it as model.onnx for FLOP counts); int8 through NNCF."""
    import openvino as ov

    onnx_path = job.precision_onnx("fp32")
    model = ov.convert_model(str(onnx_path))
    info: dict = {"inference_precision": job.hint}
    if job.precision == "int8":
        import logging

        import nncf

        if not os.environ.get("DCUBE_EDGE_VERBOSE"):  # `dcube-edge --verbose` keeps them
            nncf.set_log_level(logging.WARNING)  # its INFO lines (about 70 per export) drown our own output

        calibration = job.calibration_images()
        job.log(f"nncf.quantize on {len(calibration)} calibration images (transformer model type)")
        dataset = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])
        from dcube_edge.calibration.int8 import KEEP_FLOAT_SCOPES

        patterns = [re.escape(s) + r"[./].*" for s in KEEP_FLOAT_SCOPES]
        model = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE,
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration),
                              ignored_scope=nncf.IgnoredScope(patterns=patterns, validate=False))
        info.update(quantization={"tool": "nncf.quantize", "preset": "performance (symmetric)",
                                  "model_type": "transformer", "subset_size": int(len(calibration)),
                                  "ignored_scope_patterns": patterns})
    ov.save_model(model, str(job.work / "model.xml"), compress_to_fp16=False)
    return "model.xml", info


def tool_versions() -> dict:
    import nncf
    import openvino

    return {"openvino": openvino.get_version(), "nncf": nncf.__version__}


def effective_precision(precision: str, hint: str | None) -> dict:
    """What each part computes in, as built (OpenVINO may keep some ops, e.g. reductions, in f32 under a
    bf16 hint; the runner reads the compiled model's actual hint back)."""
    float_part = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(hint or "", precision)
    if precision == "int8":
        return {"trunk_matmuls_and_head_convs": "int8 (NNCF, symmetric, per-channel weights)",
                "resnet_guide_branch": float_part, "other_ops": float_part}
    return {"all": float_part}


def fallback(manifest: dict, failed: dict) -> str | None:
    """An int8 engine whose bf16 float islands broke the parity tolerance: pin them to f32 (the caller
    measures again). Returns the note for the manifest, or None when there is nothing to fall back to."""
    if manifest["precision"] != "int8" or manifest["openvino"].get("inference_precision") != "bf16":
        return None
    manifest["openvino"]["inference_precision"] = "f32"
    manifest["effective_precision"] = effective_precision("int8", "f32")
    return (f"float islands pinned to f32: in bf16 top-1 agreement was {failed['top1_agreement']:.4f}, "
            f"AUC delta {failed.get('auc_delta', float('nan')):.4f}")

"""OpenVINO IR builder: ``ov.convert_model`` on the ONNX, ``ov.save_model``; INT8 with
``nncf.quantize`` on the IR (transformer model type, symmetric preset) from the calibration set.
bf16/fp16 are inference-precision hints chosen from the CPU's flags (:func:`runtimes.isa.openvino_hint`)
and recorded, not a rewritten graph; an int8 engine's float islands get the same treatment."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from dcube_edge.runtimes.base import BackendUnavailable

INSTALL = "OpenVINO is not installed: pip install 'dcube-edge[openvino]' (openvino, nncf)"


def require_openvino() -> None:
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        raise BackendUnavailable(INSTALL) from None


def build_ir(onnx_path: Path, work: Path, precision: str, hint: str, calibration: np.ndarray | None,
             log: Callable[[str], None]) -> tuple[str, dict]:
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    info: dict = {"inference_precision": hint}
    if precision == "int8":
        import nncf

        log(f"nncf.quantize on {len(calibration)} calibration images (transformer model type)")
        dataset = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])
        from dcube_edge.calibration.int8 import KEEP_FLOAT_SCOPES

        patterns = [re.escape(s) + r"[./].*" for s in KEEP_FLOAT_SCOPES]
        model = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE,
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration),
                              ignored_scope=nncf.IgnoredScope(patterns=patterns, validate=False))
        info.update(quantization={"tool": "nncf.quantize", "preset": "performance (symmetric)",
                                  "model_type": "transformer", "subset_size": int(len(calibration)),
                                  "ignored_scope_patterns": patterns})
    ov.save_model(model, str(work / "model.xml"), compress_to_fp16=False)
    return "model.xml", info

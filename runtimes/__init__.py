"""Torch-free inference on an engine directory: numpy, Pillow and the chosen backend only.

    from dcube_edge import runtimes
    with runtimes.load("engines/breast-ort-fp32") as clf:
        for p in clf.classify(["scan.png"]):
            print(p.label, p.probs)
"""
from __future__ import annotations

from pathlib import Path

from .base import BackendUnavailable, Runner
from .classifier import Classifier, NonFiniteOutput, Prediction
from .manifest import EngineError, Manifest, read

__all__ = ["load", "make_runner", "Classifier", "Prediction", "Runner", "Manifest", "EngineError",
           "BackendUnavailable", "NonFiniteOutput"]


def make_runner(manifest: Manifest, threads: int | None = None, device: str | None = None,
                profile: bool = False) -> Runner:
    """The backend's runner for an engine (not yet activated); backends are imported lazily.
    ``profile`` builds it with per-op timing (``Runner.op_times``)."""
    backend = manifest.backend
    if backend == "onnxruntime":
        from .ort import OnnxRuntimeRunner

        providers = ["CPUExecutionProvider"] if device == "cpu" else None
        return OnnxRuntimeRunner(manifest.model_file, threads=threads, providers=providers, profile=profile)
    if backend == "openvino":
        from .ov import OpenVINORunner

        return OpenVINORunner(manifest.model_file, precision=manifest.data.get("openvino", {}).get(
            "inference_precision", "f32"), threads=threads, device=device or "CPU",
            cache_dir=manifest.dir / "ov_cache", profile=profile)
    if backend == "tensorrt":
        from .trt import TensorRTRunner

        return TensorRTRunner(manifest.model_file)
    raise EngineError(f"unknown backend {backend!r}")


def load(engine_dir: str | Path, threads: int | None = None, device: str | None = None,
         verify: bool = True) -> Classifier:
    """Verify an engine dir against its manifest and return a :class:`Classifier` for it."""
    manifest = read(engine_dir, verify=verify)
    return Classifier(manifest, make_runner(manifest, threads=threads, device=device))

"""Torch-free inference on an engine directory: numpy, Pillow and the chosen backend only.

    from dcube_edge import runtimes
    with runtimes.load("engines/breast-ort-fp32") as clf:
        for p in clf.classify(["scan.png"]):
            print(p.label, p.probs)
"""
from __future__ import annotations

from pathlib import Path

from . import backends, precisions
from .base import BackendUnavailable, Runner, RunnerNotActive
from .classifier import Classifier, NonFiniteOutput, Prediction, ViewResult
from .manifest import EngineError, Manifest, read
from .record import EngineRecord
from .spec import GraphSpec, SpecMismatch

__all__ = ["load", "make_runner", "Classifier", "Prediction", "ViewResult", "Runner", "Manifest", "EngineRecord",
           "EngineError", "GraphSpec", "BackendUnavailable", "NonFiniteOutput", "RunnerNotActive", "SpecMismatch",
           "backends", "precisions", "read"]


def make_runner(manifest: Manifest, threads: int | None = None, device: str | None = None,
                profile: bool = False) -> Runner:
    """The engine's runner (not yet activated), from the backend registry; backends are imported lazily.
    ``profile`` builds it with per-op timing (``Runner.op_times``)."""
    runner_class = backends.get(manifest.backend).runner_class()
    if not issubclass(runner_class, Runner):
        raise TypeError(f"backend {manifest.backend!r} names {runner_class.__name__}, which is not a Runner")
    return runner_class.from_manifest(manifest, threads=threads, device=device, profile=profile)


def load(engine_dir: str | Path, threads: int | None = None, device: str | None = None,
         verify: bool = True, trusted_keys: list[Path] | None = None) -> Classifier:
    """Verify an engine dir against its manifest (and, given ``trusted_keys``, its signature) and return a
    :class:`Classifier` for it."""
    manifest = read(engine_dir, verify=verify, trusted_keys=trusted_keys)
    return Classifier(manifest, make_runner(manifest, threads=threads, device=device))

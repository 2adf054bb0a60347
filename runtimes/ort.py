"""ONNX Runtime runner: CPU provider, CUDA provider first when this onnxruntime build has it."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dcube_edge.errors import BackendUnavailable, RunnerNotActive

from .base import Runner
from .spec import GraphSpec

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

    from .manifest import Manifest


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, model: str | Path, threads: int | None = None, providers: list[str] | None = None,
                 profile: bool = False, spec: GraphSpec | None = None):
        super().__init__(spec)
        self.model, self.threads, self.providers, self.profile = Path(model), threads, providers, profile
        self.session: InferenceSession | None = None

    @classmethod
    def from_manifest(cls, manifest: Manifest, threads: int | None = None, device: str | None = None,
                      profile: bool = False) -> OnnxRuntimeRunner:
        providers = ["CPUExecutionProvider"] if device == "cpu" else None
        return cls(manifest.model_file, threads=threads, providers=providers, profile=profile, spec=manifest.spec)

    def activate_impl(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed: pip install onnxruntime") from None
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            opts.intra_op_num_threads = self.threads
        if self.profile:
            import tempfile

            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="dcube-ort-profile-")) / "ort")
        available = ort.get_available_providers()
        providers = self.providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(self.model), sess_options=opts, providers=providers)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _session(self) -> InferenceSession:
        """The session of an active runner (``activate`` made it; ``deactivate`` dropped it)."""
        if self.session is None:
            raise RunnerNotActive(f"{self.name} runner is not active: use it as a context manager or call activate()")
        return self.session

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self._session().run(self.output_names, feed)))

    def op_times(self) -> list[tuple[str, float, str]]:
        """Node kernel times of every inference since activation, from ONNX Runtime's profiler (ends it)."""
        import json
        import shutil

        path = Path(self._session().end_profiling())
        events = json.loads(path.read_text())
        shutil.rmtree(path.parent, ignore_errors=True)
        return [(e["args"]["op_name"], e["dur"] / 1e3, e["args"].get("provider", ""))
                for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]

    def deactivate_impl(self) -> None:
        self.session = None

"""ONNX Runtime runner: CPU provider, CUDA provider first when this onnxruntime build has it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import BackendUnavailable, Runner


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, model: str | Path, threads: int | None = None, providers: list[str] | None = None):
        super().__init__()
        self.model, self.threads, self.providers = Path(model), threads, providers
        self.session = None

    def activate_impl(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed: pip install onnxruntime") from None
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            opts.intra_op_num_threads = self.threads
        available = ort.get_available_providers()
        providers = self.providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(self.model), sess_options=opts, providers=providers)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))

    def deactivate_impl(self) -> None:
        self.session = None

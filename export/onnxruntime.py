"""ONNX Runtime build half: the engine is the precision's ONNX itself (fp16 mixed, int8 Q/DQ), which
ONNX Runtime runs on the CPU provider or, in a GPU build, on CUDA."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .builder import Builder

if TYPE_CHECKING:
    from .job import BuildJob


class OnnxRuntimeBuilder(Builder):
    def build(self, job: BuildJob) -> tuple[str, dict]:
        job.precision_onnx()
        return "model.onnx", {}

    def effective_precision(self, job: BuildJob, info: dict | None) -> dict[str, str]:
        return job.policy.qdq_parts(job.precision)

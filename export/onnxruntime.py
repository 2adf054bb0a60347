"""ONNX Runtime build half: the engine is the precision's ONNX itself (fp16 mixed, int8 Q/DQ), which
ONNX Runtime runs on the CPU provider or, in a GPU build, on CUDA."""
from __future__ import annotations

from typing import TYPE_CHECKING

from dcube_edge.runtimes.choices import Choices

from .builder import Builder, Built

if TYPE_CHECKING:
    from .job import BuildJob


class OnnxRuntimeBuilder(Builder):
    def build(self, job: BuildJob) -> Built:
        made = job.precision_onnx()
        return Built("model.onnx", recipe=made.recipe, calibration_set=made.calibration_set)

    def effective_precision(self, job: BuildJob, choices: Choices | None) -> dict[str, str]:
        return job.policy.qdq_parts(job.precision)

"""The ``torch`` backend's build half (its runner is :mod:`dcube_edge.torch_backend`): the run's inference weights
(trunk + head, or the baseline CNN) in one safetensors file beside its config; ``bf16`` is CPU autocast, offered
where the CPU has bf16 units."""
from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from dcube_edge.runtimes import isa
from dcube_edge.runtimes.choices import Choices, TorchChoices
from dcube_edge.torch_backend import CONFIG, WEIGHTS

from .builder import Builder, Built

if TYPE_CHECKING:
    from .job import BuildJob


class TorchBuilder(Builder):
    """The run's inference weights (trunk + head, or the baseline CNN; one safetensors file) and its config."""

    def check(self, precision: str, flags: frozenset[str]) -> None:
        if precision == "bf16" and not isa.has_bf16(flags):
            raise isa.PrecisionUnavailable(f"this CPU has no bf16 units ({isa.describe(flags)}); torch bf16 autocast "
                                           "would be emulated: use fp32")

    def build(self, job: BuildJob) -> Built:
        from dcube_edge import rundir

        rundir.save_weights(job.run.model(), job.work / WEIGHTS)
        shutil.copyfile(job.run.path / rundir.CONFIG, job.work / CONFIG)
        return Built(WEIGHTS, TorchChoices(autocast=job.precision == "bf16"))

    def effective_precision(self, job: BuildJob, choices: Choices | None) -> dict[str, str]:
        return {"all": "bf16 (torch CPU autocast: matmuls and convolutions bf16, reductions fp32)"
                if job.precision == "bf16" else "fp32"}

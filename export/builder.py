"""The build half of a backend, as :mod:`.build` calls it: one :class:`Builder` subclass per backend, named in the
backend registry (:mod:`dcube_edge.runtimes.backends`) and constructed only when an export needs it. A builder
returns what it decided (:class:`Built`, :class:`Step`); the export composes the engine record from those and
writes it once."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dcube_edge.runtimes.choices import Choices
from dcube_edge.runtimes.sections import CalibrationSet, FP16Recipe, Parity, QDQRecipe

if TYPE_CHECKING:
    from .job import BuildJob


@dataclass(frozen=True)
class Built:
    """What a builder made in the work folder: its model file, the choices it made (the record's backend section),
    how the precision's ONNX was made and from which calibration set, and the notes of choices that moved the
    precision from what was asked (OpenVINO: float islands f32 where bf16 was not faster)."""

    model_file: str
    choices: Choices | None = None
    recipe: FP16Recipe | QDQRecipe | None = None
    calibration_set: CalibrationSet | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """One parity fallback taken: the engine in the work folder changed as ``note`` says; ``choices`` as they are now."""

    note: str
    choices: Choices | None


class Builder(ABC):
    """check → build → (parity is measured) → fallback while it fails → finish."""

    def check(self, precision: str, flags: frozenset[str]) -> str | None:
        """Raise :class:`~dcube_edge.runtimes.isa.PrecisionUnavailable` where a CPU with ``flags`` cannot build
        ``precision``; else the device's precision hint (OpenVINO's inference precision) or None."""
        return None

    @abstractmethod
    def build(self, job: BuildJob) -> Built:
        """Write the engine's model file(s) into ``job.work``."""

    def tool_versions(self) -> dict[str, str]:
        return {}

    def effective_precision(self, job: BuildJob, choices: Choices | None) -> dict[str, str]:
        """What each part of the engine computes in, as built with ``choices`` (``job.policy`` names the parts)."""
        return {"all": job.precision}

    def fallback(self, job: BuildJob, choices: Choices | None, failed: Parity) -> Step | None:
        """The next step towards parity after ``failed`` broke the tolerance: change the engine in ``job.work``
        and say how, or None when there is no step left."""
        return None

    def finish(self, work: Path) -> bool:
        """Remove files kept only for :meth:`fallback`; True if any was removed."""
        return False

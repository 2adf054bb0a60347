"""The build half of a backend, as :mod:`.build` calls it: one :class:`Builder` subclass per backend, named
in the backend registry (:mod:`dcube_edge.runtimes.backends`) and constructed only when an export needs it."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .job import BuildJob


class Builder(ABC):
    """check → build → (parity is measured) → fallback while it fails → finish."""

    def check(self, precision: str) -> str | None:
        """Raise :class:`~dcube_edge.errors.Unavailable` where this machine cannot build ``precision``; else
        the device's precision hint (OpenVINO's inference precision) or None."""
        return None

    @abstractmethod
    def build(self, job: BuildJob) -> tuple[str, dict]:
        """Write the engine's model file(s) into ``job.work``; (model file name, the manifest's backend section)."""

    def tool_versions(self) -> dict[str, str]:
        return {}

    def effective_precision(self, job: BuildJob, info: dict | None) -> dict[str, str]:
        """What each part of the engine computes in, as built (``job.policy`` names the parts)."""
        return {"all": job.precision}

    def fallback(self, job: BuildJob, manifest: dict, failed: dict) -> str | None:
        """The next step towards parity after ``failed`` broke the tolerance: change the engine in ``job.work``
        (and ``manifest``) and return a note for the manifest, or None when there is no step left."""
        return None

    def finish(self, work: Path) -> bool:
        """Remove files kept only for :meth:`fallback`; True if any was removed."""
        return False

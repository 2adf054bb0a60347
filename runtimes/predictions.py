"""What ``classify`` returns for a file, as the CLI's ``--json``, ``evaluate`` and the DICOM node read it: the
object's decision and, beside it, one result per view (every frame, every tissue region), with where each lies."""
from __future__ import annotations

from dataclasses import dataclass, field

from .observed import ViewInputs
from .reader import View


@dataclass
class ViewResult:
    """One view's result: ``view`` says where it lies (frame number, region item number, box); ``label`` is the
    decision at the engine's operating point, ``probs`` the calibrated probabilities, ``argmax`` the most probable
    class."""

    view: View
    label: str
    probs: dict[str, float]
    argmax: str
    inputs: ViewInputs | None = None  # its input statistics, where the classifier observes them (the node does)

    @property
    def frame(self) -> int | None:
        return self.view.frame

    @property
    def region(self) -> int | None:
        return self.view.region

    def to_dict(self) -> dict:
        return {**self.view.to_dict(), "label": self.label, "probs": self.probs, "argmax": self.argmax}


@dataclass
class Prediction:
    """One file's result. ``label`` is the object's decision at the engine's operating point, ``probs`` its
    calibrated probabilities, ``argmax`` its most probable class (the two differ where the operating point moves a
    call) — for an object of several views, combined by ``instance_policy``. ``frames`` holds one :class:`ViewResult` per view in
    reading order; ``number_of_frames`` the object's frames; ``regions`` which part of each frame was read
    ("ultrasound tissue regions" or "whole frame"); ``notes`` why a tissue region was not used (and the whole frame
    read instead); ``warnings`` what the libraries said while reading it (pydicom on a malformed attribute).
    ``error`` is set, and the decision empty, where the file could not be classified."""

    path: str
    label: str | None = None
    probs: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    argmax: str | None = None
    frames: list[ViewResult] = field(default_factory=list)
    number_of_frames: int | None = None
    regions: str | None = None
    instance_policy: str | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "probs": self.probs, "argmax": self.argmax, "error": self.error,
                "number_of_frames": self.number_of_frames, "regions": self.regions,
                "instance_policy": self.instance_policy,
                "frames": [f.to_dict() for f in self.frames], "notes": list(self.notes), "warnings": list(self.warnings)}

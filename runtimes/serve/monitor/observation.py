"""What one classified instance showed the monitor: its calibrated scores and decision, the input statistics of its
views (:mod:`dcube_edge.runtimes.observed`, the code the engine's reference was recorded with), its
out-of-distribution score against the reference, and the acquisition metadata whose mix the site baseline learns.
Torch-free; pydicom only to read the metadata."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...observed import FEATURES, INTENSITY, ViewInputs
from ...predictions import Prediction
from ...sections import Reference

# The acquisition attributes whose mix is compared with the site's baseline (PS3.3 C.7.5.1 General Equipment,
# C.7.3.1 General Series, C.7.6.3 Image Pixel, C.8.5.5 US Image); absent ones are not counted.
METADATA = ("Manufacturer", "ManufacturerModelName", "BodyPartExamined", "PhotometricInterpretation", "PixelSpacing",
            "TransducerData")
MAX_VIEWS = 16  # views of one instance kept (evenly spaced): a long cine loop is not a thousand observations


@dataclass(frozen=True)
class Observation:
    """One instance as the monitor sees it."""

    label: str
    scores: dict[str, float]
    inputs: tuple[tuple[float, ...], ...] = ()  # per view kept, :data:`FEATURES` in order
    ood: float | None = None  # median over its views of the Mahalanobis distance from the reference
    meta: dict[str, str] = field(default_factory=dict)
    form: dict[str, bool] = field(default_factory=dict)  # colour, multi-frame, tissue regions: what the reader said

    def to_json(self) -> str:
        return json.dumps({"label": self.label, "scores": self.scores, "inputs": [list(v) for v in self.inputs],
                           "ood": self.ood, "meta": self.meta, "form": self.form}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Observation:
        d = json.loads(text)
        return cls(d["label"], d["scores"], tuple(tuple(v) for v in d.get("inputs") or ()), d.get("ood"),
                   d.get("meta") or {}, d.get("form") or {})

    def feature(self, name: str) -> list[float]:
        """One input statistic of each kept view."""
        i = FEATURES.index(name)
        return [v[i] for v in self.inputs]


def ood_score(inputs: list[ViewInputs], reference: Reference | None) -> float | None:
    """The median over views of the Mahalanobis distance of their intensity features from the reference's mean
    under its (shrunk) precision matrix; None without a reference or views."""
    if reference is None or not reference.ood_features or not inputs:
        return None
    idx = [FEATURES.index(f) for f in reference.ood_features]
    d = np.asarray([[v.values[i] for i in idx] for v in inputs]) - np.asarray(reference.ood_mean)
    squared = np.einsum("ij,jk,ik->i", d, np.asarray(reference.ood_precision), d)
    return round(float(np.median(np.sqrt(np.maximum(squared, 0.0)))), 4)


def kept_views(inputs: list[ViewInputs]) -> list[ViewInputs]:
    if len(inputs) <= MAX_VIEWS:
        return inputs
    return [inputs[int(i)] for i in np.linspace(0, len(inputs) - 1, MAX_VIEWS).round()]


def metadata(path: str | Path) -> dict[str, str]:
    """The :data:`METADATA` attributes a DICOM file holds, as text (a file that is not DICOM has none)."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=list(METADATA))
    except (InvalidDicomError, OSError, ValueError):
        return {}
    found = {}
    for name in METADATA:
        value = ds.get(name)
        if value not in (None, ""):
            found[name] = "\\".join(f"{float(v):.3g}" for v in value) if name == "PixelSpacing" else str(value)[:64]
    return found


def observe(pred: Prediction, reference: Reference | None, meta: dict[str, str]) -> Observation | None:
    """The observation of one classified instance (None for one that failed)."""
    if pred.error or pred.label is None:
        return None
    inputs = [f.inputs for f in pred.frames if f.inputs is not None]
    form = {"colour": inputs[0].colour, "multi-frame": inputs[0].frames > 1, "tissue regions": inputs[0].regions} \
        if inputs else {}
    return Observation(pred.label, {k: round(float(v), 6) for k, v in (pred.probs or {}).items()},
                       tuple(v.values for v in kept_views(inputs)), ood_score(inputs, reference), meta, form)


__all__ = ["INTENSITY", "METADATA", "Observation", "metadata", "observe", "ood_score"]

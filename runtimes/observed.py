"""What the model was given, as a few numbers per view: the input statistics an engine's reference records at
export (:mod:`dcube_edge.export.reference`) and the DICOM node's monitor compares every instance with
(``runtimes/serve/monitor``). Computed on the preprocessed view (what the graph reads, mapped back to [0, 1]) and
on the picture before resizing (its size), plus what the reader says of the file (colour, frames, tissue regions).
Torch-free, numpy only."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The intensity features of a view, in this order: its mean and contrast (standard deviation) in [0, 1], its 10th,
# 50th and 90th percentiles, and its edge strength (mean absolute difference between neighbouring pixels).
INTENSITY = ("intensity_mean", "contrast", "p10", "p50", "p90", "edges")
# The geometry of a view before resizing: its side (square root of its pixel count) and aspect (width / height).
GEOMETRY = ("side", "aspect")
FEATURES = INTENSITY + GEOMETRY


@dataclass(frozen=True)
class ViewInputs:
    """One view's input statistics (:data:`FEATURES`, in order) and what the reader said of its file."""

    values: tuple[float, ...]
    colour: bool = False  # the file's pixels are colour (RGB, YBR, palette), turned grey by the colour rule
    frames: int = 1  # the file's number of frames
    regions: bool = False  # read as ultrasound tissue regions, not the whole frame

    def to_dict(self) -> dict:
        return {**dict(zip(FEATURES, self.values)), "colour": self.colour, "frames": self.frames,
                "regions": self.regions}

    @classmethod
    def from_dict(cls, d: dict) -> ViewInputs:
        return cls(tuple(float(d[k]) for k in FEATURES), bool(d.get("colour")), int(d.get("frames") or 1),
                   bool(d.get("regions")))


def of_view(gray_shape: tuple[int, ...], x: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0),
            colour: bool = False, frames: int = 1, regions: bool = False) -> ViewInputs:
    """The statistics of one view: ``gray_shape`` the picture's (H, W) before resizing, ``x`` the preprocessed
    (1, S, S) array in ``value_range``."""
    lo, hi = value_range
    unit = (np.asarray(x, dtype=np.float64).reshape(x.shape[-2:]) - lo) / (hi - lo)
    p10, p50, p90 = np.percentile(unit, (10, 50, 90))
    edges = (np.abs(np.diff(unit, axis=0)).mean() + np.abs(np.diff(unit, axis=1)).mean()) / 2
    h, w = int(gray_shape[0]), int(gray_shape[1])
    values = (unit.mean(), unit.std(), p10, p50, p90, edges, float(np.sqrt(h * w)), w / max(h, 1))
    return ViewInputs(tuple(round(float(v), 6) for v in values), colour, frames, regions)


def matrix(inputs: list[ViewInputs], features: tuple[str, ...] = FEATURES) -> np.ndarray:
    """(views, features) of the named features."""
    idx = [FEATURES.index(f) for f in features]
    return np.asarray([[v.values[i] for i in idx] for v in inputs], dtype=np.float64).reshape(len(inputs), len(idx))

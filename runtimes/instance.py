"""How an object's views — the frames of a cine loop, the tissue regions of a dual view — make the one decision
reported for it: the instance policy (``PreprocessSpec.instance``, bound into the engine's facts). Every view is
classified; the policy combines their calibrated probabilities, and the engine's operating point decides on the
result, as it does for a single image.

``median``
    per class, the median of the views' calibrated probabilities, renormalised to sum to 1 (for two classes they
    already do). An object with one view is that view; with two (a dual view), their mean.

Why the median, and not the mean or the most suspicious frame: measured on simulated probe sweeps,
docs/decisions/instance-policy.md (research/experiments/instance_policy.py)."""
from __future__ import annotations

import numpy as np

MEDIAN = "median"
POLICIES = (MEDIAN,)
DESCRIPTIONS = {MEDIAN: "per class, the median of the views' calibrated probabilities, renormalised"}  # reports say
DEFAULT = MEDIAN


def combine(probs: np.ndarray, policy: str = DEFAULT) -> np.ndarray:
    """The object's calibrated probabilities from its views' ``probs`` (views, classes) by ``policy``."""
    if policy not in POLICIES:
        raise ValueError(f"unknown instance policy {policy!r}")
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 1:
        return probs[0]
    middle = np.median(probs, axis=0)
    return middle / middle.sum()

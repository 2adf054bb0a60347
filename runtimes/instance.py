"""How an object's views — the frames of a cine loop, the tissue regions of a dual view — make the one decision
reported for it: the instance policy (``PreprocessSpec.instance``, bound into the engine's facts). Every view is
classified; the policy combines their calibrated probabilities, and the engine's operating point decides on the
result, as it does for a single image:

``mean``
    the mean of the views' calibrated probabilities (any engine).
``most-suspicious``
    the probabilities of the view with the highest calibrated probability of the engine's positive class (engines
    whose operating point is a threshold on a positive class: two classes).

Which is the default, and why, is measured: docs/decisions/instance-policy.md. An object with one view is that
view under either policy."""
from __future__ import annotations

import numpy as np

from dcube_edge.errors import UserError

from .decision import Decision

MEAN = "mean"
MOST_SUSPICIOUS = "most-suspicious"
POLICIES = (MEAN, MOST_SUSPICIOUS)
DEFAULT = MEAN


def check(policy: str, decision: Decision) -> None:
    """Refuse, at load, a policy the engine's decision cannot apply."""
    if policy not in POLICIES:
        raise UserError(f"unknown instance policy {policy!r} (this dcube-edge knows {', '.join(POLICIES)}): install "
                        "the dcube-edge that wrote the engine")
    if policy == MOST_SUSPICIOUS and decision.positive is None:
        raise UserError(f"the engine binds the instance policy {MOST_SUSPICIOUS}, which needs a positive class, but its "
                        f"operating point ({decision.describe()}) has none: re-export it")


def combine(probs: np.ndarray, decision: Decision, policy: str) -> tuple[np.ndarray, int | None]:
    """(the object's calibrated probabilities, the index of the view they are taken from or None) for the views'
    calibrated probabilities ``probs`` (views, classes)."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 1:
        return probs[0], 0
    if policy == MOST_SUSPICIOUS:
        chosen = int(np.argmax(probs[:, decision.positive]))
        return probs[chosen], chosen
    return probs.mean(axis=0), None

"""What two backends computing the same model can promise to agree on, for tests that compare them.

Two correct fp32 implementations differ by rounding (another CPU class, another kernel order). Scores then agree
within a tolerance, and decisions and ranks agree *except where the reference itself is within that tolerance of
a tie*: such an image may take either label, such a pair of images may rank either way. These helpers turn the
measured difference between the two into the bound a test can assert, instead of exact equality that one near-tied
pair breaks on another CPU class (as the parity report excuses near-tie flips, export/parity.py)."""
from __future__ import annotations

import numpy as np


def near_tied(scores: np.ndarray, margin: float) -> np.ndarray:
    """Per row: the top two scores are within ``margin`` of each other, so the argmax may go either way."""
    top2 = np.sort(scores, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0] <= margin


def decisions_agree_beyond_ties(ref: np.ndarray, got: np.ndarray) -> tuple[bool, str]:
    """(every argmax that differs is a near-tie of the reference at twice the measured deviation, why not)."""
    delta = float(np.abs(ref - got).max())
    differ = ref.argmax(1) != got.argmax(1)
    decisive = differ & ~near_tied(ref, 2 * delta)
    return not decisive.any(), f"rows {np.flatnonzero(decisive).tolist()} differ beyond a near-tie (max |Δ| {delta:.2e})"


def auc_flip_bound(labels: np.ndarray, ref: np.ndarray, delta: float) -> float:
    """The most a one-vs-rest macro AUC (binary: class 1's) can move when every score moves by at most ``delta``:
    only positive/negative pairs closer than 2·delta in the reference can swap, each moving its class's AUC by at
    most one pair's share."""
    classes = [1] if ref.shape[1] == 2 else list(range(ref.shape[1]))
    shares = []
    for c in classes:
        pos, neg = ref[labels == c, c], ref[labels != c, c]
        if not len(pos) or not len(neg):
            continue
        close = np.abs(pos[:, None] - neg[None, :]) <= 2 * delta
        shares.append(close.sum() / (len(pos) * len(neg)))
    return float(np.mean(shares)) if shares else 0.0

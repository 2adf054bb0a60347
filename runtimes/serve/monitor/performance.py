"""How the engine does at the site: once labels arrive (:mod:`.labels`), each class's sensitivity, specificity, PPV
and NPV at the bound operating point (the node's calls) with 95 % Wilson intervals (scipy.stats.binomtest), its
calibration error, and a one-sided Fisher exact test (scipy.stats.fisher_exact) of "worse than on the reference" —
the operating split the model card's figures come from (the engine's reference's ``confusion``); until they do, a
label-free estimate of the same figures from the calibrated probabilities (confidence-based performance estimation:
an instance called c counts p(c) as a true positive and 1 - p(c) as a false one). How far that estimate can be
trusted is measured in docs/monitoring.md."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ...sections import Reference

PERF_ALPHA = 1e-3  # the performance alert: site worse than the reference at this one-sided p (Bonferroni per class)
MIN_LABELLED = 10  # labelled instances of a class (and of the rest) before its figures are compared
FIGURES = ("sensitivity", "specificity", "ppv", "npv")


@dataclass(frozen=True)
class Figure:
    value: float | None
    low: float | None
    high: float | None
    n: int


def proportion(k: float, n: float) -> Figure:
    """k of n with its 95 % Wilson interval (n may be an expected count: the estimate's, without an interval)."""
    from scipy.stats import binomtest

    if n <= 0:
        return Figure(None, None, None, 0)
    if float(k).is_integer() and float(n).is_integer():
        ci = binomtest(int(k), int(n)).proportion_ci(0.95, method="wilson")
        return Figure(round(k / n, 4), round(float(ci.low), 4), round(float(ci.high), 4), int(n))
    return Figure(round(k / n, 4), None, None, int(round(n)))


def figures(tp: float, fn: float, fp: float, tn: float) -> dict[str, Figure]:
    return {"sensitivity": proportion(tp, tp + fn), "specificity": proportion(tn, tn + fp),
            "ppv": proportion(tp, tp + fp), "npv": proportion(tn, tn + fn)}


def counts(truth: Sequence[str], called: Sequence[str], c: str) -> tuple[int, int, int, int]:
    t, p = np.asarray(truth) == c, np.asarray(called) == c
    return int((t & p).sum()), int((t & ~p).sum()), int((~t & p).sum()), int((~t & ~p).sum())


def worse(site: tuple[int, int], card: tuple[int, int]) -> float:
    """One-sided Fisher exact p of the site's success share (hits, misses) being under the card's."""
    from scipy.stats import fisher_exact

    if sum(site) < MIN_LABELLED or sum(card) == 0:
        return 1.0
    return float(fisher_exact([list(site), list(card)], alternative="less").pvalue)


def ece(truth: Sequence[str], probs: Sequence[dict], c: str, bins: int = 10) -> float | None:
    """Expected calibration error of p(c) against the truth (equal-width bins)."""
    if not truth:
        return None
    p = np.asarray([d.get(c, 0.0) for d in probs], float)
    y = np.asarray(truth) == c
    which = np.minimum((p * bins).astype(int), bins - 1)
    return round(float(sum(abs(p[which == b].mean() - y[which == b].mean()) * (which == b).sum()
                           for b in range(bins) if (which == b).any()) / len(p)), 4)


@dataclass(frozen=True)
class ClassPerformance:
    name: str
    labelled: int
    site: dict[str, Figure]
    card: dict[str, Figure]
    estimated: dict[str, Figure]  # label-free, over the same window's instances
    ece: float | None
    p_worse: float  # the smaller of sensitivity's and specificity's one-sided Fisher p, Bonferroni-adjusted

    @property
    def alarming(self) -> bool:
        return self.p_worse < PERF_ALPHA

    def to_dict(self) -> dict:
        return {**asdict(self), "alarming": self.alarming}


def estimate(called: Sequence[str], probs: Sequence[dict], c: str) -> dict[str, Figure]:
    """The figures of class ``c`` expected from the calibrated probabilities alone."""
    p = np.asarray([d.get(c, 0.0) for d in probs], float)
    mine = np.asarray(called) == c
    return figures(float(p[mine].sum()), float(p[~mine].sum()), float((1 - p[mine]).sum()),
                   float((1 - p[~mine]).sum()))


def evaluate(labelled: Sequence[tuple[str, str, dict]], reference: Reference | None,
             unlabelled: Sequence[tuple[str, dict]] = ()) -> list[ClassPerformance]:
    """Per class: the site's figures on ``labelled`` (truth, call, probabilities), the card's, the label-free
    estimate on ``unlabelled`` (call, probabilities; the labelled ones' own calls where none is given)."""
    truth = [t for t, _, _ in labelled]
    called = [c for _, c, _ in labelled]
    probs = [p for _, _, p in labelled]
    est_called, est_probs = ([c for c, _ in unlabelled], [p for _, p in unlabelled]) if unlabelled else (called, probs)
    classes = list(reference.decision_rates) if reference is not None else sorted(set(truth) | set(called))
    out = []
    for c in classes:
        tp, fn, fp, tn = counts(truth, called, c)
        ref = reference.confusion.get(c) if reference is not None else None
        card = figures(*ref) if ref else {}
        p = 1.0
        if ref and min(tp + fn, fp + tn) >= MIN_LABELLED:
            p = min(1.0, 2 * min(worse((tp, fn), (ref[0], ref[1])), worse((tn, fp), (ref[3], ref[2]))))
        out.append(ClassPerformance(c, len(truth), figures(tp, fn, fp, tn), card,
                                    estimate(est_called, est_probs, c) if est_called else {},
                                    ece(truth, probs, c), round(p, 8)))
    return out

"""One evaluation of the stream: the last ``window`` instances compared with the engine's reference (decision
rate, score distribution, input statistics) and with the site baseline (the acquisition metadata mix of the first
``baseline`` instances the node classified, which the reference cannot know). Each comparison is a
:class:`Finding`; an alert is a finding whose p-value is under :data:`ALPHA` (docs/monitoring.md: the figure
chosen for the false-alarm rate measured by research/experiments/monitor_alarms.py)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ...observed import FEATURES
from ...sections import Reference
from .checks import NONE, Test, homogeneity, ks, smallest
from .observation import METADATA, Observation

# An alert starts when a comparison's p-value (Bonferroni-adjusted within the comparison) falls under ALPHA, and
# ends when it is back over ALPHA_END. Measured (docs/monitoring.md): over 5,000-instance in-distribution streams
# evaluated every 25 instances, no alert in the simulated streams at this figure.
ALPHA = 1e-5
ALPHA_END = 1e-2
MIN_WINDOW = 50  # instances in a window before it is compared at all
CHECKS = ("decision-rate", "score-distribution", "input-statistics", "metadata-mix")


@dataclass(frozen=True)
class Finding:
    """One comparison of one window: ``statistic`` is its p-value (adjusted), alarming under ``threshold``."""

    name: str
    window: str
    statistic: float
    threshold: float
    test: str  # which test: ks, chi-square
    value: float  # the test's own statistic (KS D, chi-square)
    n: int
    detail: str

    @property
    def alarming(self) -> bool:
        return self.n >= MIN_WINDOW and self.statistic < self.threshold

    def to_dict(self) -> dict:
        return {**asdict(self), "alarming": self.alarming}


def decision_rate(window: Sequence[Observation], reference: Reference) -> Test:
    """The calls of the window against the reference's (counts: its rates times its instances)."""
    expected = {c: r * reference.instances for c, r in reference.decision_rates.items()}
    return homogeneity([o.label for o in window], expected, "call")


def score_distribution(window: Sequence[Observation], reference: Reference) -> tuple[str, Test]:
    """Each class's calibrated probability against the reference's (one class for two: the other is its
    complement)."""
    classes = list(reference.scores)[: 1 if len(reference.scores) == 2 else None]
    return smallest({c: ks([o.scores.get(c, 0.0) for o in window], reference.scores[c], f"p({c})") for c in classes})


def input_statistics(window: Sequence[Observation], reference: Reference) -> tuple[str, Test]:
    """Each input statistic of the window's views against the reference's views, and the shares of colour,
    multi-frame and tissue-region files against the reference's (where the window says)."""
    tests = {f: ks([v for o in window for v in o.feature(f)], reference.inputs[f], f)
             for f in FEATURES if f in reference.inputs}
    said = [o.form for o in window if o.form]
    for name, share in (("colour", reference.colour), ("multi-frame", reference.multiframe),
                        ("tissue regions", reference.regions)):
        if said:
            expected = {"yes": share * reference.n, "no": (1 - share) * reference.n}
            tests[name] = homogeneity(["yes" if f.get(name) else "no" for f in said], expected, name)
    return smallest(tests)


def metadata_mix(window: Sequence[Observation], baseline: Sequence[Observation]) -> tuple[str, Test]:
    """Each acquisition attribute's values in the window against the site baseline's (an attribute absent from
    both is not compared; one a file lacks counts as "(absent)")."""
    tests = {}
    for name in METADATA:
        if any(name in o.meta for o in baseline) or any(name in o.meta for o in window):
            base = Counter(o.meta.get(name, "(absent)") for o in baseline)
            tests[name] = homogeneity([o.meta.get(name, "(absent)") for o in window], base, name)
    return smallest(tests)


def evaluate(window: Sequence[Observation], reference: Reference | None, baseline: Sequence[Observation],
             label: str, site_window: Sequence[Observation] | None = None) -> list[Finding]:
    """Every comparison of ``window`` (named ``label``): against the reference where there is one; the metadata
    of ``site_window`` (the window's instances after the baseline; default all of it) against ``baseline``."""
    found: list[Finding] = []

    def add(name: str, test: str, t: Test) -> None:
        found.append(Finding(name, label, t.p, ALPHA, test, round(t.statistic, 6), t.n, t.detail))

    if reference is not None and reference.instances:
        add("decision-rate", "chi-square", decision_rate(window, reference) if window else NONE)
        add("score-distribution", "ks", score_distribution(window, reference)[1])
        add("input-statistics", "ks", input_statistics(window, reference)[1])
    site = window if site_window is None else site_window
    add("metadata-mix", "chi-square", metadata_mix(site, baseline)[1])
    return found


def ood_summary(window: Sequence[Observation], reference: Reference | None) -> dict:
    """The window's out-of-distribution scores beside the reference's: median, 95th percentile, the share above
    the reference's 99th percentile."""
    scores = np.asarray([o.ood for o in window if o.ood is not None], float)
    if reference is None or not reference.ood or not len(scores):
        return {"n": int(len(scores))}
    ref = np.asarray(reference.ood, float)
    q99 = float(np.quantile(ref, 0.99))
    return {"n": int(len(scores)), "median": round(float(np.median(scores)), 4),
            "p95": round(float(np.quantile(scores, 0.95)), 4), "reference_median": round(float(np.median(ref)), 4),
            "reference_p99": round(q99, 4), "above_reference_p99": round(float((scores > q99).mean()), 4)}

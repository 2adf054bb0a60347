"""The statistics that compare a window of the stream with what it should look like, each from scipy.stats:
a two-sample Kolmogorov-Smirnov test of a continuous sample against the reference's, and a chi-square test of
homogeneity of category counts (decision calls against the reference's, acquisition metadata against the site
baseline's). Each returns a :class:`Test`: the statistic, its p-value, and what was compared."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Test:
    """One statistical comparison: ``p`` small means the window does not look like what it is compared with."""

    statistic: float
    p: float
    n: int  # the window's sample size
    detail: str = ""  # what differs most, in words


NONE = Test(0.0, 1.0, 0, "too few to compare")


def ks(window: Sequence[float], reference: Sequence[float], name: str = "") -> Test:
    """Two-sample Kolmogorov-Smirnov (scipy.stats.ks_2samp, exact where it can be): does ``window`` come from the
    distribution ``reference`` was drawn from?"""
    from scipy.stats import ks_2samp

    if len(window) < 2 or len(reference) < 2:
        return NONE
    r = ks_2samp(np.asarray(window, float), np.asarray(reference, float))
    shift = float(np.median(window) - np.median(reference))
    return Test(float(r.statistic), float(r.pvalue), len(window), f"{name} median {shift:+.3g} from the reference")


def homogeneity(window: Iterable[str], expected: Counter[str] | dict[str, float], name: str = "") -> Test:
    """Chi-square test of homogeneity (scipy.stats.chi2_contingency) of the categories counted in ``window`` and in
    ``expected`` (counts of the sample compared with): a category one side never had (a new manufacturer) counts
    against it. Fewer than two categories between them, or an empty side: nothing to compare."""
    from scipy.stats import chi2_contingency

    seen = Counter(window)
    categories = sorted(set(seen) | {k for k, v in expected.items() if v > 0})
    n, m = sum(seen.values()), sum(expected.values())
    if len(categories) < 2 or n == 0 or m <= 0:
        said = (f"{name or 'every instance'} {categories[0]!r} on both sides: nothing differs" if categories
                else "nothing to compare")
        return Test(0.0, 1.0, n, said)
    table = np.asarray([[seen.get(c, 0) for c in categories], [expected.get(c, 0) for c in categories]], float)
    r = chi2_contingency(table, correction=True)
    share = table[0] / n - table[1] / m
    most = int(np.argmax(share))  # the category that gained most (a new manufacturer, not the one it displaced)
    return Test(float(r.statistic), float(r.pvalue), n,
                f"{name} {categories[most]!r} {table[0, most] / n:.0%} of the window vs {table[1, most] / m:.0%}")


def smallest(tests: dict[str, Test]) -> tuple[str, Test]:
    """The comparison with the smallest p-value, Bonferroni-adjusted for how many were made (capped at 1)."""
    if not tests:
        return "", NONE
    name, t = min(tests.items(), key=lambda kv: kv[1].p)
    return name, Test(t.statistic, min(1.0, t.p * len(tests)), t.n, t.detail)

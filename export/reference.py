"""The engine's reference (``runtimes.sections.Reference``): what it saw on its operating split, recorded at export
from the engine's own outputs for those images (the logits the operating point was chosen on) and from the
statistics of what the reader and the preprocessing make of each file (:mod:`dcube_edge.runtimes.observed`, the
code the node's monitor runs on every instance). The out-of-distribution score is a Mahalanobis distance on the
intensity features, its covariance shrunk by Ledoit and Wolf's rule (scikit-learn), fitted on the standardised
features: the measurement behind that choice is in docs/monitoring.md."""
from __future__ import annotations

from itertools import groupby

import numpy as np

from dcube_edge.data import Split
from dcube_edge.runtimes import instance
from dcube_edge.runtimes.decision import Decision
from dcube_edge.runtimes.observed import FEATURES, INTENSITY, ViewInputs, matrix, of_view
from dcube_edge.runtimes.preprocess import ImageError, PreprocessSpec, preprocess, source
from dcube_edge.runtimes.sections import Reference

KEPT = 512  # values kept of each sample: evenly spaced quantiles of a larger one
OOD_FEATURES = INTENSITY  # a view's size is resized away: monitored as drift, not as out-of-distribution


def kept(values: np.ndarray | list[float]) -> tuple[float, ...]:
    """A sample sorted, at most :data:`KEPT` values, rounded to 6 significant digits."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    if len(v) > KEPT:
        v = np.quantile(v, np.linspace(0, 1, KEPT))
    return tuple(float(f"{x:.6g}") for x in v)


def view_inputs(split: Split, spec: PreprocessSpec) -> list[ViewInputs]:
    """The input statistics of every sample of ``split``, in its order (each file read once, as the node reads it)."""
    out: list[ViewInputs] = []
    for path, group in groupby(zip(split.paths, split.views), key=lambda pv: pv[0]):
        wanted = [v for _, v in group]
        try:
            src = source(path, spec)
            got = {view.key: of_view(gray.shape, preprocess(gray, spec), spec.range, src.colour, src.number_of_frames,
                                     bool(src.regions.boxes)) for view, gray in src.read()}
        except ImageError as e:
            raise ImageError(f"{path}: {e}") from None
        out += [got[(v.frame, v.region) if v is not None else (None, None)] for v in wanted]
    return out


def mahalanobis_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, precision) of ``x`` (samples, features): Ledoit-Wolf shrinkage on the standardised features (a
    constant feature gets unit scale), the precision brought back to the features' own units."""
    from sklearn.covariance import LedoitWolf

    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (x - mean) / scale
    precision = np.linalg.inv(LedoitWolf().fit(z).covariance_) if len(x) > 1 else np.eye(x.shape[1])
    return mean, precision / np.outer(scale, scale)


def distances(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """The Mahalanobis distance of each row of ``x`` from ``mean`` under ``precision``."""
    d = x - mean
    squared: np.ndarray = np.einsum("ij,jk,ik->i", d, precision, d)
    out: np.ndarray = np.sqrt(np.maximum(squared, 0.0))
    return out


def build(split: Split, spec: PreprocessSpec, logits: np.ndarray, decision: Decision, source_name: str) -> Reference:
    """The reference of an engine whose logits for ``split``'s samples are ``logits``, deciding by ``decision``."""
    classes = list(decision.classes)
    inputs = view_inputs(split, spec)
    feats = matrix(inputs, OOD_FEATURES)
    mean, precision = mahalanobis_fit(feats)
    ood_views = distances(feats, mean, precision)
    probs = decision.probabilities(logits)
    starts = [i for i, p in enumerate(split.paths) if i == 0 or split.paths[i - 1] != p] + [len(split.paths)]
    spans = list(zip(starts[:-1], starts[1:]))
    rows = np.stack([instance.combine(probs[a:b], spec.instance) for a, b in spans])
    ood = [float(np.median(ood_views[a:b])) for a, b in spans]
    truth = split.labels[starts[:-1]]
    called = decision.decide(rows)
    confusion: dict[str, tuple[int, ...]] = {}
    for k, c in enumerate(classes):
        t, p = truth == k, called == k
        confusion[c] = (int((t & p).sum()), int((t & ~p).sum()), int((~t & p).sum()), int((~t & ~p).sum()))
    values = matrix(inputs)
    share = len(inputs) or 1
    return Reference(
        chosen_on=source_name, n=len(inputs), instances=len(rows),
        scores={c: kept(rows[:, k]) for k, c in enumerate(classes)},
        decision_rates={c: round(float((called == k).mean()), 6) for k, c in enumerate(classes)},
        confusion=confusion, inputs={f: kept(values[:, i]) for i, f in enumerate(FEATURES)},
        colour=round(sum(v.colour for v in inputs) / share, 6), multiframe=round(sum(v.frames > 1 for v in inputs) / share, 6),
        regions=round(sum(v.regions for v in inputs) / share, 6), ood_method="mahalanobis",
        ood_features=OOD_FEATURES, ood_mean=tuple(float(f"{m:.9g}") for m in mean),
        ood_precision=tuple(tuple(float(f"{v:.9g}") for v in row) for row in precision), ood=kept(ood))

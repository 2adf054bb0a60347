"""Classification metrics from probabilities (numpy + scikit-learn, no torch)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score, roc_auc_score

from dcube_edge.runtimes.decision import softmax  # noqa: F401 — one implementation, re-exported


def auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Binary AUC on the positive (second) class, or macro one-vs-rest AUC; NaN if a class is absent."""
    if len(np.unique(labels)) < probs.shape[1]:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def selection_score(labels: np.ndarray, probs: np.ndarray) -> float:
    """What model selection maximises on validation: AUC, or accuracy where AUC is undefined."""
    value = auc(labels, probs)
    return value if np.isfinite(value) else float((probs.argmax(1) == labels).mean())


def macro_f1(labels: np.ndarray, probs: np.ndarray) -> float:
    """Macro-F1 of the argmax prediction over every class of ``probs`` (0 for a class never predicted)."""
    return float(f1_score(labels, probs.argmax(1), average="macro", labels=range(probs.shape[1]), zero_division=0))


def classification_report(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    pred = probs.argmax(1)
    k = len(classes)
    absent = [c for i, c in enumerate(classes) if not (labels == i).any()]
    undefined = {"undefined": {"auc": f"no image of class {', '.join(absent)} in these labels",
                               **{f"per_class_recall.{c}": "no image of this class in these labels" for c in absent}}}
    return {
        **(undefined if absent else {}),
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": macro_f1(labels, probs),
        "auc": auc(labels, probs),
        "per_class_recall": {c: (None if c in absent else float(r)) for c, r in zip(classes, recall_score(
            labels, pred, average=None, labels=range(k), zero_division=0))},
        "confusion_matrix": confusion_matrix(labels, pred, labels=range(k)).tolist(),
    }


def bootstrap_ci(labels: np.ndarray, probs: np.ndarray, classes: list[str], n: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict:
    """Percentile bootstrap intervals (resampling images with replacement) for accuracy, macro-F1, AUC and
    per-class recall. Resamples that lack a class give no AUC and are skipped for it."""
    rng = np.random.default_rng(seed)
    k = len(classes)
    draws: dict[str, list[float]] = {"accuracy": [], "macro_f1": [], "auc": [], **{f"recall_{c}": [] for c in classes}}
    for _ in range(n):
        idx = rng.integers(0, len(labels), len(labels))
        y, p = labels[idx], probs[idx]
        pred = p.argmax(1)
        draws["accuracy"].append(float((pred == y).mean()))
        draws["macro_f1"].append(float(f1_score(y, pred, average="macro", labels=range(k), zero_division=0)))
        draws["auc"].append(auc(y, p))
        for c_i, (c, r) in enumerate(zip(classes, recall_score(y, pred, average=None, labels=range(k), zero_division=0))):
            if (y == c_i).any():
                draws[f"recall_{c}"].append(float(r))
    tail = (1 - level) / 2 * 100
    return {name: [float(np.nanpercentile(v, tail)), float(np.nanpercentile(v, 100 - tail))] if v else None
            for name, v in draws.items()} | {"resamples": n, "level": level, "seed": seed}


def collapse_warning(report: dict) -> str | None:
    """A warning when the argmax prediction misses a class: every image predicted as one class (a model that
    learned only the prior), or a class recalled under half the time by a model that ranks well (AUC ≥ 0.85:
    the checkpoint is picked on AUC and nothing tunes its threshold)."""
    used = [i for i, col in enumerate(zip(*report["confusion_matrix"])) if sum(col)]
    if report["n"] > 1 and len(used) == 1:
        name = list(report["per_class_recall"])[used[0]]
        return (f"warning: every validation image was predicted {name!r}: the model collapsed to one class "
                "(too few images or steps; try a larger --steps-classifier or more data)")
    missed = {c: r for c, r in report["per_class_recall"].items() if r is not None and r < 0.5}
    if missed and report["auc"] >= 0.85:
        worst = min(missed, key=missed.__getitem__)
        return (f"warning: validation recall of {worst!r} is {missed[worst]:.2f} at AUC {report['auc']:.3f}: the model "
                "ranks this class well but its argmax misses it: the engine decides at an operating point that export "
                "chooses (metrics.json's validation_at_operating_point shows it on validation); confirm it on your "
                "own labelled data")
    return None


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-class probability, equal-width bins."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(float((pred[inside] == labels[inside]).mean()) - float(conf[inside].mean()))
    return float(total)


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over images of the squared distance to the one-hot label."""
    onehot = np.eye(probs.shape[1])[labels]
    return float(((probs - onehot) ** 2).sum(1).mean())


def balanced_accuracy(labels: np.ndarray, pred: np.ndarray, k: int) -> float:
    recalls = [float((pred[labels == c] == c).mean()) for c in range(k) if (labels == c).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def at_operating_point(labels: np.ndarray, probs: np.ndarray, decided: np.ndarray, classes: list[str]) -> dict:
    """Per class sensitivity, specificity, PPV and NPV of the decisions ``decided`` (one-vs-rest), the confusion
    matrix, balanced accuracy and macro-F1 of those decisions; ECE and Brier of ``probs``. A figure whose
    denominator is empty is None."""
    k = len(classes)
    cm = confusion_matrix(labels, decided, labels=range(k))
    per_class = {}
    for i, c in enumerate(classes):
        tp, fn = cm[i, i], cm[i].sum() - cm[i, i]
        fp, tn = cm[:, i].sum() - cm[i, i], cm.sum() - cm[i].sum() - cm[:, i].sum() + cm[i, i]
        ratio = lambda a, b: float(a / (a + b)) if a + b else None  # noqa: E731
        per_class[c] = {"sensitivity": ratio(tp, fn), "specificity": ratio(tn, fp), "ppv": ratio(tp, fp),
                        "npv": ratio(tn, fn), "n": int(cm[i].sum())}
    recalls = [r["sensitivity"] for r in per_class.values() if r["sensitivity"] is not None]
    return {"per_class": per_class, "confusion_matrix": cm.tolist(),
            "balanced_accuracy": float(np.mean(recalls)) if recalls else None,
            "lowest_recall": float(min(recalls)) if recalls else None,
            "macro_f1": float(f1_score(labels, decided, average="macro", labels=range(k), zero_division=0)),
            "accuracy": float((decided == labels).mean()), "ece": ece(probs, labels), "brier": brier(probs, labels)}


def operating_point_ci(labels: np.ndarray, probs: np.ndarray, decided: np.ndarray, classes: list[str], n: int = 1000,
                       seed: int = 0, level: float = 0.95) -> dict:
    """Percentile bootstrap intervals of :func:`at_operating_point`'s figures (the decisions resampled with their
    images: the operating point itself is fixed, as the engine holds it)."""
    rng = np.random.default_rng(seed)
    keys = ("sensitivity", "specificity", "ppv", "npv")
    draws: dict[str, list[float]] = {}
    for _ in range(n):
        idx = rng.integers(0, len(labels), len(labels))
        r = at_operating_point(labels[idx], probs[idx], decided[idx], classes)
        for name in ("balanced_accuracy", "macro_f1", "accuracy", "lowest_recall"):
            if r[name] is not None:
                draws.setdefault(name, []).append(r[name])
        for c, figures in r["per_class"].items():
            for key in keys:
                if figures[key] is not None:
                    draws.setdefault(f"{c}.{key}", []).append(figures[key])
    tail = (1 - level) / 2 * 100
    return {name: [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))] for name, v in draws.items()}

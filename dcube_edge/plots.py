"""The figures `evaluate --plot DIR` writes (matplotlib, imported when asked): the ROC curve with the engine's
operating point marked, and a reliability diagram before and after the export's temperature scaling."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dcube_edge.errors import Unavailable
from dcube_edge.runtimes.decision import Decision, softmax


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise Unavailable("evaluate --plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def roc(labels: np.ndarray, probs: np.ndarray, decided: np.ndarray, classes: list[str], decision: Decision,
        path: Path, title: str) -> None:
    """One-vs-rest ROC per class (the positive class alone for a two-class threshold), each with the point the
    engine's decisions sit at."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 5), dpi=110)
    shown = [decision.positive] if decision.positive is not None else range(len(classes))
    for c in shown:
        truth = labels == c
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = roc_curve(truth, probs[:, c])
        line, = ax.plot(fpr, tpr, label=f"{classes[c]} (AUC {roc_auc_score(truth, probs[:, c]):.3f})")
        sens, fp = float((decided[truth] == c).mean()), float((decided[~truth] == c).mean())
        ax.plot([fp], [sens], "o", color=line.get_color(), markersize=8,
                label=f"operating point: sensitivity {sens:.2f}, specificity {1 - fp:.2f}")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="1 − specificity", ylabel="sensitivity", title=f"ROC, {title}\n{decision.describe()}")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def reliability(labels: np.ndarray, probs: np.ndarray, temperature: float, path: Path, title: str, bins: int = 10) -> None:
    """Accuracy against confidence of the top class, before (temperature 1) and after calibration."""
    plt = pyplot()
    before = softmax(temperature * np.log(np.clip(probs, 1e-12, 1.0)))  # undo logits / T
    fig, ax = plt.subplots(figsize=(5.2, 5), dpi=110)
    edges = np.linspace(0, 1, bins + 1)
    for name, p, style in (("before (T = 1)", before, "s--"), (f"after (T = {temperature:.3g})", probs, "o-")):
        conf, hit = p.max(1), p.argmax(1) == labels
        centres, accuracy = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            inside = (conf > lo) & (conf <= hi)
            if inside.any():
                centres.append(float(conf[inside].mean()))
                accuracy.append(float(hit[inside].mean()))
        ax.plot(centres, accuracy, style, label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="calibrated")
    ax.set(xlabel="confidence (top-class probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"Reliability, {title}")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)

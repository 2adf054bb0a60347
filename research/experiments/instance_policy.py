"""Which instance policy should turn a cine loop's frame results into the object's decision? Simulated sweeps
(dcube_edge.phantoms.loop: a probe crossing the lesion, visible in 40-100 % of the frames, speckle decorrelating
from frame to frame) of every class, each frame classified by an engine, the frames combined by each candidate
policy, the object decided at the engine's bound operating point, and scored against the loop's class.

    .venv/bin/python research/experiments/instance_policy.py ENGINE OUT.json [--loops 100 --frames 30 --seed 1000]

Candidates: mean (of calibrated probabilities), median (per class, renormalised), vote (the share of frames decided
each class), and for engines with a positive class most-suspicious (the frame with the highest calibrated
probability of it) and top-quarter (the mean of the quarter of frames most suspicious). Figures at the operating
point (recall per class, balanced accuracy, with 95 % bootstrap intervals over loops and of the paired difference to
mean), the positive class's AUC of the object score and ECE of the object probabilities; the lesion classes' recall
also by the share of frames the lesion is visible in (under or over half).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from dcube_edge import runtimes
from dcube_edge.metrics import auc, balanced_accuracy, ece
from dcube_edge.phantoms import draw, loop, sweep
from dcube_edge.runtimes import instance
from dcube_edge.runtimes.preprocess import preprocess


def frame_probs(clf, label: int, loops: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(loops, frames, classes) calibrated probabilities of simulated loops of class ``label``, and each loop's
    share of frames showing the lesion (its sweep, drawn again from the same seed)."""
    out, visible = [], []
    for i in range(loops):
        kind = clf.classes[label]
        pictures = loop(kind, clf.spec.size, frames, np.random.default_rng([seed, label, i]))
        again = np.random.default_rng([seed, label, i])
        draw(kind, again)
        visible.append(float((sweep(frames, again) > 0).mean()) if kind != "normal" else np.nan)
        x = np.stack([preprocess(p.astype(np.float32) / 255, clf.spec) for p in pictures])
        out.append(clf.decision.probabilities(clf.logits(x)))
    return np.stack(out), np.asarray(visible)


def policies(decision) -> dict:
    def vote(p):
        counts = np.bincount(decision.decide(p), minlength=p.shape[1])
        return counts / counts.sum()

    def median(p):
        m = np.median(p, 0)
        return m / m.sum()

    out = {"mean": lambda p: p.mean(0), "median": median, "vote": vote}
    assert np.allclose(median(np.eye(3)[[0, 0, 1]] * 0.5 + 0.1), instance.combine(np.eye(3)[[0, 0, 1]] * 0.5 + 0.1))
    if decision.positive is not None:
        out["most-suspicious"] = lambda p: p[np.argmax(p[:, decision.positive])]
        out["top-quarter"] = lambda p: p[np.argsort(p[:, decision.positive])[-max(1, len(p) // 4):]].mean(0)
    return out


def score(labels: np.ndarray, probs: np.ndarray, decision, k: int, visible: np.ndarray | None = None) -> dict:
    decided = decision.decide(probs)
    positive = decision.positive if decision.positive is not None else int(np.argmax(np.bincount(labels)))
    out = {"balanced_accuracy": balanced_accuracy(labels, decided, k),
           "recall": [float((decided[labels == c] == c).mean()) for c in range(k)],
           "auc_positive": auc((labels == positive).astype(int), np.stack([1 - probs[:, positive], probs[:, positive]], 1)),
           "ece": ece(probs, labels)}
    if visible is not None:
        for name, keep in (("visible_under_half", visible < 0.5), ("visible_half_or_more", visible >= 0.5)):
            out[f"recall_{name}"] = [float((decided[(labels == c) & keep] == c).mean()) if ((labels == c) & keep).any()
                                     else None for c in range(k)]
    return out


def main(engine: str, out: str, loops: int = 100, frames: int = 30, seed: int = 1000, boot: int = 1000) -> None:
    with runtimes.load(engine) as clf:
        k = len(clf.classes)
        per_class = [frame_probs(clf, c, loops, frames, seed) for c in range(k)]
        decision = clf.decision
    probs = np.concatenate([p for p, _ in per_class])  # (objects, frames, classes)
    visible = np.concatenate([v for _, v in per_class])
    labels = np.repeat(np.arange(k), loops)
    combined = {name: np.stack([f(p) for p in probs]) for name, f in policies(decision).items()}
    result = {"engine": engine, "classes": clf.classes, "operating_point": decision.describe(), "loops_per_class": loops,
              "frames": frames, "seed": seed, "lesion_visible_share": np.nanpercentile(visible, [0, 25, 50, 75, 100]).tolist(),
              "per_frame": score(np.repeat(labels, frames), probs.reshape(-1, k), decision, k),
              "policies": {n: score(labels, p, decision, k, visible) for n, p in combined.items()}}
    rng = np.random.default_rng(0)
    draws = {n: [] for n in combined}
    for _ in range(boot):
        idx = np.concatenate([rng.choice(np.flatnonzero(labels == c), loops) for c in range(k)])
        base = balanced_accuracy(labels[idx], decision.decide(combined["mean"][idx]), k)
        for n, p in combined.items():
            value = balanced_accuracy(labels[idx], decision.decide(p[idx]), k)
            draws[n].append((value, value - base))
    for n, d in draws.items():
        a = np.asarray(d)
        result["policies"][n]["balanced_accuracy_ci95"] = np.percentile(a[:, 0], [2.5, 97.5]).round(4).tolist()
        result["policies"][n]["minus_mean_ci95"] = np.percentile(a[:, 1], [2.5, 97.5]).round(4).tolist()
    Path(out).write_text(json.dumps(result, indent=1))
    for n, s in {"per frame": result["per_frame"], **result["policies"]}.items():
        print(f"{n:16s} balanced accuracy {s['balanced_accuracy']:.3f} {s.get('balanced_accuracy_ci95', '')} "
              f"vs mean {s.get('minus_mean_ci95', '')} recall {np.round(s['recall'], 2).tolist()} "
              f"AUC {s['auc_positive']:.3f} ECE {s['ece']:.3f}"
              + (f" recall (visible < 1/2) {s['recall_visible_under_half']}, (>= 1/2) {s['recall_visible_half_or_more']}"
                 if "recall_visible_under_half" in s else ""))


if __name__ == "__main__":
    args = sys.argv[1:]
    opts = {a.lstrip("-"): int(b) for a, b in zip(args[2::2], args[3::2])}
    main(args[0], args[1], **opts)

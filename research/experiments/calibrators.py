"""Temperature scaling against scikit-learn's calibrators on an engine's own logits, by stratified cross-validation
on a labelled split: each calibrator is fitted on k-1 folds and scored (ECE, NLL, Brier, AUC) on the held-out fold.

    .venv/bin/python research/experiments/calibrators.py ENGINE SPLIT [--folds 5 --repeats 20]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold

from dcube_edge import runtimes
from dcube_edge.data import read_split
from dcube_edge.metrics import brier, ece
from dcube_edge.operating_point import fit_temperature, nll
from dcube_edge.runtimes.decision import softmax
from dcube_edge.runtimes.preprocess import load


def temperature(train_logits, train_labels, test_logits):
    return softmax(test_logits / fit_temperature(train_logits, train_labels))


def platt(train_logits, train_labels, test_logits):
    model = LogisticRegression(C=1e6, max_iter=1000).fit(train_logits, train_labels)
    return model.predict_proba(test_logits)


def isotonic(train_logits, train_labels, test_logits):
    """One-vs-rest isotonic regressions on the softmax, renormalised."""
    p_train, p_test = softmax(train_logits), softmax(test_logits)
    out = np.column_stack([IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
                           .fit(p_train[:, c], train_labels == c).predict(p_test[:, c]) for c in range(p_train.shape[1])])
    out = np.clip(out, 1e-6, None)
    return out / out.sum(1, keepdims=True)


def main(engine: str, split: str, folds: int = 5, repeats: int = 20) -> None:
    with runtimes.load(engine) as clf:
        _, data = read_split(Path(split), clf.classes)
        logits = clf.logits(np.stack([load(p, clf.spec) for p in data.paths])).astype(np.float64)
    labels = data.labels
    methods = {"none": lambda a, b, c: softmax(c), "temperature": temperature, "platt": platt, "isotonic": isotonic}
    scores: dict[str, dict[str, list[float]]] = {m: {"ece": [], "nll": [], "brier": [], "auc": []} for m in methods}
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=0)
    for train, test in cv.split(logits, labels):
        for name, method in methods.items():
            probs = method(logits[train], labels[train], logits[test])
            s = scores[name]
            s["ece"].append(ece(probs, labels[test]))
            s["nll"].append(nll(probs, labels[test]))
            s["brier"].append(brier(probs, labels[test]))
            s["auc"].append(roc_auc_score(labels[test], probs[:, 1]) if probs.shape[1] == 2
                            else roc_auc_score(labels[test], probs, multi_class="ovr"))
    for name, s in scores.items():
        print(json.dumps({"engine": engine, "calibrator": name, "n": int(len(labels)), "folds": folds, "repeats": repeats,
                          **{k: round(float(np.mean(v)), 4) for k, v in s.items()}}))


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], *(int(a) for a in args[2:4]))

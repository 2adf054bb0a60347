"""`dcube-edge evaluate`: an engine (or a run's PyTorch model) scored on a labelled split folder, the same way
for both, with bootstrap intervals (torch only for a run)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dcube_edge import runtimes
from dcube_edge.data import read_split
from dcube_edge.errors import UserError
from dcube_edge.metrics import bootstrap_ci, classification_report
from dcube_edge.report import shown


def load_target(target: Path, batch_size: int, threads: int | None, trusted_keys: list[Path] | None) -> runtimes.Classifier:
    """An engine directory's classifier, or a run directory's PyTorch FP32 model as one."""
    if (target / "config.json").is_file() and not (target / "manifest.json").is_file():
        from dcube_edge.torch_backend import TorchRunner

        runner, manifest = TorchRunner.from_run(target, threads=threads, max_batch=batch_size)
        return runtimes.Classifier(manifest, runner)
    return runtimes.load(target, threads=threads, trusted_keys=trusted_keys)


def evaluate(target: Path, data: Path, batch_size: int = 64, threads: int | None = None, bootstrap: int = 1000,
             trusted_keys: list[Path] | None = None) -> dict:
    """Accuracy, macro-F1, AUC, per-class recall and the confusion matrix (with ``bootstrap`` resamples: 95 %
    intervals); ``warnings`` lists what a reader must not miss (a model collapsed to one class)."""
    clf = load_target(target, batch_size, threads, trusted_keys)
    classes = clf.classes
    _, split = read_split(data, classes)
    with clf:
        preds = list(clf.classify(split.paths, batch_size=batch_size))
    bad = [p for p in preds if p.error]
    if bad:
        raise UserError(f"{len(bad)} image(s) could not be read, e.g. {shown(bad[0].path)}: {bad[0].error}")
    probs = np.array([[p.probs[c] for c in classes] for p in preds])
    report = classification_report(split.labels, probs, classes)
    if bootstrap:
        report["ci95"] = bootstrap_ci(split.labels, probs, classes, n=bootstrap)
    predicted = {int(i) for i in probs.argmax(1)}
    warnings = []
    if len(split.labels) > 1 and len(predicted) == 1:
        warnings.append(f"every image was predicted {classes[predicted.pop()]!r}: the model has collapsed to one "
                        "class (too little training data or steps?)")
    report.update(target=str(target), data=str(data), backend=clf.manifest.backend, precision=clf.manifest.precision)
    return {**report, **({"warnings": warnings} if warnings else {})}

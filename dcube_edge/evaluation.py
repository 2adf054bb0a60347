"""`dcube-edge evaluate`: an engine (or a run's PyTorch model) scored on a labelled split folder, the same way
for both, with bootstrap intervals (torch only for a run)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dcube_edge import runtimes
from dcube_edge.data import read_split
from dcube_edge.errors import UserError
from dcube_edge.metrics import at_operating_point, bootstrap_ci, classification_report, operating_point_ci
from dcube_edge.report import shown
from dcube_edge.runtimes.timing import machine_info


def load_target(target: Path, batch_size: int, threads: int | None, trusted_keys: list[Path] | None) -> runtimes.Classifier:
    """An engine directory's classifier, or a run directory's PyTorch FP32 model as one."""
    if (target / "config.json").is_file() and not (target / "manifest.json").is_file():
        from dcube_edge.torch_backend import TorchRunner

        runner, manifest = TorchRunner.from_run(target, threads=threads, max_batch=batch_size)
        return runtimes.Classifier(manifest, runner)
    return runtimes.load(target, threads=threads, trusted_keys=trusted_keys)


def evaluate(target: Path, data: Path, batch_size: int = 64, threads: int | None = None, bootstrap: int = 1000,
             trusted_keys: list[Path] | None = None, plot: Path | None = None, max_frames: int | None = None) -> dict:
    """Per object — a file's decision, as ``classify`` reports it (a cine loop's frames and a dual view's regions
    combined by the engine's instance policy) — at the engine's operating point (``operating_point``: per class
    sensitivity, specificity, PPV, NPV, the confusion matrix, balanced accuracy, macro-F1, ECE, Brier) and at argmax
    (``argmax``; at the top level too: accuracy, macro-F1, AUC, per-class recall), with ``bootstrap`` resamples' 95 %
    intervals; where an object has several views, ``per_frame`` scores every frame (each tissue region of it) with
    its object's label.
    ``plot`` writes the ROC curve with the operating point and a reliability diagram. ``warnings`` lists what a
    reader must not miss."""
    clf = load_target(target, batch_size, threads, trusted_keys)
    classes = clf.classes
    _, split = read_split(data, classes)
    paths, labels = split.instances()
    with clf:
        preds = list(clf.classify(paths, batch_size=batch_size, max_frames=max_frames))
    called = [p.label for p in preds if p.label is not None]
    bad = [p for p in preds if p.error or p.label is None]
    if bad:
        raise UserError(f"{len(bad)} image(s) could not be read, e.g. {shown(bad[0].path)}: {bad[0].error}")
    probs = np.array([[p.probs[c] for c in classes] for p in preds])
    decided = np.array([classes.index(label) for label in called])  # every image's, none being bad
    report = _scores(labels, probs, decided, classes, clf, bootstrap)
    if any(len(p.frames) > 1 for p in preds):
        report["instance_policy"] = clf.spec.instance
        report["per_frame"] = per_frame(preds, labels, classes, clf)
    predicted = {int(i) for i in probs.argmax(1)}
    warnings = []
    if len(labels) > 1 and len(predicted) == 1:
        warnings.append(f"every image was predicted {classes[predicted.pop()]!r}: the model has collapsed to one "
                        "class (too little training data or steps?)")
    report.update(target=str(target), data=str(data), data_images_sha256=split.images_sha256(classes),
                  backend=clf.manifest.backend, precision=clf.manifest.precision,
                  engine_model_sha256=clf.manifest.record.files.get(clf.manifest.record.model_file),
                  machine=machine_info())
    chosen_on = clf.manifest.record.decision
    if chosen_on and report["data_images_sha256"] == chosen_on.images_sha256:
        warnings.append("these are the images the engine's operating point and temperature were chosen on: the figures "
                        "flatter it; evaluate on labelled images it has not seen")
    if plot is not None:
        from .plots import reliability, roc

        plot.mkdir(parents=True, exist_ok=True)
        roc(labels, probs, decided, classes, clf.decision, plot / "roc.png", f"{target.name} on {data.name}")
        reliability(labels, probs, clf.decision.temperature, plot / "reliability.png", f"{target.name} on {data.name}")
        report["plots"] = [str(plot / "roc.png"), str(plot / "reliability.png")]
    return {**report, **({"warnings": warnings} if warnings else {})}


def _scores(labels: np.ndarray, probs: np.ndarray, decided: np.ndarray, classes: list[str],
            clf: runtimes.Classifier, bootstrap: int) -> dict:
    """At argmax (top level and ``argmax``) and at the operating point, with intervals where ``bootstrap``."""
    report = classification_report(labels, probs, classes)
    if bootstrap:
        report["ci95"] = bootstrap_ci(labels, probs, classes, n=bootstrap)
    report["argmax"] = {k: report[k] for k in ("accuracy", "macro_f1", "per_class_recall", "confusion_matrix")}
    report["operating_point"] = {"rule": clf.decision.describe(), "temperature": clf.decision.temperature,
                                 **at_operating_point(labels, probs, decided, classes)}
    if bootstrap:
        report["operating_point"]["ci95"] = operating_point_ci(labels, probs, decided, classes, n=bootstrap)
    return report


def per_frame(preds: list[runtimes.Prediction], labels: np.ndarray, classes: list[str], clf: runtimes.Classifier) -> dict:
    """Every view (each frame, each tissue region of it) scored with its object's label, without intervals (views of
    one object are not independent draws): ``n`` views of ``objects`` objects, argmax figures and at the operating
    point."""
    rows = [(y, v) for p, y in zip(preds, labels) for v in p.frames]
    view_labels = np.array([y for y, _ in rows])
    probs = np.array([[v.probs[c] for c in classes] for _, v in rows])
    decided = np.array([classes.index(v.label) for _, v in rows])
    report = _scores(view_labels, probs, decided, classes, clf, bootstrap=0)
    return {**report, "objects": len(preds)}

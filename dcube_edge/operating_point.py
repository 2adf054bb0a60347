"""Choosing the operating point and the calibration an export binds into an engine (applied by
:mod:`dcube_edge.runtimes.decision`), on the *engine's own* logits (an int8 engine's logits are not the fp32
model's) for labelled images: the run's validation split, or ``--operating-split DIR``. Training uses the same
choice to pick its checkpoint (:func:`selection_score`) and to report validation at that point.

- Calibration: temperature scaling (one scalar T, logits / T) fitted by minimising the negative log-likelihood;
  expected calibration error (15 equal-width bins of the top-class probability) and Brier score before and after.
- Operating point: ``argmax``, ``youden``, ``sensitivity=X``, ``specificity=X`` (two classes; a threshold on the
  calibrated probability of ``--positive-class``, default the rarer class) or ``balanced`` (any number of classes:
  per-class biases on the calibrated log-probabilities maximising balanced accuracy — balanced accuracy rather
  than macro-F1 because it does not depend on the validation split's prevalence, which a hospital's case mix
  will not share). Default: ``youden`` for two classes, ``balanced`` for more. With fewer than
  :data:`MIN_PER_CLASS` images of a class the choice would be noise: argmax is kept and the manifest says why."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from dcube_edge.errors import UserError
from dcube_edge.metrics import balanced_accuracy, brier, ece
from dcube_edge.runtimes.decision import Decision, softmax
from dcube_edge.runtimes.sections import Calibration, OperatingPoint

MIN_PER_CLASS = 10
# How a decision's `chosen_on` names the run's own validation split (export writes it, the card reads it).
RUN_VALIDATION = "the run's validation split"
RULE = re.compile(r"^(argmax|youden|balanced|(sensitivity|specificity)=(0?\.\d+|1(\.0*)?))$")


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels: what temperature scaling minimises."""
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [e⁻⁴, e⁴] minimising the negative log-likelihood of softmax(logits / T); 1 unless another T
    measures better (the bounded search may stop a hair off it)."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    found = float(np.exp(minimize_scalar(lambda log_t: nll(softmax(logits / np.exp(log_t)), labels),
                                         bounds=(-4.0, 4.0), method="bounded").x))
    return found if nll(softmax(logits / found), labels) < nll(softmax(logits), labels) else 1.0


@dataclass(frozen=True)
class Rule:
    """``--operating-point`` and ``--positive-class`` as checked against a model's classes (:func:`parse_rule`)."""

    name: str  # argmax, youden, balanced, sensitivity=X or specificity=X
    positive: str | None = None  # the two-class rules' positive class; None: the rarer one where it is chosen


def parse_rule(rule: str | None, positive: str | None, classes: list[str]) -> Rule:
    """The rule for these classes (default: youden for two, balanced for more), or a UserError naming the option:
    export calls this before it builds anything."""
    k = len(classes)
    rule = rule or ("youden" if k == 2 else "balanced")
    if not RULE.match(rule):
        raise UserError(f"--operating-point {rule!r}: choose argmax, youden, balanced, sensitivity=0.90 or "
                        "specificity=0.90 (a target between 0 and 1)")
    if rule not in ("argmax", "balanced") and k != 2:
        raise UserError(f"--operating-point {rule} needs two classes; this model has {k}: use balanced or argmax")
    if positive is not None and positive not in classes:
        raise UserError(f"--positive-class {positive!r} is not one of the model's classes ({', '.join(classes)})")
    return Rule(rule, positive)


def choose(rule: Rule, classes: list[str], logits: np.ndarray, labels: np.ndarray,
           source: str) -> tuple[OperatingPoint, Calibration]:
    """(the record's operating point, its probability calibration) for these logits and labels."""
    k = len(classes)
    temperature = round(fit_temperature(logits, labels), 6)  # as stored: the threshold is chosen on what runs
    before, after = softmax(np.asarray(logits, np.float64)), softmax(np.asarray(logits, np.float64) / temperature)
    calibration = Calibration(temperature=temperature, ece_before=ece(before, labels), ece_after=ece(after, labels),
                              brier_before=brier(before, labels), brier_after=brier(after, labels),
                              nll_before=nll(before, labels), nll_after=nll(after, labels), chosen_on=source,
                              n=int(len(labels)))
    counts = np.bincount(labels, minlength=k)
    point = OperatingPoint(rule="argmax", chosen_on=source, n=int(len(labels)),
                           class_counts={c: int(n) for c, n in zip(classes, counts)})
    if rule.name == "argmax":
        return point, calibration
    if counts.min() < MIN_PER_CLASS:
        note = (f"{rule.name} asked, argmax kept: {classes[int(counts.argmin())]} has {int(counts.min())} labelled "
                f"image(s) here, under the {MIN_PER_CLASS} an operating point needs; pass --operating-split with more "
                "labelled data")
        return replace(point, note=note), calibration
    if rule.name == "balanced":
        return replace(point, rule="balanced", bias=tuple(round(b, 4) for b in balanced_bias(after, labels))), calibration
    pos = classes.index(rule.positive) if rule.positive else int(counts.argmin())
    # the threshold unrounded: a cut rounded up would drop the image it was chosen at
    cut = threshold(rule.name, after[:, pos], labels == pos)
    return replace(point, rule=rule.name, positive_class=classes[pos], threshold=cut), calibration


def threshold(rule: str, score: np.ndarray, positive: np.ndarray) -> float:
    """The threshold on ``score`` (P(positive)) that the rule picks: Youden's J, or the stated sensitivity or
    specificity with the best other figure."""
    from sklearn.metrics import roc_curve

    fpr, tpr, cuts = roc_curve(positive, score, drop_intermediate=False)  # every cut, not the ROC's corners
    cuts = np.minimum(cuts, 1.0)  # sklearn's first cut is +inf: nothing called positive
    if rule == "youden":
        return float(cuts[int(np.argmax(tpr - fpr))])
    kind, value = rule.split("=")
    target = float(value)
    if kind == "sensitivity":
        ok = np.flatnonzero(tpr >= target)
        return float(cuts[ok[0]])  # the first (highest) cut reaching it: the best specificity
    ok = np.flatnonzero(1 - fpr >= target)
    return float(cuts[ok[-1]])  # the last (lowest) cut keeping it: the best sensitivity


def balanced_bias(probs: np.ndarray, labels: np.ndarray, sweeps: int = 4) -> list[float]:
    """Per-class biases on the log-probabilities maximising balanced accuracy: coordinate ascent over a grid,
    from zero, keeping a change only when it helps (so ties stay at the plain argmax)."""
    k = probs.shape[1]
    logp = np.log(np.clip(probs, 1e-12, 1.0))
    bias = np.zeros(k)
    best = balanced_accuracy(labels, (logp + bias).argmax(1), k)
    grid = np.round(np.arange(-4.0, 4.0001, 0.05), 4)
    for _ in range(sweeps):
        improved = False
        for c in range(k):
            for value in grid:
                trial = bias.copy()
                trial[c] = value
                score = balanced_accuracy(labels, (logp + trial).argmax(1), k)
                if score > best + 1e-12 or (abs(score - best) <= 1e-12 and abs(value) < abs(bias[c])):
                    best, bias, improved = score, trial, improved or score > best + 1e-12
        if not improved:
            break
    return [float(b) for b in bias]


def as_runtime(point: OperatingPoint, calibration: Calibration | None, classes: list[str]) -> Decision:
    return Decision.of(point, calibration, classes)


# Checkpoint selection (training's step 2 and the baselines): an epoch is picked on validation AUC only among
# epochs whose default operating point, chosen on the same validation images as export would choose it, finds
# every class (lowest recall ≥ RECALL_FLOOR); while no epoch has, the best balanced accuracy at that point wins.
RECALL_FLOOR = 0.5


def _at_default(logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> tuple[OperatingPoint, Calibration, dict]:
    """(decision, calibration, :func:`~dcube_edge.metrics.at_operating_point` figures) at the operating point
    export would choose by default on these logits and labels."""
    from dcube_edge.metrics import at_operating_point

    decision, calibration = choose(parse_rule(None, None, classes), classes, logits, labels, "validation")
    rule = as_runtime(decision, calibration, classes)
    probs = rule.probabilities(logits)
    return decision, calibration, at_operating_point(labels, probs, rule.decide(probs), classes)


def at_default_point(logits: np.ndarray, labels: np.ndarray, k: int) -> dict:
    """Balanced accuracy and the lowest class recall at the operating point export would choose by default."""
    decision, _, figures = _at_default(logits, labels, [str(c) for c in range(k)])
    return {"balanced_accuracy_at_op": figures["balanced_accuracy"], "lowest_recall_at_op": figures["lowest_recall"],
            "op_rule": decision.rule}


def selection_score(logits: np.ndarray, labels: np.ndarray, k: int) -> tuple[float, dict]:
    """(the score an epoch is kept by, the figures behind it): 1 + AUC where every class clears
    :data:`RECALL_FLOOR` at the default operating point, else that point's balanced accuracy (≤ 1)."""
    from dcube_edge.metrics import selection_score as auc_score

    figures = at_default_point(logits, labels, k)
    if figures["lowest_recall_at_op"] >= RECALL_FLOOR:
        return 1.0 + auc_score(labels, softmax(np.asarray(logits, np.float64))), figures
    return figures["balanced_accuracy_at_op"], figures


def at_operating_point_report(logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """A run's validation figures at the default operating point, chosen on those same images (optimistic: the
    engine's own figures need other labelled data), for ``metrics.json`` and the results tables."""
    decision, calibration, figures = _at_default(logits, labels, classes)
    return {"rule": as_runtime(decision, calibration, classes).describe(), "temperature": calibration.temperature,
            **figures, **({"note": decision.note} if decision.note else {})}

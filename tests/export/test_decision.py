"""The operating point and calibration export binds into an engine (dcube_edge/operating_point.py) and the runtime's reading of
them (runtimes/decision.py), on synthetic logits whose right answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from dcube_edge import operating_point as choose_mod
from dcube_edge.errors import UserError
from dcube_edge.metrics import balanced_accuracy, ece
from dcube_edge.operating_point import MIN_PER_CLASS, RECALL_FLOOR, as_runtime, fit_temperature, parse_rule, selection_score

CLASSES = ["benign", "malignant"]


def two_class(n_neg: int = 120, n_pos: int = 40, gap: float = 1.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a model that ranks positives higher but whose argmax under-calls them (a biased logit)."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]
    margin = rng.normal(0, 1, len(labels)) + gap * labels - 1.5  # positives mostly below 0: argmax misses them
    return np.c_[np.zeros(len(labels)), margin], labels


def choose(rule, positive, classes, logits, labels, source):
    """The operating point as export chooses it: the options checked first, then chosen on the logits."""
    return choose_mod.choose(parse_rule(rule, positive, classes), classes, logits, labels, source)


def rates(decided: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    return float((decided[labels == 1] == 1).mean()), float((decided[labels == 0] == 0).mean())


def decided_by(decision, calibration, logits: np.ndarray, classes=CLASSES) -> np.ndarray:
    rule = as_runtime(decision, calibration, classes)
    return rule.decide(rule.probabilities(logits))


def test_youden_picks_the_threshold_with_the_best_sensitivity_plus_specificity():
    logits, labels = two_class()
    decision, calibration = choose("youden", "malignant", CLASSES, logits, labels, "val")
    assert decision.rule == "youden"
    assert decision.positive_class == "malignant"
    sens, spec = rates(decided_by(decision, calibration, logits), labels)
    # brute force over every cut of the calibrated P(malignant): none does better
    p = as_runtime(decision, calibration, CLASSES).probabilities(logits)[:, 1]
    best = max(np.mean(p[labels == 1] >= t) + np.mean(p[labels == 0] < t) for t in np.unique(p))
    assert sens + spec == pytest.approx(best)
    argmax_sens, _ = rates(logits.argmax(1), labels)
    assert argmax_sens < 0.5 < sens  # the point of an operating point


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_sensitivity_and_specificity_targets_are_met_with_the_best_other_figure(target):
    logits, labels = two_class()
    p_of = lambda d, c: as_runtime(d, c, CLASSES).probabilities(logits)[:, 1]  # noqa: E731
    d, c = choose(f"sensitivity={target}", "malignant", CLASSES, logits, labels, "val")
    sens, spec = rates(decided_by(d, c, logits), labels)
    assert sens >= target
    p = p_of(d, c)
    above = np.unique(p[p > d.threshold])
    assert all(np.mean(p[labels == 1] >= t) < target for t in above)  # any higher cut misses the target
    d, c = choose(f"specificity={target}", "malignant", CLASSES, logits, labels, "val")
    sens, spec = rates(decided_by(d, c, logits), labels)
    assert spec >= target
    p = p_of(d, c)
    below = np.unique(p[p < d.threshold])
    assert all(np.mean(p[labels == 0] < t) < target for t in below)  # any lower cut misses it


def test_the_default_positive_class_is_the_rarer_one_and_two_classes_default_to_youden():
    logits, labels = two_class()
    decision, _ = choose(None, None, CLASSES, logits, labels, "val")
    assert decision.rule == "youden"
    assert decision.positive_class == "malignant"


def test_balanced_biases_raise_balanced_accuracy_over_argmax_for_three_classes():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], [150, 30, 20])
    logits = rng.normal(0, 1, (len(labels), 3)) + 2.0 * np.eye(3)[labels] + np.array([2.0, 0.0, 0.0])  # prior on 0
    decision, calibration = choose(None, None, ["a", "b", "c"], logits, labels, "val")
    assert decision.rule == "balanced"
    assert len(decision.bias) == 3
    ours = balanced_accuracy(labels, decided_by(decision, calibration, logits, ["a", "b", "c"]), 3)
    assert ours > balanced_accuracy(labels, logits.argmax(1), 3) + 0.05


def test_every_decision_is_explained_by_the_probabilities_its_rule_compared():
    """Issue 38 item 12: the explanation was cut, and nothing showed why a biased rule called the class with the
    lowest calibrated probability. For every rule the explanation names the rule in full, the class called is the
    one the compared probabilities (or the threshold) pick, and those probabilities are given beside the
    calibrated ones."""
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2], [150, 30, 20])
    logits = rng.normal(0, 1, (len(labels), 3)) + 2.0 * np.eye(3)[labels] + np.array([2.0, 0.0, 0.0])
    classes = ["benign", "malignant", "normal"]
    decision, calibration = choose(None, None, classes, logits, labels, "val")
    rule = as_runtime(decision, calibration, classes)
    probs = rule.probabilities(logits)
    moved = 0
    for row, called in zip(probs, rule.decide(probs)):
        explained = rule.explain(dict(zip(classes, map(float, row))))
        compared = explained["compared"]
        assert max(compared, key=compared.get) == classes[called] and explained["explanation"].startswith(classes[called])
        assert all(f"{c} {b:+.3g}" in explained["explanation"] for c, b in zip(classes, rule.bias))
        moved += called != row.argmax()
    assert moved > 0 and all(f"{c} {b:+.4g}" in rule.describe() for c, b in zip(classes, rule.bias))
    two = as_runtime(*choose("youden", "malignant", CLASSES, *two_class(), "val"), CLASSES)
    for p in (0.01, 0.99):
        explained = two.explain({"benign": 1 - p, "malignant": p})
        assert explained["threshold"] == two.threshold and explained["compared"] == {"malignant": p}
        assert ("≥" in explained["explanation"]) == (p >= two.threshold)


def test_too_few_labelled_images_keep_argmax_and_say_why():
    logits, labels = two_class(n_neg=50, n_pos=MIN_PER_CLASS - 1)
    decision, calibration = choose("youden", None, CLASSES, logits, labels, "the run's validation split")
    assert decision.rule == "argmax"
    assert decision.threshold is None
    assert f"malignant has {MIN_PER_CLASS - 1} labelled" in decision.note
    assert "--operating-split" in decision.note
    assert calibration.temperature > 0
    assert calibration.chosen_on == "the run's validation split"


@pytest.mark.parametrize("rule,positive,classes,message", [
    ("youden", None, ["a", "b", "c"], "needs two classes"),
    ("sensitivity=1.5", None, CLASSES, "--operating-point"),
    ("sensitivity=1.7", None, CLASSES, "--operating-point 'sensitivity=1.7'"),
    ("f1", None, CLASSES, "--operating-point"),
    ("youden", "cyst", CLASSES, "--positive-class 'cyst'")])
def test_impossible_requests_are_refused_naming_the_option(rule, positive, classes, message):
    with pytest.raises(UserError, match=message):
        parse_rule(rule, positive, classes)  # before any logits exist: export checks it first


def test_temperature_undoes_overconfidence_and_keeps_a_calibrated_model_at_one():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 2000)
    calibrated = np.c_[np.zeros(2000), rng.normal(0, 1, 2000) + 2.0 * (labels - 0.5)]
    p = 1 / (1 + np.exp(-calibrated[:, 1]))
    labels = (rng.uniform(size=2000) < p).astype(int)  # labels drawn from the model's own probabilities
    assert fit_temperature(calibrated, labels) == pytest.approx(1.0, abs=0.1)
    over = calibrated * 4.0
    t = fit_temperature(over, labels)
    assert t == pytest.approx(4.0, rel=0.15)
    _, c = choose("argmax", None, CLASSES, over, labels, "val")
    assert c.ece_after < c.ece_before
    assert c.nll_after < c.nll_before
    assert c.brier_after < c.brier_before
    assert ece(choose_mod.softmax(over / t), labels) == pytest.approx(c.ece_after)


def test_checkpoint_selection_never_prefers_an_epoch_that_misses_a_class():
    logits, labels = two_class(gap=3.0)
    good, figures = selection_score(logits, labels, 2)
    assert good > 1
    assert figures["lowest_recall_at_op"] >= RECALL_FLOOR
    rng = np.random.default_rng(3)
    noise = np.c_[np.zeros(len(labels)), rng.normal(0, 0.01, len(labels))]  # ranks nothing
    bad, figures = selection_score(noise, labels, 2)
    if figures["lowest_recall_at_op"] < RECALL_FLOOR:
        assert bad <= 1 < good
        assert bad == figures["balanced_accuracy_at_op"]
    else:
        assert bad < good  # a chance ranking clears the floor only by luck, and then its AUC loses

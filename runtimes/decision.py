"""From an engine's logits to what a clinician is told: probabilities calibrated by the temperature fitted at
export, and the decision at the engine's operating point, both read from the manifest (where they are bound
into the engine's facts, so an edited threshold is refused at load). Torch-free, numpy only.

Rules (``export --operating-point``): ``argmax``; for two classes ``youden`` (the threshold maximising
sensitivity + specificity − 1), ``sensitivity=0.90`` or ``specificity=0.90`` (the threshold meeting it with the
best other figure), each a threshold on the calibrated probability of the positive class; for more classes
``balanced``: a bias per class added to the calibrated log-probabilities before the argmax (a prior correction),
chosen to maximise balanced accuracy. Engines exported before operating points existed decide by argmax at
temperature 1."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from .sections import Calibration, OperatingPoint

if TYPE_CHECKING:
    from .record import EngineRecord


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


class _Explanation(TypedDict):
    rule: str  # the rule, described for a reader
    compared: dict[str, float]  # the probabilities the rule compared, by class
    explanation: str  # one sentence: why this class was called


class Explanation(_Explanation, total=False):
    """One decision explained (:meth:`Decision.explain`), as results and reports carry it."""
    threshold: float  # a threshold rule's threshold


@dataclass(frozen=True)
class Decision:
    rule: str = "argmax"
    temperature: float = 1.0
    positive: int | None = None  # the positive class's index (two-class rules)
    threshold: float | None = None  # on the calibrated probability of the positive class
    bias: tuple[float, ...] | None = None  # added to calibrated log-probabilities (the balanced rule)
    classes: tuple[str, ...] = ()

    @classmethod
    def of(cls, point: OperatingPoint | None, calibration: Calibration | None, classes: Sequence[str]) -> Decision:
        """The rule an engine record's operating point and calibration describe (argmax at temperature 1 where
        it has neither)."""
        point, names = point or OperatingPoint(), tuple(classes)
        positive = point.positive_class
        return cls(rule=point.rule, temperature=calibration.temperature if calibration else 1.0,
                   positive=names.index(positive) if positive in names else None, threshold=point.threshold,
                   bias=point.bias or None, classes=names)

    @classmethod
    def of_record(cls, record: EngineRecord) -> Decision:
        """The rule an engine binds: its operating point and calibration, over its classes."""
        return cls.of(record.decision, record.calibration, record.classes)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities: softmax(logits / temperature)."""
        return softmax(np.asarray(logits, dtype=np.float64) / self.temperature)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """The class index each row is called at the operating point."""
        if self.threshold is not None and self.positive is not None:
            other = 1 - self.positive
            return np.where(probs[:, self.positive] >= self.threshold, self.positive, other)
        scores = probs if self.bias is None else np.log(np.clip(probs, 1e-12, 1.0)) + np.asarray(self.bias)
        return np.asarray(scores.argmax(1))

    def describe(self) -> str:
        """The operating point in words, complete (with its threshold or every class's bias), as classify, serve
        and the SR name it."""
        if self.threshold is not None and self.positive is not None:
            return f"{self.rule}: {self.classes[self.positive]} when P({self.classes[self.positive]}) ≥ {self.threshold:.4g}"
        if self.bias is not None:
            biases = ", ".join(f"{c} {b:+.4g}" for c, b in zip(self.classes, self.bias))
            return f"{self.rule}: argmax of calibrated log-probabilities plus per-class biases ({biases})"
        return "argmax"

    def compared(self, probs: np.ndarray) -> np.ndarray:
        """What the rule compares, per class, as probabilities: the calibrated ones for argmax and a threshold
        (which compares the positive class's); for per-class biases the prior-corrected ones,
        softmax(log p + bias), whose argmax is the decision."""
        if self.bias is not None and (self.threshold is None or self.positive is None):
            return softmax(np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) + np.asarray(self.bias))
        return np.asarray(probs, np.float64)

    def explain(self, probs: dict[str, float]) -> Explanation:
        """One decision explained for a reader: the rule, the probabilities it compared (beside the calibrated
        ones the result also shows) and a sentence saying why this class was called. The decision is the one
        :meth:`decide` makes on these probabilities."""
        row = np.array([[probs[c] for c in self.classes]], np.float64)
        called = self.classes[int(self.decide(row)[0])]
        compared = dict(zip(self.classes, (float(v) for v in self.compared(row)[0])))
        shown = ", ".join(f"{c} {p:.3f}" for c, p in probs.items())
        if self.threshold is not None and self.positive is not None:
            pos = self.classes[self.positive]
            side = "≥" if called == pos else "<"
            why = (f"{called}: P({pos}) = {probs[pos]:.3f} {side} the operating point's threshold {self.threshold:.4g} "
                   f"({self.rule}); calibrated probabilities {shown}")
            return {"rule": self.describe(), "compared": {pos: probs[pos]}, "threshold": self.threshold,
                    "explanation": why}
        if self.bias is not None:
            adjusted = ", ".join(f"{c} {p:.3f}" for c, p in compared.items())
            why = (f"{called}: highest after the operating point's per-class biases ({self.rule}: "
                   + ", ".join(f"{c} {b:+.3g}" for c, b in zip(self.classes, self.bias))
                   + f" added to the calibrated log-probabilities); probabilities compared {adjusted}; calibrated "
                   f"probabilities {shown}")
            return {"rule": self.describe(), "compared": compared, "explanation": why}
        return {"rule": self.describe(), "compared": compared,
                "explanation": f"{called}: the most probable class; calibrated probabilities {shown}"}

"""Compare an engine's logits with the FP32 torch reference (explicit figures; the pass/fail rule is the
precision's :class:`~dcube_edge.runtimes.precisions.Tolerance`).

Top-1 agreement is reported as measured, and again with *near-tie flips* excused: images whose two
candidate classes are within the precision's ``tie_margin`` logits of each other in both the reference and the
engine. On a model with near-tied logits a rounding error of 1e-3 flips a label; counting that as a
disagreement measures the model's indecision, not the engine."""
from __future__ import annotations

import numpy as np

from dcube_edge.metrics import auc, softmax


def tie_flips(ref: np.ndarray, eng: np.ndarray, tie_margin: float) -> np.ndarray:
    """Per image: the top-1 labels differ, but both sides see a near-tie between the two classes (the
    reference's class leads the engine's by less than ``tie_margin`` logits in the reference, and trails it by
    less than ``tie_margin`` in the engine). Such a flip is rounding, not a different answer; a flip where
    either side is decisive is not excused."""
    rows = np.arange(len(ref))
    a, b = ref.argmax(1), eng.argmax(1)
    return (a != b) & (ref[rows, a] - ref[rows, b] < tie_margin) & (eng[rows, b] - eng[rows, a] < tie_margin)


def compare(reference: np.ndarray, engine: np.ndarray, labels: np.ndarray | None = None,
            tie_margin: float = 0.0) -> dict:
    ref, eng = reference.astype(np.float64), engine.astype(np.float64)
    cos = (ref * eng).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(eng, axis=1), 1e-12)
    agree, ties = ref.argmax(1) == eng.argmax(1), tie_flips(ref, eng, tie_margin)
    out = {"n": int(len(ref)),
           "top1_agreement": float(agree.mean()),
           "tie_margin": float(tie_margin), "near_tie_flips": int(ties.sum()),
           "top1_agreement_beyond_ties": float((agree | ties).mean()),
           "logit_cosine_mean": float(cos.mean()), "logit_cosine_min": float(cos.min()),
           "max_abs_logit_diff": float(np.abs(ref - eng).max())}
    if labels is not None and len(labels):
        pr, pe = softmax(ref), softmax(eng)
        out.update({"accuracy_reference": float((pr.argmax(1) == labels).mean()),
                    "accuracy_engine": float((pe.argmax(1) == labels).mean()),
                    "auc_reference": auc(labels, pr), "auc_engine": auc(labels, pe)})
        out["accuracy_delta"] = out["accuracy_engine"] - out["accuracy_reference"]
        out["auc_delta"] = out["auc_engine"] - out["auc_reference"]
    return out

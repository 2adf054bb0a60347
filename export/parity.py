"""Compare an engine's logits with the FP32 torch reference (explicit figures; the pass/fail rule is the
precision's :class:`~dcube_edge.runtimes.spec.Tolerance`)."""
from __future__ import annotations

import numpy as np

from dcube_edge.metrics import auc, softmax


def compare(reference: np.ndarray, engine: np.ndarray, labels: np.ndarray | None = None) -> dict:
    ref, eng = reference.astype(np.float64), engine.astype(np.float64)
    cos = (ref * eng).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(eng, axis=1), 1e-12)
    out = {"n": int(len(ref)),
           "top1_agreement": float((ref.argmax(1) == eng.argmax(1)).mean()),
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

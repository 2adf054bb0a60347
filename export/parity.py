"""Compare an engine's logits with the FP32 torch reference (explicit figures, no pass/fail magic)."""
from __future__ import annotations

import numpy as np

from dcube_edge.metrics import auc, softmax

# What a reduced-precision engine must keep against FP32 torch on validation (issue 12).
MIN_TOP1_AGREEMENT = 0.99
MAX_AUC_DROP = 0.005


def within_bounds(report: dict) -> bool:
    """Top-1 agreement ≥ 99 % and (where labels exist) an AUC drop of at most 0.005."""
    ok = report["top1_agreement"] >= MIN_TOP1_AGREEMENT
    delta = report.get("auc_delta")
    if delta is not None and np.isfinite(delta):
        ok = ok and delta >= -MAX_AUC_DROP
    return bool(ok)


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

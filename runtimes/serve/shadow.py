"""The shadow engine's results (``serve --shadow ENGINE``): it classifies every instance the active engine
classifies, after it, and its results are kept in the ledger's ``shadow_results`` only — no SR, no delivery, not
in QIDO-RS or the console's results. How often it agrees with the active engine, and on what it differs, is what
``monitor SPOOL`` shows and ``dcube_shadow_agreement`` in ``/metrics`` reports."""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .ledger import Ledger
from .records import Instance

if TYPE_CHECKING:
    from .engines import Slot

RESULTS = ("CREATE TABLE IF NOT EXISTS shadow_results (uid TEXT, engine TEXT, label TEXT, probs TEXT, error TEXT, "
           "classified REAL, PRIMARY KEY (uid, engine))")


def prepare(ledger: Ledger) -> None:
    ledger.write(RESULTS)


def classify(ledger: Ledger, slot: Slot, rows: Sequence[Instance], workers: int = 1) -> int:
    """The shadow's result for each row (its file as the active engine read it); how many were recorded."""
    preds = list(slot.clf.classify([r.path for r in rows], batch_size=max(1, len(rows)), workers=workers))
    now = time.time()
    with ledger.transaction() as db:
        db.executemany("INSERT OR REPLACE INTO shadow_results VALUES (?, ?, ?, ?, ?, ?)",
                       [(r.uid, slot.sha256, p.label, json.dumps(p.probs or None), p.error, now)
                        for r, p in zip(rows, preds)])
    return len(preds)


def agreement(ledger: Ledger, active: str, shadow: str, newest: int = 1000) -> dict:
    """The newest ``newest`` instances both engines classified: the share with the same call (95 % Wilson
    interval) and the calls on which they differ, counted as "active → shadow"."""
    from scipy.stats import binomtest

    prepare(ledger)
    rows = ledger.query("SELECT i.label, s.label FROM instances i JOIN shadow_results s ON s.uid = i.uid WHERE "
                        "i.engine = ? AND s.engine = ? AND i.status = 'done' AND s.error IS NULL ORDER BY "
                        "i.classified DESC LIMIT ?", active, shadow, newest)
    if not rows:
        return {"active": active, "shadow": shadow, "compared": 0}
    same = sum(a == s for a, s in rows)
    ci = binomtest(same, len(rows)).proportion_ci(0.95, method="wilson")
    return {"active": active, "shadow": shadow, "compared": len(rows), "agreement": round(same / len(rows), 4),
            "low": round(ci.low, 4), "high": round(ci.high, 4),
            "differences": dict(Counter(f"{a} → {s}" for a, s in rows if a != s).most_common())}

"""The monitor's part of the spool's ledger: each classified instance's observation (the ``observed`` column the
ledger's migration adds), the alerts that started and ended (table ``monitor_alerts``), and the active engine's
reference (``meta`` key ``reference``), so that ``dcube-edge monitor SPOOL`` reads all of it without the engine."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from ...sections import Reference, decode, encode
from ..ledger import Ledger
from .observation import Observation

ALERTS = ("CREATE TABLE IF NOT EXISTS monitor_alerts (name TEXT, span TEXT, since REAL, ended REAL, statistic REAL, "
          "threshold REAL, detail TEXT, engine TEXT)")


@dataclass(frozen=True)
class Alert:
    """An alert as the ledger keeps it: active while ``ended`` is None."""

    name: str
    window: str
    since: float
    ended: float | None
    statistic: float
    threshold: float
    detail: str
    engine: str


def prepare(ledger: Ledger) -> None:
    ledger.write(ALERTS)


def keep_reference(ledger: Ledger, reference: Reference | None) -> None:
    ledger.meta("reference", json.dumps(encode(reference) if reference else None, sort_keys=True))


def reference_of(ledger: Ledger) -> Reference | None:
    text = ledger.meta("reference")
    d = json.loads(text) if text else None
    return decode(Reference, d) if d else None


def record(ledger: Ledger, observed: list[tuple[str, Observation]]) -> None:
    """Each instance's observation, by SOP Instance UID."""
    with ledger.transaction() as db:
        db.executemany("UPDATE instances SET observed = ? WHERE uid = ?", [(o.to_json(), uid) for uid, o in observed])


def observations(ledger: Ledger, engine: str, newest: int | None = None, oldest: int | None = None,
                 since: float | None = None) -> list[tuple[float, Observation]]:
    """(classified time, observation) of the engine's results in the order they were classified: the ``newest``
    n, or the ``oldest`` n, or all since a time."""
    where = "engine = ? AND observed IS NOT NULL AND status = 'done'" + (" AND classified >= ?" if since else "")
    args: list = [engine] + ([since] if since else [])
    if newest is not None:
        rows = ledger.query(f"SELECT classified, observed FROM instances WHERE {where} ORDER BY classified DESC, rowid "
                            "DESC LIMIT ?", *args, newest)[::-1]
    else:
        rows = ledger.query(f"SELECT classified, observed FROM instances WHERE {where} ORDER BY classified, rowid"
                            + (" LIMIT ?" if oldest is not None else ""), *args, *([oldest] if oldest is not None else []))
    return [(t, Observation.from_json(text)) for t, text in rows]


def alerts(ledger: Ledger, active_only: bool = False) -> list[Alert]:
    prepare(ledger)
    rows = ledger.query("SELECT name, span, since, ended, statistic, threshold, detail, engine FROM monitor_alerts"
                        + (" WHERE ended IS NULL" if active_only else "") + " ORDER BY since")
    return [Alert(*r) for r in rows]


def started(ledger: Ledger, alert: Alert) -> None:
    ledger.write("INSERT INTO monitor_alerts VALUES (?, ?, ?, NULL, ?, ?, ?, ?)", alert.name, alert.window, alert.since,
                 alert.statistic, alert.threshold, alert.detail, alert.engine)


def ended(ledger: Ledger, name: str, when: float | None = None) -> None:
    ledger.write("UPDATE monitor_alerts SET ended = ? WHERE name = ? AND ended IS NULL", when or time.time(), name)


def ood_of(ledger: Ledger, uid: str) -> float | None:
    """An instance's out-of-distribution score, where the monitor observed it."""
    rows = ledger.query("SELECT observed FROM instances WHERE uid = ?", uid)
    return Observation.from_json(rows[0][0]).ood if rows and rows[0][0] else None

"""What the console reads from the ledger, through its ``query`` (each search served by an index of
:data:`..ledger.INDEXES`, newest first): results by patient ID, accession number, study date range, decision and
state, a page at a time; deliveries by state; throughput; every SR a source has had."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..records import Delivery, Instance, Report, State, iso

if TYPE_CHECKING:
    from ..ledger import Ledger

PAGE = 50
# The states a search offers: an instance's own, and two of its deliveries'.
DEAD, UNDELIVERED = "dead", "undelivered"
STATES = (*(s.value for s in State), DEAD, UNDELIVERED)
LAST = "\U0010ffff"  # after every character: "P*" matches patient_id in [P, P + LAST)


@dataclass(frozen=True)
class Search:
    """A results search as the page's form gives it (empty: any). ``patient_id`` and ``accession`` match exactly,
    or as a prefix when they end in ``*``; dates are DICOM DA (YYYYMMDD), both ends included."""

    patient_id: str = ""
    accession: str = ""
    date_from: str = ""
    date_to: str = ""
    decision: str = ""
    state: str = ""
    page: int = 1


@dataclass(frozen=True)
class Row:
    """One line of the results page: the instance and its deliveries counted by state."""

    instance: Instance
    deliveries: dict[str, int]


def conditions(s: Search) -> tuple[list[str], list]:
    where, args = [], []
    for column, value in (("patient_id", s.patient_id), ("accession", s.accession)):
        if value.endswith("*") and value.rstrip("*"):
            where.append(f"i.{column} >= ? AND i.{column} < ?")
            args += [value.rstrip("*"), value.rstrip("*") + LAST]
        elif value:
            where.append(f"i.{column} = ?")
            args.append(value)
    if s.date_from:
        where.append("i.study_date >= ?")
        args.append(s.date_from)
    if s.date_to:
        where.append("i.study_date <= ?")
        args.append(s.date_to)
    if s.decision:
        where.append("i.label = ?")
        args.append(s.decision)
    if s.state in (DEAD, UNDELIVERED):
        where.append("i.uid IN (SELECT d.uid FROM deliveries d WHERE d.status = ?)")  # once, by deliveries_status
        args.append(Delivery.DEAD.value if s.state == DEAD else Delivery.PENDING.value)
    elif s.state:
        where.append("i.status = ?")
        args.append(s.state)
    return where, args


def search(ledger: Ledger, s: Search, size: int = PAGE) -> tuple[int, list[Row]]:
    """(how many match, the page's rows), newest received first."""
    where, args = conditions(s)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = ledger.query(f"SELECT COUNT(*) FROM instances i{clause}", *args)[0][0]
    columns = ", ".join(f"i.{c.strip()}" for c in Instance.COLUMNS.split(","))
    rows = ledger.query(f"SELECT {columns}, (SELECT group_concat(d.status) FROM deliveries d WHERE d.uid = i.uid) "
                        f"FROM instances i{clause} ORDER BY i.received DESC LIMIT ? OFFSET ?", *args, size,
                        (max(s.page, 1) - 1) * size)
    return total, [Row(Instance.of(r[:-1]), counted(r[-1])) for r in rows]


def counted(states: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for state in (states or "").split(","):
        if state:
            out[state] = out.get(state, 0) + 1
    return out


@dataclass(frozen=True)
class Letter:
    """One delivery of one result to one destination, with what it is about."""

    uid: str
    destination: str
    state: str
    attempts: int
    given: str | None
    error: str | None
    updated: str | None
    patient_id: str | None
    patient_name: str | None
    study: str | None
    report: str | None


def deliveries(ledger: Ledger, state: str, page: int = 1, size: int = PAGE, failing: bool = False) -> tuple[int, list[Letter]]:
    """(how many, a page of) deliveries in ``state``, last changed first; ``failing``: only those tried and
    failed at least once (the pending ones retried with back-off)."""
    clause = " WHERE d.status = ?" + (" AND d.attempts > 0" if failing else "")
    total = ledger.query(f"SELECT COUNT(*) FROM deliveries d{clause}", state)[0][0]
    rows = ledger.query("SELECT d.uid, d.destination, d.status, d.attempts, d.given, d.error, d.updated, i.patient_id, "
                        f"i.patient_name, i.study, i.report FROM deliveries d JOIN instances i ON i.uid = d.uid{clause} "
                        "ORDER BY d.updated DESC LIMIT ? OFFSET ?", state, size, (max(page, 1) - 1) * size)
    return total, [Letter(*r[:6], iso(r[6]), *r[7:]) for r in rows]


def dead_reports(ledger: Ledger, uid: str | None) -> list[tuple[str, str]]:
    """(study, result SR UID) of the results with a dead delivery (of one instance): what a retry re-queues."""
    return ledger.query("SELECT DISTINCT i.study, COALESCE(i.report, i.uid) FROM deliveries d JOIN instances i ON "
                        "i.uid = d.uid WHERE d.status = ?" + (" AND d.uid = ?" if uid else ""), Delivery.DEAD.value,
                        *((uid,) if uid else ()))


def throughput(ledger: Ledger, windows: tuple[int, ...] = (60, 900, 3600)) -> dict[int, int]:
    """Results recorded in each of the last ``windows`` seconds."""
    now = time.time()
    sums = ", ".join("COALESCE(SUM(classified >= ?), 0)" for _ in windows)
    row = ledger.query(f"SELECT {sums} FROM instances WHERE classified >= ?", *(now - w for w in windows),
                       now - max(windows))[0]
    return dict(zip(windows, row))


def reports_of(ledger: Ledger, source: str) -> list[Report]:
    """Every SR made about a source instance (a correction adds one), oldest first."""
    return [Report(*r) for r in ledger.query(f"SELECT {Report.COLUMNS} FROM reports WHERE source = ? ORDER BY "
                                             "revision, created", source)]


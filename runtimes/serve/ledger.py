"""The spool's ledger: every received instance, its result, the result's SR and the delivery of that SR to each
destination, in ``spool/ledger.sqlite`` (SQLite, WAL, synchronous commits; one connection, one lock). Rows come
out typed (:mod:`.records`).

After ``kill -9`` and a restart on the same spool, pending instances are classified; a result is written only
to a pending row, so nothing acknowledged is lost and nothing gets two results. Each result's SR is recorded
with its file and sha256 in the same transaction as the result. Each SR has one delivery row per destination
(a PACS by C-STORE, a DICOMweb server by STOW-RS): retried with back-off while the destination does not answer,
for up to ``--retry-for``; given up (``dead``) with the reason when it is refused, or when that time ran out —
those are re-queued when the destination answers again. One refusing destination never holds up another."""
from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import astuple
from pathlib import Path

from ..files import dumps
from .records import Delivery, Given, Instance, Listing, Report, State, iso

INSTANCES = ("CREATE TABLE IF NOT EXISTS instances (uid TEXT PRIMARY KEY, path TEXT, source TEXT, received REAL, "
             "status TEXT, label TEXT, probs TEXT, error TEXT, engine TEXT, classified REAL, batch INTEGER, "
             "forwarded INTEGER DEFAULT 0, forward_attempts INTEGER DEFAULT 0, forward_next REAL DEFAULT 0, "
             "forward_error TEXT, content TEXT, study TEXT, purged REAL)")
DELIVERIES = ("CREATE TABLE IF NOT EXISTS deliveries (uid TEXT, destination TEXT, status TEXT, attempts INTEGER, "
              "next_at REAL, error TEXT, updated REAL, PRIMARY KEY (uid, destination))")
REPORTS = ("CREATE TABLE IF NOT EXISTS reports (uid TEXT PRIMARY KEY, source TEXT, study TEXT, series TEXT, "
           "number INTEGER, revision INTEGER, path TEXT, sha256 TEXT, created REAL, engine TEXT, predecessor TEXT)")
ADDED = {"instances": (("content", "TEXT"), ("study", "TEXT"), ("purged", "REAL"), ("header", "TEXT"),
                       ("decision", "TEXT"), ("revision", "INTEGER DEFAULT 0"), ("report", "TEXT"),
                       ("report_error", "TEXT"), ("layout", "INTEGER DEFAULT 1"), ("patient_id", "TEXT"),
                       ("patient_name", "TEXT"), ("accession", "TEXT"), ("study_date", "TEXT"), ("views", "TEXT"),
                       ("observed", "TEXT")),  # observed: what the monitor saw of it (serve/monitor/observation.py)
         "deliveries": (("first_failed", "REAL"), ("given", "TEXT"))}  # columns later versions added
# What the console searches by (each with the newest first), its throughput and its dead letters: name → columns.
INDEXES = {"instances_received": "instances (received)", "instances_patient": "instances (patient_id, received)",
           "instances_accession": "instances (accession, received)",
           "instances_study_date": "instances (study_date, received)", "instances_status": "instances (status, received)",
           "instances_label": "instances (label, received)", "instances_classified": "instances (classified)",
           "deliveries_status": "deliveries (status, updated)"}
# An earlier version's rows, when its spool gains the column that says so: their SRs are made as it sent them.
LEGACY = {"layout": "UPDATE instances SET layout = 0"}
NOT_LISTED = Listing()  # no attributes to search by recorded
BACKOFF_S = (1, 2, 4, 8, 16, 32, 60, 120, 300)


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: 1, 2, 4, … capped at 5 minutes."""
    return BACKOFF_S[min(max(attempts, 1), len(BACKOFF_S)) - 1]


class Ledger:
    """Every received instance, its result, its SR and its deliveries (one connection, one lock)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        with self.lock:
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for name, create in (("instances", INSTANCES), ("deliveries", DELIVERIES), ("reports", REPORTS),
                                 ("meta", "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")):
                if name not in tables:  # nothing is written to a spool that has them (a full disk still opens)
                    self.db.execute(create)
            for table, added in ADDED.items():
                columns = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
                for column, kind in added:
                    if column not in columns:
                        self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                        if column in LEGACY and "instances" in tables:
                            self.db.execute(LEGACY[column])
            indexes = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
            for name, columns in INDEXES.items():
                if name not in indexes:
                    self.db.execute(f"CREATE INDEX {name} ON {columns}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; rolled back on any error (a full disk, an I/O error), so the one
        connection is not left inside a transaction that every later BEGIN would refuse."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def query(self, sql: str, *args) -> list[tuple]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def write(self, sql: str, *args) -> int:
        with self.lock:
            return self.db.execute(sql, args).rowcount

    def meta(self, key: str, value: str | None = None) -> str | None:
        """A value kept with the spool (written only when it changes)."""
        row = self.query("SELECT value FROM meta WHERE key = ?", key)
        if value is not None and (not row or row[0][0] != value):
            self.write("INSERT OR REPLACE INTO meta VALUES (?, ?)", key, value)
            return value
        return row[0][0] if row else None

    # -- instances -------------------------------------------------------------------------------------
    def add(self, uid: str, path: Path, source: str, content: str | None = None, not_applicable: str | None = None,
            study: str | None = None, header: str | None = None, listing: Listing = NOT_LISTED) -> bool:
        """Record a received instance (committed on return), pending classification or, with the reason in
        ``not_applicable``, recorded as nothing to classify; False if this UID was already received."""
        state = State.NOT_APPLICABLE if not_applicable else State.PENDING
        return self.write("INSERT OR IGNORE INTO instances (uid, path, source, received, status, content, error, "
                          "study, header, revision, patient_id, patient_name, accession, study_date) VALUES (?, ?, ?, "
                          "?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)", uid, str(path), source, time.time(), state.value, content,
                          not_applicable, study, header, *astuple(listing)) == 1

    def instance(self, uid: str) -> Instance | None:
        rows = self.query(f"SELECT {Instance.COLUMNS} FROM instances WHERE uid = ?", uid)
        return Instance.of(rows[0]) if rows else None

    def correct(self, uid: str, header: str, study: str | None, source: str, listing: Listing = NOT_LISTED) -> State:
        """A resend of a held instance with the same pixels and other demographics: its header is the new one and
        its revision the next, and a classified one goes back to pending, so its next result SR is a corrected one
        that names the current one as its predecessor (a result of a batch that read the old file is not written:
        it was of the previous revision). Returns the state it was in."""
        with self.transaction() as db:
            state = State(db.execute("SELECT status FROM instances WHERE uid = ?", (uid,)).fetchone()[0])
            again = state in (State.DONE, State.ERROR)
            db.execute("UPDATE instances SET header = ?, study = ?, source = ?, purged = NULL, revision = revision + 1, "
                       "status = ?, patient_id = ?, patient_name = ?, accession = ?, study_date = ? WHERE uid = ?",
                       (header, study, source, State.PENDING.value if again else state.value, *astuple(listing), uid))
        return state

    def pending(self, limit: int) -> list[Instance]:
        """Instances still waiting for a result, oldest first."""
        return [Instance.of(r) for r in self.query(f"SELECT {Instance.COLUMNS} FROM instances WHERE status = ? "
                                                   "ORDER BY received LIMIT ?", State.PENDING.value, limit)]

    def finish(self, results: list[tuple[Instance, dict]], engine: str, now: float) -> list[str]:
        """Store results — each ``(instance, {label, probs, decision, error, views})``, ``views`` what was read and
        each view's result — only on still-pending rows of the same revision (so no instance ever gets two); the
        UIDs written. Each then waits for its SR (:meth:`attach`)."""
        with self.transaction() as db:
            return [row.uid for row, result in results if db.execute(
                "UPDATE instances SET status = ?, label = ?, probs = ?, decision = ?, error = ?, engine = ?, "
                "classified = ?, batch = ?, views = ?, report = NULL, report_error = NULL WHERE uid = ? AND status = ? "
                "AND revision = ?",
                ((State.ERROR if result.get("error") else State.DONE).value, result.get("label"),
                 dumps(result.get("probs"), indent=None), dumps(result.get("decision"), indent=None),
                 result.get("error"), engine, now, len(results), dumps(result.get("views"), indent=None), row.uid,
                 State.PENDING.value, row.revision)).rowcount]

    def awaiting_report(self, limit: int = 16) -> list[Instance]:
        """Results whose SR is still to be made, oldest first (an earlier version's included)."""
        return [Instance.of(r) for r in self.query(f"SELECT {Instance.COLUMNS} FROM instances WHERE status = ? AND "
                                                   "report IS NULL AND report_error IS NULL ORDER BY classified LIMIT ?",
                                                   State.DONE.value, limit)]

    def attach(self, report: Report, revision: int, destinations: tuple[str, ...]) -> bool:
        """Record a result's SR and queue its delivery to every destination, in one transaction; False where the
        result changed meanwhile (a correction arrived: its own SR follows)."""
        with self.transaction() as db:
            if not db.execute("UPDATE instances SET report = ? WHERE uid = ? AND status = ? AND report IS NULL AND "
                              "revision = ?", (report.uid, report.source, State.DONE.value, revision)).rowcount:
                return False
            db.execute(f"INSERT OR REPLACE INTO reports ({Report.COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (report.uid, report.source, report.study, report.series, report.number, report.revision,
                        report.path, report.sha256, report.created, report.engine, report.predecessor))
            db.executemany("INSERT OR REPLACE INTO deliveries (uid, destination, status, attempts, next_at, updated) "
                           "VALUES (?, ?, ?, 0, 0, ?)", [(report.source, d, Delivery.PENDING.value, report.created)
                                                         for d in destinations])
        return True

    def no_report(self, uid: str, reason: str, destinations: tuple[str, ...]) -> None:
        """No SR can be made for this result: the reason kept, its deliveries given up with it."""
        with self.transaction() as db:
            db.execute("UPDATE instances SET report_error = ? WHERE uid = ?", (reason, uid))
            db.executemany("INSERT OR REPLACE INTO deliveries (uid, destination, status, attempts, next_at, error, "
                           "updated, given) VALUES (?, ?, ?, 0, 0, ?, ?, ?)",
                           [(uid, d, Delivery.DEAD.value, reason[:500], time.time(), Given.REFUSED.value)
                            for d in destinations])

    def latest_report(self, source: str, engine: str) -> Report | None:
        """The newest SR this engine made about a source instance (what a corrected one supersedes)."""
        rows = self.query(f"SELECT {Report.COLUMNS} FROM reports WHERE source = ? AND engine = ? ORDER BY revision "
                          "DESC LIMIT 1", source, engine)
        return Report(*rows[0]) if rows else None

    def report(self, uid: str) -> Report | None:
        """An SR by its SOP Instance UID."""
        rows = self.query(f"SELECT {Report.COLUMNS} FROM reports WHERE uid = ?", uid)
        return Report(*rows[0]) if rows else None

    def reports(self, study: str | None = None, limit: int = 100_000) -> list[Report]:
        """The current SR of every classified instance (of one study), oldest first."""
        return [Report(*r) for r in self.query(
            "SELECT " + ", ".join(f"r.{c.strip()}" for c in Report.COLUMNS.split(",")) + " FROM instances i JOIN "
            "reports r ON r.uid = i.report WHERE i.status = ?" + (" AND i.study = ?" if study else "")
            + " ORDER BY i.classified LIMIT ?", State.DONE.value, *((study,) if study else ()), limit)]

    def next_number(self, series: str) -> int:
        """The next Instance Number in an SR series."""
        return (self.query("SELECT MAX(number) FROM reports WHERE series = ?", series)[0][0] or 0) + 1

    def reset(self) -> int:
        """Every result cleared for classifying again with another engine, its deliveries with it (the new SRs
        are sent anew); an instance whose pixels retention deleted keeps its result and SR. How many were reset."""
        with self.transaction() as db:
            db.execute("DELETE FROM deliveries WHERE uid IN (SELECT uid FROM instances WHERE status IN (?, ?) AND "
                       "purged IS NULL)", (State.DONE.value, State.ERROR.value))
            return db.execute("UPDATE instances SET status = ?, label = NULL, probs = NULL, decision = NULL, "
                              "views = NULL, error = NULL, report = NULL, report_error = NULL, revision = revision + 1, "
                              "forwarded = 0 WHERE status IN (?, ?) AND purged IS NULL",
                              (State.PENDING.value, State.DONE.value, State.ERROR.value)).rowcount

    # -- deliveries ------------------------------------------------------------------------------------
    def ensure_deliveries(self, destinations: tuple[str, ...]) -> None:
        """Every result has a delivery row for every configured destination (a destination added at a restart
        gets the results classified before it; one whose SR cannot be made is given up with the reason)."""
        for d in destinations:  # a result an earlier version forwarded by C-STORE counts as delivered there
            self.write("INSERT OR IGNORE INTO deliveries (uid, destination, status, attempts, next_at, error, updated, "
                       "given) SELECT uid, ?, CASE WHEN forwarded = 1 AND ? THEN ? WHEN report_error IS NOT NULL THEN ? "
                       "ELSE ? END, 0, 0, report_error, ?, CASE WHEN report_error IS NOT NULL THEN ? END FROM instances "
                       "WHERE status = ? AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.uid = instances.uid AND "
                       "x.destination = ?)", d, d.startswith("dicom:"), Delivery.DELIVERED.value, Delivery.DEAD.value,
                       Delivery.PENDING.value, time.time(), Given.REFUSED.value, State.DONE.value, d)

    def due(self, destination: str, limit: int = 16) -> list[Instance]:
        """Instances whose result's delivery to ``destination`` is pending and due, oldest result first."""
        return [Instance.of(r) for r in self.query(
            "SELECT " + ", ".join(f"i.{c.strip()}" for c in Instance.COLUMNS.split(",")) + " FROM deliveries d JOIN "
            "instances i ON i.uid = d.uid WHERE d.destination = ? AND d.status = ? AND d.next_at <= ? AND i.status = ? "
            "AND i.report IS NOT NULL ORDER BY i.classified LIMIT ?", destination, Delivery.PENDING.value, time.time(),
            State.DONE.value, limit)]

    def delivered(self, uid: str, destination: str) -> None:
        self.write("UPDATE deliveries SET status = ?, attempts = attempts + 1, error = NULL, updated = ?, "
                   "first_failed = NULL, given = NULL WHERE uid = ? AND destination = ?", Delivery.DELIVERED.value,
                   time.time(), uid, destination)

    def failed(self, uid: str, destination: str, error: str, refused: bool, retry_for: float) -> Delivery:
        """Record a failed attempt: retried after 1, 2, 4, … 300 s while the destination does not answer, for up
        to ``retry_for`` seconds from the first failure; ``dead`` at once when it refused. Returns the new state."""
        now = time.time()
        with self.transaction() as db:
            attempts, first = db.execute("SELECT attempts, COALESCE(first_failed, ?) FROM deliveries WHERE uid = ? "
                                         "AND destination = ?", (now, uid, destination)).fetchone()
            attempts += 1
            expired = not refused and now - first >= retry_for
            given = Given.REFUSED if refused else Given.EXPIRED if expired else None
            reason = error if given is not Given.EXPIRED else (f"{error} (gave up after {attempts} attempts over "
                                                                f"{(now - first) / 3600:.3g} h; re-queued when it "
                                                                "answers again)")
            state = Delivery.DEAD if given else Delivery.PENDING
            db.execute("UPDATE deliveries SET status = ?, attempts = ?, error = ?, next_at = ?, updated = ?, "
                       "first_failed = ?, given = ? WHERE uid = ? AND destination = ?",
                       (state.value, attempts, reason[:500], now + backoff(attempts), now, first,
                        given and given.value, uid, destination))
        return state

    def requeue_expired(self, destination: str, before: float | None = None) -> int:
        """The deliveries to ``destination`` given up because it did not answer (before ``before``), back in the
        queue: it answers again. How many."""
        return self.write("UPDATE deliveries SET status = ?, attempts = 0, next_at = 0, first_failed = NULL, "
                          "given = NULL WHERE destination = ? AND status = ? AND given = ? AND updated < ?",
                          Delivery.PENDING.value, destination, Delivery.DEAD.value, Given.EXPIRED.value,
                          before if before is not None else float("inf"))

    def expired(self, destination: str) -> int:
        return self.query("SELECT COUNT(*) FROM deliveries WHERE destination = ? AND status = ? AND given = ?",
                          destination, Delivery.DEAD.value, Given.EXPIRED.value)[0][0]

    def retry(self, uid: str | None = None) -> int:
        """Put dead deliveries (all, or one instance's) back in the queue; how many."""
        return self.write("UPDATE deliveries SET status = ?, attempts = 0, next_at = 0, first_failed = NULL, "
                          "given = NULL WHERE status = ?" + (" AND uid = ?" if uid else ""), Delivery.PENDING.value,
                          Delivery.DEAD.value, *((uid,) if uid else ()))

    def dead(self) -> list[dict]:
        """Every dead delivery with its reason."""
        rows = self.query("SELECT uid, destination, attempts, given, error, updated FROM deliveries WHERE status = ? "
                          "ORDER BY updated", Delivery.DEAD.value)
        return [{"sop_instance_uid": u, "destination": d, "attempts": a, "given_up": g, "error": e, "updated": iso(t)}
                for u, d, a, g, e, t in rows]

    def deliveries(self, uid: str) -> list[dict]:
        rows = self.query("SELECT destination, status, attempts, error, updated FROM deliveries WHERE uid = ? "
                          "ORDER BY destination", uid)
        return [{"destination": d, "status": s, "attempts": a, "error": e, "updated": iso(t)} for d, s, a, e, t in rows]

    def delivery_counts(self) -> dict[str, dict[str, int]]:
        """Per destination, deliveries by state."""
        out: dict[str, dict[str, int]] = {}
        for d, state, n in self.query("SELECT destination, status, COUNT(*) FROM deliveries GROUP BY destination, "
                                      "status"):
            out.setdefault(d, {})[state] = n
        return out

    # -- reading ---------------------------------------------------------------------------------------
    def get(self, uid: str) -> dict | None:
        """An instance's record as the HTTP API shows it."""
        row = self.instance(uid)
        return None if row is None else row.api(self.deliveries(uid))

    def settled_before(self, before: float) -> list[tuple[str, str]]:
        """(uid, path) of instances received before ``before`` whose pixel file nothing needs any more: nothing to
        classify, or classified with its result SR kept; not yet deleted."""
        return self.query("SELECT uid, path FROM instances WHERE received < ? AND purged IS NULL AND (status = ? OR "
                          "(status = ? AND report IS NOT NULL))", before, State.NOT_APPLICABLE.value, State.DONE.value)

    def purged(self, uid: str) -> None:
        self.write("UPDATE instances SET purged = ? WHERE uid = ?", time.time(), uid)

    def sizes(self) -> dict:
        """Received-time range and counts for `spool status`."""
        oldest, newest, n, purged = self.query("SELECT MIN(received), MAX(received), COUNT(*), COUNT(purged) FROM "
                                               "instances")[0]
        reports = self.query("SELECT COUNT(*) FROM reports")[0][0]
        return {"oldest_received": iso(oldest), "newest_received": iso(newest), "total_instances": n,
                "pixel_files_purged": purged, "result_srs": reports}

    def timings(self) -> list[tuple[float, int]]:
        """(seconds from receipt to result, size of the batch it was classified in) of every classified row."""
        return self.query("SELECT classified - received, batch FROM instances WHERE classified IS NOT NULL")

    def counts(self) -> dict[str, int]:
        """Instances by state."""
        return dict(self.query("SELECT status, COUNT(*) FROM instances GROUP BY status"))

    def close(self) -> None:
        with self.lock:
            self.db.close()


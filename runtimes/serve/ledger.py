"""The spool's ledger: every received instance, its one result and the delivery of that result to each
destination, in ``spool/ledger.sqlite`` (SQLite, WAL, synchronous commits; one connection, one lock).

After ``kill -9`` and a restart on the same spool, pending instances are classified; a result is written only
to a pending row, so nothing acknowledged is lost and nothing gets two results. Each result has one delivery row
per destination (a PACS by C-STORE, a DICOMweb server by STOW-RS): retried with back-off while the failure is
transient, moved to ``dead`` with the reason when it is permanent or the attempts run out, so one refusing
destination never holds up another."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..files import dumps

INSTANCES = ("CREATE TABLE IF NOT EXISTS instances (uid TEXT PRIMARY KEY, path TEXT, source TEXT, received REAL, "
             "status TEXT, label TEXT, probs TEXT, error TEXT, engine TEXT, classified REAL, batch INTEGER, "
             "forwarded INTEGER DEFAULT 0, forward_attempts INTEGER DEFAULT 0, forward_next REAL DEFAULT 0, "
             "forward_error TEXT, content TEXT, study TEXT, purged REAL)")
DELIVERIES = ("CREATE TABLE IF NOT EXISTS deliveries (uid TEXT, destination TEXT, status TEXT, attempts INTEGER, "
              "next_at REAL, error TEXT, updated REAL, PRIMARY KEY (uid, destination))")
BACKOFF_S = (1, 2, 4, 8, 16, 32, 60)


def iso(t: float | None) -> str | None:
    """An epoch time as ISO 8601 in UTC (what the HTTP API and the audit log show)."""
    return None if t is None else dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds")


class Ledger:
    """Every received instance, its result and its deliveries (one connection, one lock)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        with self.lock:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute(INSTANCES)
            self.db.execute(DELIVERIES)
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(instances)")}
            for column, kind in (("content", "TEXT"), ("study", "TEXT"), ("purged", "REAL")):  # older spools
                if column not in columns:
                    self.db.execute(f"ALTER TABLE instances ADD COLUMN {column} {kind}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction under the lock; rolled back on any error (a full disk, an I/O error), so the one
        connection is not left inside a transaction that every later BEGIN would refuse."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def meta(self, key: str, value: str | None = None) -> str | None:
        with self.lock:
            if value is not None:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def add(self, uid: str, path: Path, source: str, content: str | None = None, not_applicable: str | None = None,
            study: str | None = None) -> bool:
        """Record a received instance (committed on return), pending classification or, with the reason in
        ``not_applicable``, recorded as nothing to classify; False if this UID was already received."""
        status = "not_applicable" if not_applicable else "pending"
        with self.lock:
            cur = self.db.execute("INSERT OR IGNORE INTO instances (uid, path, source, received, status, content, "
                                  "error, study) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                  (uid, str(path), source, time.time(), status, content, not_applicable, study))
        return cur.rowcount == 1

    def held(self, uid: str) -> tuple[str, str | None] | None:
        """(spool path, content hash) of a received UID, or None."""
        with self.lock:
            return self.db.execute("SELECT path, content FROM instances WHERE uid = ?", (uid,)).fetchone()

    def pending(self, limit: int) -> list[tuple[str, str, float]]:
        """(uid, path, received) of instances still waiting for a result, oldest first."""
        with self.lock:
            return self.db.execute("SELECT uid, path, received FROM instances WHERE status = 'pending' "
                                   "ORDER BY received LIMIT ?", (limit,)).fetchall()

    def finish(self, results: list[tuple[str, str | None, dict, str | None]], engine: str, now: float,
               destinations: tuple[str, ...] = ()) -> list[str]:
        """Store results, each only on a still-pending row (so no instance ever gets two), with a pending
        delivery per destination for each result; the UIDs written."""
        n = len(results)
        with self.transaction():
            written = [uid for uid, label, probs, err in results if self.db.execute(
                "UPDATE instances SET status = ?, label = ?, probs = ?, error = ?, engine = ?, classified = ?, "
                "batch = ? WHERE uid = ? AND status = 'pending'",
                ("error" if err else "done", label, dumps(probs, indent=None), err, engine, now, n, uid)).rowcount]
            done = [uid for uid, _, _, err in results if err is None and uid in written]
            self.db.executemany("INSERT OR REPLACE INTO deliveries VALUES (?, ?, 'pending', 0, 0, NULL, ?)",
                                [(uid, d, now) for uid in done for d in destinations])
        return written

    def ensure_deliveries(self, destinations: tuple[str, ...]) -> None:
        """Every result has a delivery row for every configured destination (a destination added at a restart
        gets the results classified before it)."""
        with self.lock:
            for d in destinations:  # a result an earlier version forwarded by C-STORE counts as delivered there
                self.db.execute("INSERT OR IGNORE INTO deliveries SELECT uid, ?, CASE WHEN forwarded = 1 AND ? THEN "
                                "'delivered' ELSE 'pending' END, 0, 0, NULL, ? FROM instances WHERE status = 'done'",
                                (d, d.startswith("dicom:"), time.time()))

    def due(self, destination: str, limit: int = 16) -> list[tuple[str, str, str, str]]:
        """(uid, path, label, probs) of results whose delivery to ``destination`` is pending and due."""
        with self.lock:
            return self.db.execute("SELECT i.uid, i.path, i.label, i.probs FROM deliveries d JOIN instances i ON "
                                   "i.uid = d.uid WHERE d.destination = ? AND d.status = 'pending' AND d.next_at <= ? "
                                   "ORDER BY i.classified LIMIT ?", (destination, time.time(), limit)).fetchall()

    def delivered(self, uid: str, destination: str) -> None:
        with self.lock:
            self.db.execute("UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, error = NULL, "
                            "updated = ? WHERE uid = ? AND destination = ?", (time.time(), uid, destination))

    def failed(self, uid: str, destination: str, error: str, permanent: bool, max_attempts: int) -> str:
        """Record a failed attempt: retried after 1, 2, 4, … 60 s while transient and under ``max_attempts``,
        else ``dead`` with the reason. Returns the delivery's new status."""
        with self.lock:
            attempts = self.db.execute("SELECT attempts FROM deliveries WHERE uid = ? AND destination = ?",
                                       (uid, destination)).fetchone()[0] + 1
            dead = permanent or attempts >= max_attempts
            reason = error if not dead or permanent else f"{error} (gave up after {attempts} attempts)"
            now = time.time()
            self.db.execute("UPDATE deliveries SET status = ?, attempts = ?, error = ?, next_at = ?, updated = ? "
                            "WHERE uid = ? AND destination = ?",
                            ("dead" if dead else "pending", attempts, reason[:500],
                             now + BACKOFF_S[min(attempts, len(BACKOFF_S)) - 1], now, uid, destination))
        return "dead" if dead else "pending"

    def retry(self, uid: str | None = None) -> int:
        """Put dead deliveries (all, or one instance's) back in the queue; how many."""
        with self.lock:
            cur = self.db.execute("UPDATE deliveries SET status = 'pending', attempts = 0, next_at = 0 WHERE "
                                  "status = 'dead'" + (" AND uid = ?" if uid else ""), (uid,) if uid else ())
        return cur.rowcount

    def dead(self) -> list[dict]:
        """Every dead delivery with its reason."""
        with self.lock:
            rows = self.db.execute("SELECT uid, destination, attempts, error, updated FROM deliveries "
                                   "WHERE status = 'dead' ORDER BY updated").fetchall()
        return [{"sop_instance_uid": u, "destination": d, "attempts": a, "error": e, "updated": iso(t)}
                for u, d, a, e, t in rows]

    def delivery_counts(self) -> dict[str, dict[str, int]]:
        """Per destination, deliveries by status."""
        with self.lock:
            rows = self.db.execute("SELECT destination, status, COUNT(*) FROM deliveries GROUP BY destination, "
                                   "status").fetchall()
        out: dict[str, dict[str, int]] = {}
        for d, status, n in rows:
            out.setdefault(d, {})[status] = n
        return out

    def reset(self) -> None:
        """Every result cleared for classifying again, and its deliveries with it (the new result is sent anew)."""
        with self.transaction():
            self.db.execute("DELETE FROM deliveries WHERE uid IN (SELECT uid FROM instances WHERE status IN "
                            "('done', 'error'))")
            self.db.execute("UPDATE instances SET status = 'pending', label = NULL, probs = NULL, error = NULL, "
                            "forwarded = 0 WHERE status IN ('done', 'error')")

    def get(self, uid: str) -> dict | None:
        """An instance's record as the HTTP API shows it (times in ISO 8601 UTC)."""
        with self.lock:
            row = self.db.execute("SELECT uid, source, received, status, label, probs, error, engine, classified, "
                                  "batch, study FROM instances WHERE uid = ?", (uid,)).fetchone()
            deliveries = self.db.execute("SELECT destination, status, attempts, error, updated FROM deliveries "
                                         "WHERE uid = ? ORDER BY destination", (uid,)).fetchall()
        if row is None:
            return None
        keys = ("sop_instance_uid", "source", "received", "status", "label", "probs", "error", "engine_sha256",
                "classified", "batch_size", "study_instance_uid")
        out = dict(zip(keys, row))
        out["probs"] = json.loads(out["probs"]) if out["probs"] else None
        out["received"], out["classified"] = iso(out["received"]), iso(out["classified"])
        out["deliveries"] = [{"destination": d, "status": s, "attempts": a, "error": e, "updated": iso(t)}
                             for d, s, a, e, t in deliveries]
        out["forwarded"] = bool(deliveries) and all(d[1] == "delivered" for d in deliveries)
        out["forward_attempts"] = sum(d[2] for d in deliveries)
        out["forward_error"] = next((d[3] for d in deliveries if d[3]), None)
        return out

    def results(self, study: str | None = None, limit: int = 100, offset: int = 0) -> list[tuple[str, str, str, str]]:
        """(uid, path, label, probs) of classified instances (of one study), oldest first."""
        with self.lock:
            return self.db.execute("SELECT uid, path, label, probs FROM instances WHERE status = 'done'"
                                   + (" AND study = ?" if study else "") + " ORDER BY classified LIMIT ? OFFSET ?",
                                   ((study,) if study else ()) + (limit, offset)).fetchall()

    def settled_before(self, before: float) -> list[tuple[str, str]]:
        """(uid, path) of instances received before ``before`` whose pixel file is no longer needed: nothing to
        classify, or classified with every delivery delivered; not yet purged."""
        with self.lock:
            return self.db.execute(
                "SELECT uid, path FROM instances i WHERE received < ? AND purged IS NULL AND (status = 'not_applicable' "
                "OR (status = 'done' AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.uid = i.uid AND "
                "d.status != 'delivered')))", (before,)).fetchall()

    def purged(self, uid: str) -> None:
        with self.lock:
            self.db.execute("UPDATE instances SET purged = ? WHERE uid = ?", (time.time(), uid))

    def sizes(self) -> dict:
        """Received-time range and counts for `spool status`."""
        with self.lock:
            oldest, newest, n, purged = self.db.execute(
                "SELECT MIN(received), MAX(received), COUNT(*), COUNT(purged) FROM instances").fetchone()
        return {"oldest_received": iso(oldest), "newest_received": iso(newest), "instances": n, "pixel_files_purged": purged}

    def timings(self) -> list[tuple[float, int]]:
        """(seconds from receipt to result, size of the batch it was classified in) of every classified row."""
        with self.lock:
            return self.db.execute("SELECT classified - received, batch FROM instances "
                                   "WHERE classified IS NOT NULL").fetchall()

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.db.execute("SELECT status, COUNT(*) FROM instances GROUP BY status").fetchall())

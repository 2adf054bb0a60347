"""The spool's ledger: every received instance and its one result, in ``spool/ledger.sqlite`` (SQLite, WAL,
synchronous commits; one connection, one lock). After ``kill -9`` and a restart on the same spool, pending
instances are classified; a result is written only to a pending row, so nothing acknowledged is lost and
nothing gets two results."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from ..files import dumps


class Ledger:
    """Every received instance and its result, in ``spool/ledger.sqlite`` (one connection, one lock)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        with self.lock:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("CREATE TABLE IF NOT EXISTS instances (uid TEXT PRIMARY KEY, path TEXT, source TEXT, "
                            "received REAL, status TEXT, label TEXT, probs TEXT, error TEXT, engine TEXT, "
                            "classified REAL, batch INTEGER, forwarded INTEGER DEFAULT 0, "
                            "forward_attempts INTEGER DEFAULT 0, forward_next REAL DEFAULT 0, forward_error TEXT)")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(instances)")}
            if "content" not in columns:  # spools from before duplicates were told apart
                self.db.execute("ALTER TABLE instances ADD COLUMN content TEXT")

    def meta(self, key: str, value: str | None = None) -> str | None:
        with self.lock:
            if value is not None:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def add(self, uid: str, path: Path, source: str, content: str | None = None, not_applicable: str | None = None) -> bool:
        """Record a received instance (committed on return), pending classification or, with the reason in
        ``not_applicable``, recorded as nothing to classify; False if this UID was already received."""
        status = "not_applicable" if not_applicable else "pending"
        with self.lock:
            cur = self.db.execute("INSERT OR IGNORE INTO instances (uid, path, source, received, status, content, error) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                  (uid, str(path), source, time.time(), status, content, not_applicable))
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

    def finish(self, results: list[tuple[str, str | None, dict, str | None]], engine: str, now: float) -> list[str]:
        """Store results, each only on a still-pending row (so no instance ever gets two); the UIDs written."""
        n = len(results)
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            written = [uid for uid, label, probs, err in results if self.db.execute(
                "UPDATE instances SET status = ?, label = ?, probs = ?, error = ?, engine = ?, classified = ?, "
                "batch = ? WHERE uid = ? AND status = 'pending'",
                ("error" if err else "done", label, dumps(probs, indent=None), err, engine, now, n, uid)).rowcount]
            self.db.execute("COMMIT")
        return written

    def to_forward(self, limit: int = 16) -> list[tuple[str, str, str, str]]:
        """Classified instances whose SR the PACS has not acknowledged yet and whose back-off has passed."""
        with self.lock:
            return self.db.execute("SELECT uid, path, label, probs FROM instances WHERE status = 'done' AND "
                                   "forwarded = 0 AND forward_next <= ? ORDER BY classified LIMIT ?",
                                   (time.time(), limit)).fetchall()

    def forwarded(self, uid: str, error: str | None) -> None:
        """Record a forwarding attempt: acknowledged, or failed and retried after 1, 2, 4, … 60 s."""
        with self.lock:
            if error is None:
                self.db.execute("UPDATE instances SET forwarded = 1, forward_error = NULL, forward_attempts = "
                                "forward_attempts + 1 WHERE uid = ?", (uid,))
            else:
                self.db.execute("UPDATE instances SET forward_attempts = forward_attempts + 1, forward_error = ?, "
                                "forward_next = ? + MIN(60, 1 << MIN(forward_attempts, 6)) WHERE uid = ?",
                                (error[:200], time.time(), uid))

    def reset(self) -> None:
        with self.lock:
            self.db.execute("UPDATE instances SET status = 'pending', label = NULL, probs = NULL, error = NULL "
                            "WHERE status IN ('done', 'error')")

    def get(self, uid: str) -> dict | None:
        with self.lock:
            row = self.db.execute("SELECT uid, source, received, status, label, probs, error, engine, classified, "
                                  "batch, forwarded, forward_attempts, forward_error FROM instances WHERE uid = ?",
                                  (uid,)).fetchone()
        if row is None:
            return None
        keys = ("sop_instance_uid", "source", "received", "status", "label", "probs", "error", "engine_sha256",
                "classified", "batch_size", "forwarded", "forward_attempts", "forward_error")
        out = dict(zip(keys, row))
        out["probs"] = json.loads(out["probs"]) if out["probs"] else None
        return out

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

"""The spool from outside the node — `dcube-edge spool status | retry`, through the ledger's own API, safe while
the node runs (SQLite WAL) — and the lock that makes it one node's: ``spool/serve.lock``, held (``fcntl.flock``,
exclusive) for the node's life and released by the kernel when its process ends, however it ends."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO

from dcube_edge.errors import UserError

from .ledger import Ledger

LOCK = "serve.lock"


def hold(spool: Path) -> IO[str]:
    """Take the spool for this node, or refuse: another node on the same spool would deliver every result twice
    and race it for the ledger. Keep the returned file open for the node's life."""
    import fcntl

    spool.mkdir(exist_ok=True)
    handle = open(spool / LOCK, "a+")  # noqa: SIM115 — held open until the process ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(f"--spool {spool} is in use by another node ({holder}): one node per spool — stop that one, "
                        "or give this one its own --spool") from None
    try:  # who holds it, for the next one's message (the lock itself needs no space: a full disk still starts)
        handle.seek(0)
        handle.truncate()
        handle.write(f"dcube-edge serve pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
    except OSError:
        pass
    return handle


def open_ledger(spool: Path) -> Ledger:
    path = spool / "ledger.sqlite"
    if not path.is_file():
        raise UserError(f"{spool} is not a node's spool (no ledger.sqlite); give the folder passed to serve --spool")
    return Ledger(path)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0


def status(spool: Path) -> dict:
    """Instances by state, deliveries by destination and state, the dead letters, sizes and ages."""
    ledger = open_ledger(spool)
    try:
        return {"spool": str(spool), **ledger.sizes(), "instances": ledger.counts(),
                "deliveries": ledger.delivery_counts(), "dead": ledger.dead(),
                "bytes": {name: folder_bytes(spool / name) for name in ("instances", "rejected", "results")},
                "refused_files": len(list((spool / "rejected").glob("*.txt")))}
    finally:
        ledger.close()


def retry(spool: Path, uid: str | None = None) -> int:
    from .intake import UID

    if uid is not None and not UID.match(uid):
        raise UserError(f"--uid {uid[:40]!r}: a SOP Instance UID is digits and dots (e.g. 1.2.840.10008.1.2)")
    ledger = open_ledger(spool)
    try:
        return ledger.retry(uid)
    finally:
        ledger.close()

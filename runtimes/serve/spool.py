"""`dcube-edge spool status | retry`: a spool read (or its dead letters re-queued) from outside the node, through
the ledger's own API; safe while the node runs (SQLite WAL)."""
from __future__ import annotations

from pathlib import Path

from dcube_edge.errors import UserError

from .ledger import Ledger


def open_ledger(spool: Path) -> Ledger:
    path = spool / "ledger.sqlite"
    if not path.is_file():
        raise UserError(f"{spool} is not a node's spool (no ledger.sqlite); give the folder passed to serve --spool")
    return Ledger(path)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0


def status(spool: Path) -> dict:
    ledger = open_ledger(spool)
    try:
        return {"spool": str(spool), "instances": ledger.counts(), "deliveries": ledger.delivery_counts(),
                "dead": ledger.dead(), **ledger.sizes(),
                "bytes": {name: folder_bytes(spool / name) for name in ("instances", "rejected", "results")},
                "refused_files": len(list((spool / "rejected").glob("*.txt")))}
    finally:
        ledger.close()


def retry(spool: Path, uid: str | None = None) -> int:
    ledger = open_ledger(spool)
    try:
        return ledger.retry(uid)
    finally:
        ledger.close()

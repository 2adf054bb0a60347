"""What keeps a node healthy for months: the disk guard (free space checked every second; under ``--min-free``,
or after a write failed for lack of space, new instances are refused at the door — C-STORE 0xA700, HTTP 507 — and
``/readyz`` says so, until space is back) and retention (``--keep-days N``: pixel files of instances whose result
SR is kept, or that had nothing to classify, are deleted after N days; the SRs and ledger rows stay, so every
result can still be retrieved and delivered to a destination added later)."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("dcube_edge.serve")
RETENTION_EVERY_S = 600


FULL_CLEARS_AT = 16 << 20  # after a failed write, free space that lets the node take instances again


def guard(node: Node) -> None:
    """Trip and clear ``node.disk_low`` as free space crosses the watermark, and clear ``node.disk_full`` once
    space is back after a write failed; a line in the log each time."""
    while not node.stopping.wait(1.0):
        free = node.free_bytes()
        if node.disk_full.is_set() and free >= max(node.opts.min_free, FULL_CLEARS_AT):
            node.disk_full.clear()
            log.info("free space %.2f GB is back after the disk was full: accepting again", free / 1e9,
                     extra={"event": "disk-ok"})
        if not node.opts.min_free:
            node.disk_low.clear()
            continue
        if free < node.opts.min_free and not node.disk_low.is_set():
            node.disk_low.set()
            log.warning("free space %.2f GB is under the %.2f GB watermark: refusing new instances", free / 1e9,
                        node.opts.min_free / 1e9, extra={"event": "disk-low"})
        elif free >= node.opts.min_free and node.disk_low.is_set():
            node.disk_low.clear()
            log.info("free space %.2f GB is back over the watermark: accepting again", free / 1e9,
                     extra={"event": "disk-ok"})


def retention(node: Node) -> None:
    """A retention pass at start and every ten minutes, while ``keep_days`` is set."""
    while True:
        if node.opts.keep_days:
            node.paused_by_disk(lambda: purge(node, node.opts.keep_days))
        if node.stopping.wait(RETENTION_EVERY_S):
            return


def purge(node: Node, keep_days: int) -> int:
    """Delete the pixel files of settled instances (result SR kept, or nothing to classify) received more than
    ``keep_days`` ago; how many."""
    removed = 0
    for uid, path in node.ledger.settled_before(time.time() - keep_days * 86400):
        try:
            Path(path).unlink(missing_ok=True)
        except OSError as e:
            log.warning("could not delete %s: %s", path, e, extra={"event": "retention", "uid": uid})
            continue
        node.ledger.purged(uid)
        removed += 1
    if removed:
        log.info("deleted the pixel files of %d settled instances older than %d days", removed, keep_days,
                 extra={"event": "retention"})
    return removed

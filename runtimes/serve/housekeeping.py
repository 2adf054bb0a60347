"""What keeps a node healthy for months: the disk guard (free space checked every second; under ``--min-free``
new instances are refused at the door — C-STORE 0xA700, HTTP 507 — and ``/readyz`` says so, until it is back) and
retention (``--keep-days N``: pixel files of instances whose results were delivered everywhere, or that had nothing
to classify, are deleted after N days; their ledger rows stay)."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("dcube_edge.serve")
RETENTION_EVERY_S = 600


def guard(node: Node) -> None:
    """Trip and clear ``node.disk_low`` as free space crosses the watermark; a line in the log each time."""
    while not node.stopping.wait(1.0):
        if not node.opts.min_free:
            node.disk_low.clear()
            continue
        free = node.free_bytes()
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
            purge(node, node.opts.keep_days)
        if node.stopping.wait(RETENTION_EVERY_S):
            return


def purge(node: Node, keep_days: int) -> int:
    """Delete the pixel files of settled instances received more than ``keep_days`` ago; how many."""
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

"""What the node's parts share: the settings, the engine, the ledger, the result SRs, the metrics and the locks
and signals between threads. The service makes one; every part (SCP, batcher, HTTP, forwarder) is given it."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..classifier import Classifier
    from .audit import AuditTrail
    from .ledger import Ledger
    from .metrics import Metrics
    from .options import ServeOptions
    from .reports import Reports

from .disk import is_disk_full

log = logging.getLogger("dcube_edge.serve")


class Gate:
    """The door instances come in by: open while the node serves; closed when it stops, after which no instance
    is taken, and :meth:`close` waits for those already inside to be written and recorded."""

    def __init__(self) -> None:
        self.inside, self.open, self.changed = 0, True, threading.Condition()

    def enter(self) -> bool:
        with self.changed:
            if self.open:
                self.inside += 1
            return self.open

    def leave(self) -> None:
        with self.changed:
            self.inside -= 1
            self.changed.notify_all()

    def close(self, timeout: float) -> int:
        """Close the door and wait for those inside; how many were still inside at the timeout."""
        with self.changed:
            self.open = False
            self.changed.wait_for(lambda: self.inside == 0, timeout)
            return self.inside


@dataclass
class Node:
    opts: ServeOptions
    clf: Classifier
    engine_hash: str
    ledger: Ledger
    metrics: Metrics
    destinations: tuple[str, ...] = ()  # where results are delivered (forwarder destination names)
    audit: AuditTrail | None = None
    reports: Reports | None = None
    # engines.Engines: the active engine and the shadow, switched between batches; monitor.alerts.Monitor: compares
    # the stream with the engine's reference (docs/monitoring.md). Typed Any: both modules take a Node.
    engines: Any = None
    monitor: Any = None
    ready: threading.Event = field(default_factory=threading.Event)  # the engine is loaded and warmed
    disk_low: threading.Event = field(default_factory=threading.Event)  # free space is under --min-free
    disk_full: threading.Event = field(default_factory=threading.Event)  # a write failed for lack of space
    engine_lock: threading.Lock = field(default_factory=threading.Lock)  # an OpenVINO infer request is not thread-safe
    store_lock: threading.Lock = field(default_factory=threading.Lock)  # a UID's look-up, file and ledger row together
    gate: Gate = field(default_factory=Gate)
    stopping: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)  # a new instance is pending
    classified: threading.Condition = field(default_factory=threading.Condition)  # new results wait for their SRs
    failed: str | None = None  # the part whose thread died of an unexpected error (the node then stops)
    full_reason: str = ""

    def notify_arrival(self) -> None:
        with self.arrived:
            self.arrived.notify()

    def free_bytes(self) -> int:
        import shutil

        return shutil.disk_usage(self.opts.spool).free

    def out_of_space(self) -> str | None:
        """Why new instances must be refused now (a write failed for lack of space, or free space is under the
        watermark), or None."""
        if self.disk_full.is_set():
            return self.full_reason
        if not self.opts.min_free:
            return None
        free = self.free_bytes()
        if free < self.opts.min_free:
            self.disk_low.set()
            return (f"out of resources: {free / 1e9:.2f} GB free on the spool's disk, under the "
                    f"{self.opts.min_free / 1e9:.2f} GB watermark (--min-free)")
        return None

    def full(self, what: str) -> str:
        """A write failed for lack of space: new instances are refused until the disk guard sees space again (a
        log line the first time). Returns the reason a sender is given."""
        self.full_reason = f"out of resources: {what}; new instances are refused until space is freed"
        if not self.disk_full.is_set():
            self.disk_full.set()
            log.error("%s", self.full_reason, extra={"event": "disk-full"})
        return self.full_reason

    def paused_by_disk(self, work: Callable[[], None]) -> bool:
        """Run ``work``; False (nothing lost: it is done again later) where it failed for lack of space."""
        try:
            work()
            return True
        except Exception as e:
            if not is_disk_full(e):
                raise
            self.full(f"a write failed ({e})")
            return False

    def supervise(self, name: str, target: Callable[..., None], *args) -> threading.Thread:
        """A daemon thread for one of the node's parts. An error nothing inside the part expected (a failing disk,
        a corrupt ledger, a bug) is logged with its traceback and stops the whole node, which exits 70 so the
        service manager restarts it: a node whose batcher or forwarder died silently would go on acknowledging
        images and never classify or deliver them. Nothing acknowledged is lost; the ledger resumes it. A full
        disk is not such an error: the parts pause on it (:meth:`paused_by_disk`)."""
        def run() -> None:
            try:
                target(*args)
                if not self.stopping.is_set():
                    raise RuntimeError("it returned while the node was running")
            except BaseException as e:  # noqa: BLE001 — any escape ends the part; the node must not outlive it
                log.critical("the %s thread failed (%s: %s)%s", name, type(e).__name__, e,
                             " while stopping" if self.stopping.is_set() else ": stopping the node", exc_info=True,
                             extra={"event": "part-failed"})
                if self.failed is None and not self.stopping.is_set():  # an error on the way out is not a failure
                    self.failed = f"the {name} thread ({type(e).__name__}: {e})"
                self.stopping.set()

        return threading.Thread(target=run, name=name, daemon=True)

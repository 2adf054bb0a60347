"""What the node's parts share: the settings, the engine, the ledger, the metrics and the locks and signals
between threads. The service makes one; every part (SCP, batcher, HTTP, forwarder) is given it."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..classifier import Classifier
from .audit import AuditTrail
from .ledger import Ledger
from .metrics import Metrics
from .options import ServeOptions

log = logging.getLogger("dcube_edge.serve")


@dataclass
class Node:
    opts: ServeOptions
    clf: Classifier
    engine_hash: str
    ledger: Ledger
    metrics: Metrics
    destinations: tuple[str, ...] = ()  # where results are delivered (forwarder destination names)
    audit: AuditTrail | None = None
    ready: threading.Event = field(default_factory=threading.Event)  # the engine is loaded and warmed
    disk_low: threading.Event = field(default_factory=threading.Event)  # free space is under --min-free
    engine_lock: threading.Lock = field(default_factory=threading.Lock)  # an OpenVINO infer request is not thread-safe
    store_lock: threading.Lock = field(default_factory=threading.Lock)  # a UID's look-up, file and ledger row together
    stopping: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)  # a new instance is pending
    failed: str | None = None  # the part whose thread died of an unexpected error (the node then stops)

    def notify_arrival(self) -> None:
        with self.arrived:
            self.arrived.notify()

    def free_bytes(self) -> int:
        import shutil

        return shutil.disk_usage(self.opts.spool).free

    def out_of_space(self) -> str | None:
        """Why new instances must be refused now (free space under the watermark), or None."""
        if not self.opts.min_free:
            return None
        free = self.free_bytes()
        if free < self.opts.min_free:
            self.disk_low.set()
            return (f"out of resources: {free / 1e9:.2f} GB free on the spool's disk, under the "
                    f"{self.opts.min_free / 1e9:.2f} GB watermark")
        return None

    def supervise(self, name: str, target: Callable[..., None], *args) -> threading.Thread:
        """A daemon thread for one of the node's parts. An error nothing inside the part expected (a failing disk,
        a corrupt ledger, a bug) is logged with its traceback and stops the whole node, which exits 70 so the
        service manager restarts it: a node whose batcher or forwarder died silently would go on acknowledging
        images and never classify or deliver them. Nothing acknowledged is lost; the ledger resumes it."""
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

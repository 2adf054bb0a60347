"""``dcube-edge serve``: one engine, the spool, the ledger and the node's parts (SCP, batcher, HTTP,
forwarders, disk guard, retention) in one process. The engine's hash is stored with the spool: another engine
needs another spool (or ``reclassify``); one node holds a spool at a time (its lock).

Start: every check that needs the machine first (:func:`.options.preflight`), the engine, the spool's lock, then
the ledger (nothing is written to it that is already there, so a node starts on a full disk and says so);
"serving" is reported only once both servers listen. Stop (SIGINT or SIGTERM): the door closes (no instance is
taken after it; those being written finish), the DICOM and HTTP servers stop listening, associations in
progress are aborted (their unacknowledged instances stay with the senders), the batch in progress finishes,
what is still pending is reported (it is classified at the next start), the audit trail's Application Stop is
the last record, exit 130 / 143. A second signal exits at once. SIGHUP re-reads the ``--config`` file: a changed
live setting (``retry_for``, ``min_free``, ``keep_days``) applies, others are named as needing a restart, a file
that does not read is refused with the reason and the node goes on with the settings it has."""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import ssl
from collections.abc import Callable

from dcube_edge.errors import UserError

from ..files import sha256
from . import engines, housekeeping, shadow
from .audit import AuditTrail
from .batcher import Batcher
from .engines import Engines
from .forwarder import Forwarder, destinations
from .http import HttpApi, build_server
from .ledger import Ledger
from .metrics import Metrics
from .monitor.alerts import Monitor
from .node import Node
from .options import ServeOptions, preflight, specs
from .reporter import Reporter
from .reports import Reports
from .scp import StorageSCP
from .spool import hold
from .tls import server_context

log = logging.getLogger("dcube_edge.serve")
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
EX_SOFTWARE = 70  # sysexits.h: a part of the node failed unexpectedly (restart it)
DRAIN_S = 30  # the longest a stop waits for instances being written and the batch in progress


class Service:
    """The engine, the spool, the ledger, the batcher, the DICOM and HTTP servers."""

    def __init__(self, opts: ServeOptions, reload: Callable[[], ServeOptions] | None = None):
        from .. import load

        preflight(opts)
        clf = load(opts.engine, trusted_keys=list(opts.trusted_key) or None)
        clf.max_frames = opts.max_frames  # the cap the intake, the batcher and POST /v1/classify read by
        engine_hash = sha256(clf.manifest.path)
        shadowing = shadow_engine(opts, list(clf.classes), engine_hash)
        self.lock = hold(opts.spool)
        if not opts.accept_modality:  # what the engine was trained on, where its export recorded it
            opts = dataclasses.replace(opts, accept_modality=tuple(clf.manifest.record.input.modalities or ()))
        for sub in ("instances", "rejected", "results"):
            (opts.spool / sub).mkdir(exist_ok=True)
        for stale in (opts.spool / "instances").glob(".*.partial"):
            stale.unlink()  # a write a kill interrupted: never acknowledged, so the sender still has it
        ledger = Ledger(opts.spool / "ledger.sqlite")
        self.reset = 0
        recorded = ledger.meta("engine_sha256")
        if recorded and recorded != engine_hash and engines.known(ledger, engine_hash):
            log.warning("the spool's last active engine was %s… (switched to while serving); starting with %s as "
                        "configured: update the configuration to keep a switch", recorded[:12], opts.engine,
                        extra={"event": "engine-configured"})
        elif recorded and recorded != engine_hash:
            if not opts.reclassify:
                raise UserError(f"{opts.spool} holds results of another engine (manifest sha256 {recorded[:12]}…); "
                                "use a new --spool, or pass --reclassify to classify everything again with this one")
            self.reset = ledger.reset()
        ledger.meta("engine_sha256", engine_hash)
        self.node = Node(opts, clf, engine_hash, ledger, Metrics(), audit=AuditTrail(opts.audit_target(), opts.ae_title))
        self.node.reports = Reports(opts.spool / "results", ledger, clf.manifest, engine_hash)
        shadow.prepare(ledger)
        self.node.engines = Engines(self.node, engines.Slot(clf.manifest.dir, clf, engine_hash), shadowing)
        self.node.monitor = Monitor(self.node)
        self.destinations = destinations(self.node)
        self.node.destinations = tuple(d.name for d in self.destinations)
        self.node.paused_by_disk(lambda: ledger.ensure_deliveries(self.node.destinations))
        self.clf, self.ledger, self.reload = clf, ledger, reload
        self.scp, self.batcher = StorageSCP(self.node), Batcher(self.node)
        self.http = HttpApi(self.node, self.scp.intake)
        self.signal: int | None = None

    @property
    def opts(self) -> ServeOptions:
        return self.node.opts

    def run(self, banner=print) -> int:
        """Serve until SIGINT or SIGTERM; the exit code (130 or 143)."""
        self.install_signals()
        with self.clf:
            self.node.audit.application("start", f"engine {self.opts.engine} (manifest sha256 {self.node.engine_hash}) "
                                                 "loaded")
            dicom = self.scp.start(self.tls_context(client_auth=True) if self.opts.tls else None)
            http = self.http_server()
            part = self.node.supervise
            threads = [part("http", http.serve), part("batcher", self.batcher.run),
                       part("reporter", Reporter(self.node).run),
                       part("disk guard", housekeeping.guard, self.node),
                       part("retention", housekeeping.retention, self.node),
                       *(part(f"forward {d.name}", Forwarder(self.node, d).run) for d in self.destinations)]
            for t in threads:
                t.start()
            self.warm_up()
            banner(self.describe())
            try:
                self.node.stopping.wait()
            finally:
                self.stop(dicom, http, threads, banner)
        return EX_SOFTWARE if self.node.failed else EXIT.get(self.signal, 0)

    def stop(self, dicom, http, threads, banner) -> None:
        """Nothing comes in after the door closes; what is inside finishes; then the report and the last record."""
        import time

        self.node.stopping.set()
        deadline = time.monotonic() + DRAIN_S
        left = self.node.gate.close(timeout=DRAIN_S)
        dicom.shutdown()
        associations = list(dicom.active_associations)
        for assoc in associations:
            assoc.abort()  # its unacknowledged instance stays with the sender
        http.stop()
        for t in [*associations, *threads[1:]]:  # handlers returning, the batch and deliveries in progress
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        counts = self.ledger.counts()
        pending = counts.get("pending", 0)
        waiting = sum(c.get("pending", 0) for c in self.ledger.delivery_counts().values())
        log.info("%d instance(s) pending classification and %d delivery(ies) pending, resumed at the next "
                 "start", pending, waiting, extra={"event": "stopped"})
        banner(f"stopped: {pending} instance(s) waiting to be classified, {waiting} result delivery(ies) waiting; both "
               f"resume at the next start on {self.opts.spool}" + (f" ({left} write(s) still unfinished)" if left else ""))
        if self.node.failed:
            banner(f"error: stopped because {self.node.failed} failed; exit {EX_SOFTWARE}: the service manager "
                   "restarts the node (systemd: Restart=on-failure) and what was acknowledged resumes")
        self.node.audit.application("stop", f"stopped because {self.node.failed} failed" if self.node.failed
                                    else f"stopped by signal {self.signal}")

    def install_signals(self) -> None:
        def stop(signum, frame) -> None:
            if self.signal is not None:  # a second signal: out now, what is written stays written
                os._exit(EXIT.get(signum, 1))
            self.signal = signum
            self.node.stopping.set()

        for signum in EXIT:
            signal.signal(signum, stop)
        if hasattr(signal, "SIGHUP"):  # never its default action (ending the process)
            signal.signal(signal.SIGHUP, lambda signum, frame: self.apply())

    def apply(self) -> None:
        """SIGHUP: the configuration read again. A file that does not read, or holds a bad value, changes nothing
        (the node keeps running with the settings it has, and says why); a good one's changed live settings apply
        at once, its other changes are named as needing a restart."""
        if self.reload is None:
            log.warning("SIGHUP: nothing to re-read (the node was started without --config)",
                        extra={"event": "reload-refused"})
            return
        try:
            fresh = self.reload()
        except Exception as e:  # noqa: BLE001 — whatever the file holds, a reload never takes the node down
            log.error("configuration not re-read, the node keeps its settings: %s", e if isinstance(e, UserError) else
                      f"{type(e).__name__}: {e}", extra={"event": "reload-refused"})
            return
        live, restart = self.opts.changes(fresh)
        self.node.opts = dataclasses.replace(self.opts, **live)
        said = ", ".join(f"{k} now {specs()[k][0].words(v)}" for k, v in live.items())
        log.info("configuration re-read: %s%s", said or "no live change",
                 f"; {', '.join(restart)} changed: takes effect at the next start" if restart else "",
                 extra={"event": "reloaded"})

    def warm_up(self) -> None:
        """One inference on zero images at the batch shape the batcher forms, then ready."""
        import numpy as np

        size, batch = self.clf.spec.size, min(self.opts.max_batch, self.clf.manifest.max_batch)
        with self.node.engine_lock:
            self.clf.logits(np.zeros((batch, 1, size, size), np.float32))
        self.node.ready.set()
        log.info("engine warmed at batch %d: ready", batch, extra={"event": "ready"})

    def tls_context(self, client_auth: bool) -> ssl.SSLContext:
        """The TLS server context; each refused handshake is audited (Security Alert, Node Authentication)."""
        return server_context(self.opts.tls_cert, self.opts.tls_key, self.opts.tls_ca if client_auth else None,
                              on_refused=self.tls_refused)

    def tls_refused(self, peer: str, why: str) -> None:
        log.warning("connection refused: %s", why, extra={"event": "tls-refused", "address": peer})
        self.node.audit.association(peer, peer, accepted=False, why=why)

    def http_server(self):
        return build_server(self.node, self.http, self.tls_context(client_auth=False) if self.opts.tls else None)

    def describe(self) -> str:
        o = self.opts
        scheme = "https" if o.tls else "http"
        lines = [f"serving {o.engine} ({self.clf.manifest.backend} {self.clf.manifest.precision})"
                 + (f", shadow {o.shadow}: its results recorded, never delivered" if o.shadow else ""),
                 f"  DICOM  {o.ae_title}@{o.host}:{o.dicom_port}" + (" over TLS" if o.tls else "")
                 + (f", calling AE titles {', '.join(o.allow_ae)}" if o.allow_ae else ", any calling AE title")
                 + (", client certificates required" if o.tls_ca else ""),
                 f"  HTTP   {scheme}://{o.host}:{o.http_port} (results, DICOMweb, /readyz, /metrics)",
                 f"  spool  {o.spool}: " + (", ".join(f"{n} {k}" for k, n in sorted(self.ledger.counts().items()))
                                            or "empty"),
                 f"  audit  {o.audit_target()}"]
        if self.reset:
            lines.append(f"  reclassifying {self.reset} instance(s) with this engine")
        if self.destinations:
            lines.append("  results to " + ", ".join(d.name for d in self.destinations))
        if self.node.out_of_space() is None and (free := self.node.free_bytes()) < housekeeping.FULL_CLEARS_AT:
            self.node.full(f"{free / 1e6:.1f} MB free on the spool's disk at the start")  # even with --min-free 0
        if full := self.node.out_of_space():
            lines.append(f"  DISK   {full}: new instances are refused (C-STORE 0xA700, HTTP 507) until space is freed")
            log.warning("%s", full, extra={"event": "disk-low"})
        if o.reachable and not o.tls:
            lines.append(f"  WARNING: {o.host} is reachable from the network and nothing is encrypted: pixels, "
                         "results and the token cross it in clear; pass --tls-cert and --tls-key")
            log.warning("reachable from the network without TLS", extra={"event": "insecure"})
        return "\n".join(lines)


def shadow_engine(opts: ServeOptions, classes: list[str], active: str) -> engines.Slot | None:
    """The ``--shadow`` engine, checked as an engine to be made active would be, and not the active engine
    (manifest sha256 ``active``) itself (refused naming the option)."""
    if opts.shadow is None:
        return None
    try:
        slot = engines.verified(opts.shadow, opts.trusted_key, classes)
    except UserError as e:
        raise UserError(f"--shadow {opts.shadow}: {e}") from None
    if slot.sha256 == active:
        raise UserError(f"--shadow {opts.shadow}: it is the active engine itself; give another engine to compare")
    return slot

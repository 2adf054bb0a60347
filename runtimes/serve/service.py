"""``dcube-edge serve``: one engine, the spool, the ledger and the node's parts (SCP, batcher, HTTP,
forwarders, disk guard, retention) in one process. The engine's hash is stored with the spool: another engine
needs another spool (or ``reclassify``).

Start: every check that needs the machine first (:func:`.options.preflight`), then the engine, then the spool;
"serving" is reported only once both servers listen. Stop (SIGINT or SIGTERM): the DICOM and HTTP servers close
at once (an association in progress is aborted, so its unacknowledged instance stays with the sender), the batch
in progress finishes, what is still pending is reported (it is classified at the next start), exit 130 / 143. A
second signal exits at once. SIGHUP re-reads the ``--config`` file's live settings (watermark, retention,
attempts)."""
from __future__ import annotations

import logging
import os
import signal
import ssl
from pathlib import Path

from dcube_edge.errors import UserError

from ..files import sha256
from . import housekeeping
from .audit import AuditTrail
from .batcher import Batcher
from .forwarder import Forwarder, destinations
from .http import HttpApi
from .ledger import Ledger
from .metrics import Metrics
from .node import Node
from .options import ServeOptions, preflight
from .scp import StorageSCP

log = logging.getLogger("dcube_edge.serve")
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
EX_SOFTWARE = 70  # sysexits.h: a part of the node failed unexpectedly (restart it)


class Service:
    """The engine, the spool, the ledger, the batcher, the DICOM and HTTP servers."""

    def __init__(self, engine_dir: Path, opts: ServeOptions, trusted_keys: list[Path] | None = None,
                 reload=None):
        from .. import load

        preflight(opts)
        clf = load(engine_dir, trusted_keys=trusted_keys)
        if not opts.accept_modality:  # what the engine was trained on, where its export recorded it
            opts.accept_modality = clf.manifest.record.input.modalities
        engine_hash = sha256(Path(engine_dir) / "manifest.json")
        for sub in ("instances", "rejected", "results"):
            (opts.spool / sub).mkdir(parents=True, exist_ok=True)
        for stale in (opts.spool / "instances").glob(".*.partial"):
            stale.unlink()  # a write a kill interrupted: never acknowledged, so the sender still has it
        ledger = Ledger(opts.spool / "ledger.sqlite")
        recorded = ledger.meta("engine_sha256")
        if recorded and recorded != engine_hash:
            if not opts.reclassify:
                raise UserError(f"{opts.spool} holds results of another engine (manifest sha256 {recorded[:12]}…); "
                                "use a new --spool, or pass --reclassify to classify everything again with this one")
            ledger.reset()
        ledger.meta("engine_sha256", engine_hash)
        self.node = Node(opts, clf, engine_hash, ledger, Metrics(), audit=AuditTrail(opts.audit_target(), opts.ae_title))
        self.destinations = destinations(self.node)
        self.node.destinations = tuple(d.name for d in self.destinations)
        ledger.ensure_deliveries(self.node.destinations)
        self.opts, self.clf, self.ledger, self.engine_dir, self.reload = opts, clf, ledger, Path(engine_dir), reload
        self.scp, self.batcher = StorageSCP(self.node), Batcher(self.node)
        self.http = HttpApi(self.node, self.scp.intake)
        self.signal: int | None = None

    def run(self, banner=print) -> int:
        """Serve until SIGINT or SIGTERM; the exit code (130 or 143)."""
        self.install_signals()
        with self.clf:
            self.node.audit.application("start", f"engine {self.engine_dir} (manifest sha256 {self.node.engine_hash}) loaded")
            dicom = self.scp.start(self.tls_context(client_auth=True) if self.opts.tls else None)
            http = self.http_server()
            part = self.node.supervise
            threads = [part("http", http.serve), part("batcher", self.batcher.run),
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
                dicom.shutdown()
                http.stop()
                threads[1].join(timeout=30)  # the batch in progress
                pending = self.ledger.counts().get("pending", 0)
                waiting = sum(c.get("pending", 0) for c in self.ledger.delivery_counts().values())
                log.info("stopped: %d instance(s) pending classification and %d delivery(ies) pending, resumed at the "
                         "next start", pending, waiting, extra={"event": "stopped"})
                banner(f"stopped: {pending} instance(s) waiting to be classified, {waiting} result delivery(ies) "
                       f"waiting; both resume at the next start on {self.opts.spool}")
                if self.node.failed:
                    banner(f"error: stopped because {self.node.failed} failed; exit {EX_SOFTWARE}: the service "
                           f"manager restarts the node (systemd: Restart=on-failure) and what was acknowledged resumes")
                self.node.audit.application("stop", f"stopped because {self.node.failed} failed" if self.node.failed
                                            else f"stopped by signal {self.signal}")
        return EX_SOFTWARE if self.node.failed else EXIT.get(self.signal, 0)

    def install_signals(self) -> None:
        def stop(signum, frame) -> None:
            if self.signal is not None:  # a second signal: out now, what is written stays written
                os._exit(EXIT.get(signum, 1))
            self.signal = signum
            self.node.stopping.set()

        for signum in EXIT:
            signal.signal(signum, stop)
        if self.reload is not None and hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda signum, frame: self.apply(self.reload()))

    def apply(self, fresh: ServeOptions) -> None:
        """The live settings of a re-read configuration (SIGHUP)."""
        for key in ("min_free", "keep_days", "max_attempts"):
            setattr(self.opts, key, getattr(fresh, key))
        log.info("configuration re-read: min_free %d B, keep_days %s, max_attempts %d", self.opts.min_free,
                 self.opts.keep_days, self.opts.max_attempts, extra={"event": "reloaded"})

    def warm_up(self) -> None:
        """One inference on zero images at the batch shape the batcher forms, then ready."""
        import numpy as np

        size, batch = self.clf.spec.size, min(self.opts.max_batch, self.clf.manifest.max_batch)
        with self.node.engine_lock:
            self.clf.logits(np.zeros((batch, 1, size, size), np.float32))
        self.node.ready.set()
        log.info("engine warmed at batch %d: ready", batch, extra={"event": "ready"})

    def tls_context(self, client_auth: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.opts.tls_cert, self.opts.tls_key)
        if client_auth and self.opts.tls_ca:
            context.load_verify_locations(self.opts.tls_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def http_server(self):
        from cheroot import wsgi

        server = wsgi.Server((self.opts.host, self.opts.http_port), self.http, numthreads=4,
                             server_name="dcube-edge")
        if self.opts.tls:
            from cheroot.ssl.builtin import BuiltinSSLAdapter

            server.ssl_adapter = BuiltinSSLAdapter(str(self.opts.tls_cert), str(self.opts.tls_key))
        server.prepare()  # binds now: a port taken since the preflight fails here, before "serving"
        return server

    def describe(self) -> str:
        o = self.opts
        scheme = "https" if o.tls else "http"
        lines = [f"serving {self.engine_dir} ({self.clf.manifest.backend} {self.clf.manifest.precision})",
                 f"  DICOM  {o.ae_title}@{o.host}:{o.dicom_port}" + (" over TLS" if o.tls else "")
                 + (f", calling AE titles {', '.join(o.allow_ae)}" if o.allow_ae else ", any calling AE title")
                 + (", client certificates required" if o.tls_ca else ""),
                 f"  HTTP   {scheme}://{o.host}:{o.http_port} (results, DICOMweb, /readyz, /metrics)",
                 f"  spool  {o.spool}: " + ", ".join(f"{n} {k}" for k, n in sorted(self.ledger.counts().items())),
                 f"  audit  {o.audit_target()}"]
        if self.destinations:
            lines.append("  results to " + ", ".join(d.name for d in self.destinations))
        if o.reachable and not o.tls:
            lines.append(f"  WARNING: {o.host} is reachable from the network and nothing is encrypted: pixels, "
                         "results and the token cross it in clear; pass --tls-cert and --tls-key")
            log.warning("reachable from the network without TLS", extra={"event": "insecure"})
        return "\n".join(lines)

"""``dcube-edge serve``: one engine, the spool, the ledger and the node's parts (SCP, batcher, HTTP,
forwarder) in one process. The engine's hash is stored with the spool: another engine needs another spool
(or ``reclassify``)."""
from __future__ import annotations

import threading
from pathlib import Path

from dcube_edge.errors import UserError

from ..files import sha256
from .batcher import Batcher
from .forwarder import Forwarder, destinations
from .http import HttpApi
from .ledger import Ledger
from .metrics import Metrics
from .node import Node
from .options import ServeOptions
from .scp import StorageSCP


class Service:
    """The engine, the spool, the ledger, the batcher, the DICOM and HTTP servers."""

    def __init__(self, engine_dir: Path, opts: ServeOptions, trusted_keys: list[Path] | None = None):
        from .. import load

        clf = load(engine_dir, trusted_keys=trusted_keys)
        engine_hash = sha256(Path(engine_dir) / "manifest.json")
        for sub in ("instances", "rejected"):
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
        self.node = Node(opts, clf, engine_hash, ledger, Metrics())
        self.destinations = destinations(self.node)
        self.node.destinations = tuple(d.name for d in self.destinations)
        ledger.ensure_deliveries(self.node.destinations)
        self.opts, self.clf, self.ledger = opts, clf, ledger
        self.scp, self.batcher = StorageSCP(self.node), Batcher(self.node)
        self.http = HttpApi(self.node, self.scp.intake)

    def run(self) -> None:
        """Serve until interrupted; the DICOM server, the batcher and waitress share the process."""
        from waitress import create_server

        with self.clf:
            dicom = self.scp.start()
            worker = threading.Thread(target=self.batcher.run, name="batcher", daemon=True)
            worker.start()
            for destination in self.destinations:
                threading.Thread(target=Forwarder(self.node, destination).run, name=f"forward {destination.name}",
                                 daemon=True).start()
            http = create_server(self.http, host=self.opts.host, port=self.opts.http_port, threads=4)
            try:
                http.run()
            except KeyboardInterrupt:
                pass
            finally:
                self.node.stopping.set()
                dicom.shutdown()
                http.close()
                worker.join(timeout=5)

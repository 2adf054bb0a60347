"""The node's engines: the active one (its results are delivered) and optionally a shadow (``--shadow ENGINE``:
it classifies every instance too, its results are recorded in the ledger's ``shadow_results`` and never delivered;
:mod:`.shadow`). ``POST /v1/engine/promote`` makes the shadow active (the active one becomes the shadow) and
``POST /v1/engine/rollback`` goes back to the engine active before the last switch. A switch is made by the batcher
between two batches, after every result of the outgoing engine has its SR, so no association, instance or result is
lost and every result names the engine that produced it. An engine becomes active only after it is verified again
(hashes, bound facts, the signature where ``--trusted-key`` is given, its export parity within tolerance, the same
classes, one finite inference); each switch, and each refusal, is one history row (``engine_history``), one log line
and one audit record."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dcube_edge.errors import UserError

from ..files import sha256
from .ledger import Ledger
from .records import iso

if TYPE_CHECKING:
    from ..classifier import Classifier
    from .node import Node

log = logging.getLogger("dcube_edge.serve")
TABLES = ("CREATE TABLE IF NOT EXISTS engines (sha256 TEXT PRIMARY KEY, path TEXT, name TEXT)",
          "CREATE TABLE IF NOT EXISTS engine_history (at REAL, action TEXT, active TEXT, shadow TEXT, outcome TEXT)")
DRAIN_S = 60  # the longest a switch waits for the outgoing engine's SRs


@dataclass
class Slot:
    """An engine the node holds: its folder, classifier and manifest sha256."""

    path: Path
    clf: Classifier
    sha256: str

    @property
    def name(self) -> str:
        m = self.clf.manifest
        return f"{m.record.graph.model} {m.backend} {m.precision}, exported {m.record.provenance.created or '?'}"


def verified(path: Path, trusted_keys: tuple[Path, ...], classes: list[str] | None = None) -> Slot:
    """The engine at ``path``, loaded only if it passes every check an active engine must (raises UserError
    naming the one it fails)."""
    from .. import load

    clf = load(path, trusted_keys=list(trusted_keys) or None)
    parity = clf.manifest.record.parity
    if parity is not None and parity.within_tolerance is False:
        raise UserError(f"{path}: its export measured parity outside the precision's tolerance; it is not made active")
    if classes is not None and list(clf.classes) != list(classes):
        raise UserError(f"{path} decides between {', '.join(clf.classes)}, the node between {', '.join(classes)}: "
                        "a shadow or a promoted engine must have the same classes in the same order")
    size = clf.spec.size
    clf.logits(np.zeros((1, 1, size, size), np.float32))  # NonFiniteOutput where it cannot infer
    return Slot(Path(path), clf, sha256(Path(path) / "manifest.json"))


def prepare(ledger: Ledger) -> None:
    for create in TABLES:
        ledger.write(create)


def remember(ledger: Ledger, slot: Slot) -> None:
    ledger.write("INSERT OR REPLACE INTO engines VALUES (?, ?, ?)", slot.sha256, str(slot.path), slot.name)


def known(ledger: Ledger, engine: str) -> bool:
    """Whether this engine was active or shadow on this spool before (a node may start on it again)."""
    prepare(ledger)
    return bool(ledger.query("SELECT 1 FROM engines WHERE sha256 = ?", engine))


def named(ledger: Ledger, engine: str | None) -> dict | None:
    rows = ledger.query("SELECT sha256, path, name FROM engines WHERE sha256 = ?", engine) if engine else []
    return {"sha256": rows[0][0], "path": rows[0][1], "name": rows[0][2]} if rows else None


def history(ledger: Ledger) -> list[dict]:
    prepare(ledger)
    return [{"at": iso(at), "action": action, "active": active, "shadow": shadow, "outcome": outcome}
            for at, action, active, shadow, outcome in ledger.query(
                "SELECT at, action, active, shadow, outcome FROM engine_history ORDER BY at")]


class Engines:
    """The active engine and the shadow, and the switches the batcher makes between batches."""

    def __init__(self, node: Node, active: Slot, shadow: Slot | None = None):
        self.node, self.active, self.shadow = node, active, shadow
        self.asked: tuple[str, threading.Event, dict] | None = None
        self.lock = threading.Lock()
        prepare(node.ledger)  # no write where the tables exist: a node starts on a full disk and says so
        node.paused_by_disk(self.started)

    def started(self) -> None:
        for slot in (self.active, self.shadow):
            if slot is not None:
                remember(self.node.ledger, slot)
        self.record("start", "active" + (" with a shadow" if self.shadow else ""))

    def record(self, action: str, outcome: str) -> None:
        self.node.ledger.write("INSERT INTO engine_history VALUES (?, ?, ?, ?, ?)", time.time(), action,
                               self.active.sha256, self.shadow.sha256 if self.shadow else None, outcome)

    def ask(self, action: str, timeout: float = 120) -> dict:
        """Promote or roll back: the batcher makes the switch between two batches; its outcome."""
        done, answer = threading.Event(), dict[str, object]()
        with self.lock:
            if self.asked is not None:
                return {"error": "another switch is in progress"}
            self.asked = (action, done, answer)
        with self.node.arrived:
            self.node.arrived.notify()
        if not done.wait(timeout):
            return {"error": f"the switch did not happen within {timeout:.0f} s (the batcher is busy); it still may"}
        return answer

    def between_batches(self) -> None:
        """The batcher's turn: make the switch asked for, if any."""
        with self.lock:
            asked, self.asked = self.asked, None
        if asked is None:
            return
        action, done, answer = asked
        try:
            answer.update(self.switch(action))
        except UserError as e:
            self.record(action, f"refused: {e}")
            log.error("engine %s refused: %s", action, e, extra={"event": "engine-refused"})
            if self.node.audit is not None:
                self.node.audit.switched(f"engine {action} refused: {e}", refused=True)
            answer["error"] = str(e)
        finally:
            done.set()

    def target(self, action: str) -> Path:
        if action == "promote":
            if self.shadow is None:
                raise UserError("there is no shadow engine to promote (start the node with --shadow ENGINE)")
            return self.shadow.path
        if action != "rollback":
            raise UserError(f"unknown engine action {action!r}: promote or rollback")
        before = [h for h in history(self.node.ledger) if h["action"] in ("promote", "rollback")
                  and h["outcome"].startswith("switched") and h["active"] == self.active.sha256]
        previous = named(self.node.ledger, before[-1]["shadow"]) if before else None
        if previous is None:
            raise UserError("nothing to roll back to: no switch made this engine active")
        return Path(previous["path"])

    def switch(self, action: str) -> dict:
        """Verify the incoming engine, let the outgoing one's SRs be made, then swap (under the engine lock)."""
        incoming = verified(self.target(action), self.node.opts.trusted_key, list(self.active.clf.classes))
        outgoing = self.active
        deadline = time.monotonic() + DRAIN_S
        while self.node.ledger.awaiting_report(1) and time.monotonic() < deadline:
            time.sleep(0.05)
        from .reports import Reports

        node = self.node
        assert node.opts.spool is not None  # a serving node has its spool
        with node.engine_lock:
            if self.shadow is not None:
                self.shadow.clf.__exit__(None, None, None)  # replaced: by the outgoing engine
            self.active, self.shadow = incoming, outgoing
            node.clf, node.engine_hash = incoming.clf, incoming.sha256
            node.reports = Reports(node.opts.spool / "results", node.ledger, incoming.clf.manifest, incoming.sha256)
            node.ledger.meta("engine_sha256", incoming.sha256)
        remember(node.ledger, incoming)
        if node.monitor is not None:
            node.monitor.engine_changed()
        said = f"engine {action}: {incoming.path} ({incoming.sha256[:12]}…) active, {outgoing.path} now the shadow"
        self.record(action, "switched")
        log.warning("%s", said, extra={"event": "engine-switched"})
        if node.audit is not None:
            node.audit.switched(said, refused=False)
        return {"active": named(node.ledger, incoming.sha256), "shadow": named(node.ledger, outgoing.sha256)}

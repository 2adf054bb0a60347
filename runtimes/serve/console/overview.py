"""The overview (health, readiness, queue depth, throughput, engine, destinations, alerts) and the engine page
(its model card where ``dcube-edge card`` wrote one, else the manifest's facts). Every read of the engine's
manifest is in :func:`engine_facts` and :func:`model_card`."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..records import Delivery, State, iso
from . import queries

if TYPE_CHECKING:
    from ...manifest import Manifest
    from ..node import Node

CARD_JSON, CARD_MD = "model-card.json", "model-card.md"  # as `dcube-edge card` names them


@dataclass(frozen=True)
class Alert:
    """Something an operator should act on. Monitoring (drift, input quality) adds its own here: :func:`alerts`
    is the one place the overview takes them from."""

    severity: str  # "critical" | "warning"
    title: str
    detail: str


def engine_facts(manifest: Manifest, describe: str) -> dict:
    """What the console shows of an engine, from its record (``describe``: its operating point in words)."""
    record = manifest.record
    parity = dataclasses.asdict(record.parity) if record.parity is not None else {}
    return {"backend": manifest.backend, "precision": manifest.precision, "classes": manifest.classes,
            "computes_in": manifest.precision_parts(), "operating_point": describe,
            "calibration": record.calibration, "model": record.graph.model, "preset": record.graph.preset,
            "created": record.provenance.created, "intended_use": record.provenance.intended_use,
            "parity": {k: v for k, v in parity.items() if v is not None}, "modalities": list(record.input.modalities),
            "directory": manifest.dir.name}


def model_card(manifest: Manifest) -> tuple[dict | None, str | None]:
    """(the card's JSON, its markdown) where the engine has them (hashed into its manifest, so verified at load)."""
    card, text = manifest.dir / CARD_JSON, manifest.dir / CARD_MD
    try:
        data = json.loads(card.read_text()) if card.is_file() else None
    except (OSError, ValueError):
        data = None
    return data, (text.read_text() if text.is_file() else None)


def destinations(node: Node) -> list[dict]:
    """Each destination: whether it answers (the forwarder's gauge) and its deliveries by state."""
    counts = node.ledger.delivery_counts()
    out = []
    for name in node.destinations:
        up = node.metrics.registry.get_sample_value("dcube_destination_up", {"destination": name})
        out.append({"name": name, "up": up is None or up >= 1, "counts": counts.get(name, {})})
    return out


def alerts(node: Node, reasons: list[str], places: list[dict]) -> list[Alert]:
    """What needs an operator now: not ready, a destination down, dead letters. Monitoring alerts join here."""
    found = [Alert("critical", "not ready", r) for r in reasons]
    found += [Alert("critical", f"{d['name']} does not answer", "its results wait and are retried with back-off")
              for d in places if not d["up"]]
    dead = sum(d["counts"].get(Delivery.DEAD.value, 0) for d in places)
    if dead:
        found.append(Alert("warning", f"{dead} dead letter(s)", "deliveries given up: see Deliveries to retry them"))
    if node.monitor is not None:  # docs/monitoring.md: what each means and what to do
        found += [Alert("warning", f"monitor: {a.name}", f"since {iso(a.since)}, p = {a.statistic:.2g} under "
                        f"{a.threshold:.0e} over the {a.window}: {a.detail}") for a in list(node.monitor.active.values())]
    return found


def overview(node: Node, not_ready: Callable[[], list[str]]) -> dict:
    counts = node.ledger.counts()
    reasons, places = not_ready(), destinations(node)
    return {"ready": not reasons, "reasons": reasons, "counts": counts, "engine_sha256": node.engine_hash,
            "queue": counts.get(State.PENDING.value, 0), "throughput": queries.throughput(node.ledger),
            "total": sum(counts.values()), "destinations": places, "alerts": alerts(node, reasons, places),
            "engine": engine_facts(node.clf.manifest, node.clf.decision.describe()), "sizes": node.ledger.sizes()}


def engine(node: Node) -> dict:
    card, text = model_card(node.clf.manifest)
    return {"engine": engine_facts(node.clf.manifest, node.clf.decision.describe()), "card": card,
            "card_text": text, "engine_sha256": node.engine_hash}

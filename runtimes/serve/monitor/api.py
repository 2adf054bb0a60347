"""``POST /v1/labels``: truth posted to the node (a CSV body as ``spool label`` reads, or JSON ``{"labels": [{"label":
..., "sop_instance_uid" | "accession_number": ...}]}``). It changes what the node reports about itself, so it needs
the node's bearer token (``--token-file``) even on loopback; each import is one audit record."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from dcube_edge.errors import UserError

from .. import wsgi
from . import labels

if TYPE_CHECKING:
    from ..node import Node

MAX_LABELS_BODY = 16 << 20
HINT = ("send a CSV (label, sop_instance_uid or accession_number) or JSON {\"labels\": [{\"label\": ..., "
        "\"sop_instance_uid\": ...}]}")


def post(node: Node, environ) -> tuple[int, dict]:
    """(HTTP status, answer) of one label import."""
    if not node.opts.token:
        return 403, {"error": "labels change what the node reports on its performance: start it with --token-file "
                              "and send Authorization: Bearer TOKEN (or import them with `dcube-edge spool label`)"}
    try:
        body = wsgi.body(environ, MAX_LABELS_BODY, HINT)
    except wsgi.BodyError as e:
        return int(e.status.split()[0]), {"error": str(e)}
    try:
        rows = parse(body, environ.get("CONTENT_TYPE", ""))
    except UserError as e:
        return 400, {"error": str(e)}
    caller = environ.get("REMOTE_ADDR", "?")
    done = labels.add(node.ledger, rows, node.clf.classes, f"http {caller}")
    if node.audit is not None:
        node.audit.updated(caller, f"POST /v1/labels: {done.labelled} result(s) labelled", [])
    if node.monitor is not None:
        node.monitor.evaluate(force=True)
    return 200, {"labelled": done.labelled, "unmatched": done.unmatched, "unknown_class": done.unknown_class}


def parse(body: bytes, kind: str) -> list[dict]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError("the body is not UTF-8 text; " + HINT) from None
    if "json" in kind.lower() or text.lstrip().startswith("{"):
        try:
            found = json.loads(text).get("labels")
        except (ValueError, AttributeError):
            raise UserError("the JSON body does not read as {\"labels\": [...]}; " + HINT) from None
        if not isinstance(found, list) or not all(isinstance(r, dict) for r in found):
            raise UserError("\"labels\" must be a list of objects; " + HINT)
        return found
    return labels.read_csv(text, "the body")


def engine_switch(node: Node, action: str, environ) -> tuple[int, dict]:
    """``POST /v1/engine/promote`` and ``/v1/engine/rollback``: the switch's outcome (409 where it was refused)."""
    if not node.opts.token:
        return 403, {"error": "switching the engine needs the node's bearer token: start it with --token-file"}
    if node.engines is None:
        return 409, {"error": "this node holds one engine"}
    answer = node.engines.ask(action)
    caller = environ.get("REMOTE_ADDR", "?")
    log_caller = f"{action} asked by {caller}"
    return (409 if "error" in answer else 200), {**answer, "asked_by": log_caller}


def engine_state(node: Node) -> dict:
    """``GET /v1/engine``: the active engine, the shadow, its agreement, the history of switches."""
    from .. import engines, shadow

    held = node.engines
    state: dict = {"active": engines.named(node.ledger, node.engine_hash), "history": engines.history(node.ledger)}
    if held is not None and held.shadow is not None:
        state["shadow"] = engines.named(node.ledger, held.shadow.sha256)
        state["agreement"] = shadow.agreement(node.ledger, node.engine_hash, held.shadow.sha256)
    return state

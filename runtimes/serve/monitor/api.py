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
        node.monitor.evaluate()
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

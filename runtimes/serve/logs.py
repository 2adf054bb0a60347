"""The node's log: one line per association, refusal, rejection, batch, delivery failure and state change, each
with the event and the UID it concerns; ``--log-format json`` writes one JSON object per line for log shippers.
Third-party loggers (pynetdicom's per-PDU lines) are kept to warnings."""
from __future__ import annotations

import datetime as dt
import json
import logging
import sys

FIELDS = ("event", "uid", "destination", "calling", "address", "status", "check")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname.lower(), "message": record.getMessage()}
        out.update({k: getattr(record, k) for k in FIELDS if getattr(record, k, None) is not None})
        return json.dumps(out)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="seconds")
        extra = " ".join(f"{k}={getattr(record, k)}" for k in FIELDS[1:] if getattr(record, k, None) is not None)
        event = getattr(record, "event", record.name)
        return f"{when} {record.levelname:<7} {event}: {record.getMessage()}" + (f" ({extra})" if extra else "")


def configure(fmt: str, verbose: bool = False) -> logging.Logger:
    """Send the node's log to stderr in ``fmt`` (text or json); returns the node's logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    log = logging.getLogger("dcube_edge.serve")
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    logging.getLogger("pynetdicom").setLevel(logging.INFO if verbose else logging.WARNING)
    return log

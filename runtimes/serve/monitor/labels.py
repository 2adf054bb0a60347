"""Truth that arrives later: labels (pathology, the radiologist's read) for results the node gave, imported from a
CSV file (``dcube-edge spool label SPOOL FILE.csv``) or posted to ``POST /v1/labels``, by SOP Instance UID or by
Accession Number (every instance of that accession), kept in the ledger's ``labels`` table (the latest label of an
instance wins)."""
from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable
from dataclasses import dataclass

from dcube_edge.errors import UserError

from ..ledger import Ledger

LABELS = "CREATE TABLE IF NOT EXISTS labels (uid TEXT PRIMARY KEY, truth TEXT, source TEXT, added REAL)"
UID_KEYS = ("sop_instance_uid", "SOPInstanceUID")
ACCESSION_KEYS = ("accession_number", "AccessionNumber")
LABEL_KEYS = ("label", "truth")


@dataclass(frozen=True)
class Imported:
    """What an import did: instances labelled, rows naming nothing the node holds, rows with an unknown class."""

    labelled: int
    unmatched: list[str]
    unknown_class: list[str]


def prepare(ledger: Ledger) -> None:
    ledger.write(LABELS)


def pick(row: dict, keys: tuple[str, ...]) -> str:
    return next((str(row[k]).strip() for k in keys if row.get(k) not in (None, "")), "")


def read_csv(text: str, where: str = "the CSV") -> list[dict]:
    """The rows of a label CSV: a header with ``label`` and ``sop_instance_uid`` or ``accession_number``."""
    reader = csv.DictReader(io.StringIO(text))
    fields = set(reader.fieldnames or ())
    if not fields & set(LABEL_KEYS) or not fields & set(UID_KEYS + ACCESSION_KEYS):
        raise UserError(f"{where} needs a header with a `label` column and a `sop_instance_uid` or `accession_number` "
                        f"column (it has: {', '.join(sorted(fields)) or 'none'})")
    return list(reader)


def add(ledger: Ledger, rows: Iterable[dict], classes: Iterable[str], source: str) -> Imported:
    """Label the instances each row names (its SOP Instance UID, else every instance of its Accession Number) with
    its class; a class the engine does not have, or a row naming no instance, is reported, not kept."""
    prepare(ledger)
    known = set(classes)
    labelled, unmatched, unknown = [], [], []
    for row in rows:
        truth, uid, accession = pick(row, LABEL_KEYS), pick(row, UID_KEYS), pick(row, ACCESSION_KEYS)
        named = uid or accession
        if truth not in known:
            unknown.append(f"{named}: {truth!r}")
            continue
        if uid:
            uids = [r[0] for r in ledger.query("SELECT uid FROM instances WHERE uid = ?", uid)]
        else:
            uids = [r[0] for r in ledger.query("SELECT uid FROM instances WHERE accession = ?", accession)] \
                if accession else []
        if not uids:
            unmatched.append(named or "(a row naming no instance)")
        labelled += [(u, truth) for u in uids]
    now = time.time()
    with ledger.transaction() as db:
        db.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?)", [(u, t, source, now) for u, t in labelled])
    return Imported(len(labelled), unmatched, unknown)


def joined(ledger: Ledger, engine: str, newest: int | None = None) -> list[tuple[str, str, dict]]:
    """(truth, the node's call, its calibrated probabilities) of the engine's labelled results, oldest first (the
    newest n)."""
    import json

    prepare(ledger)
    rows = ledger.query("SELECT l.truth, i.label, i.probs FROM labels l JOIN instances i ON i.uid = l.uid WHERE "
                        "i.engine = ? AND i.status = 'done' ORDER BY i.classified DESC LIMIT ?", engine,
                        -1 if newest is None else newest)
    return [(t, c, json.loads(p or "{}")) for t, c, p in rows[::-1]]


def classes_seen(ledger: Ledger) -> list[str]:
    """The classes of the node's results (where no reference names them)."""
    import json

    rows = ledger.query("SELECT probs FROM instances WHERE probs IS NOT NULL LIMIT 1")
    return sorted(json.loads(rows[0][0])) if rows else []

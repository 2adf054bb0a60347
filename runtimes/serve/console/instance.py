"""The instance page: a thumbnail of what the model read (the source decoded and preprocessed as the engine's
classifier does it, served by an authenticated route that takes only a UID: the file is the ledger's), the
decision at the operating point and why, the calibrated probabilities, the kept SR's patient and study attributes
and content tree, every SR the instance has had, each delivery's state, and a link to the study in a viewer.

Per-frame results: where a result's probabilities carry ``frames`` — a list of ``{"label": ..., "probs":
{class: p}}``, one per frame, as multi-frame classification records them — the page shows them as a strip
(:func:`frames`); a single-frame result has none."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..audit import SR_STORAGE
from ..records import Instance, State
from ..reports import Unavailable
from . import queries, srtree

if TYPE_CHECKING:
    from ..node import Node

# The attributes the page shows of the patient and study, from the kept SR (which copies them from the source).
SHOWN = (("Patient name", "PatientName"), ("Patient ID", "PatientID"), ("Birth date", "PatientBirthDate"),
         ("Sex", "PatientSex"), ("Study date", "StudyDate"), ("Accession", "AccessionNumber"),
         ("Study ID", "StudyID"), ("Referring physician", "ReferringPhysicianName"))


@dataclass(frozen=True)
class Frame:
    index: int
    label: str
    probs: dict[str, float]


def frames(row: Instance) -> list[Frame]:
    """A per-frame result's frames (none for a single-frame one)."""
    listed = (row.probs or {}).get("frames") if isinstance(row.probs, dict) else None
    if not isinstance(listed, list):
        return []
    return [Frame(i, str(f.get("label", "")), {str(k): float(v) for k, v in (f.get("probs") or {}).items()})
            for i, f in enumerate(listed) if isinstance(f, dict)]


def class_probs(row: Instance) -> dict[str, float]:
    return {k: v for k, v in (row.probs or {}).items() if isinstance(v, (int, float))}


def viewer_link(template: str | None, study: str | None) -> str | None:
    """The configured viewer's address of a study (``viewer_url`` with ``{study}`` replaced), or None."""
    if not template or not study:
        return None
    return template.replace("{study}", quote(study, safe=""))


def has_thumbnail(row: Instance) -> bool:
    return row.state is not State.NOT_APPLICABLE and row.purged is None and Path(row.path).is_file()


def context(node: Node, row: Instance) -> tuple[dict, list[tuple[str, str, str]]]:
    """The page's content and what it read, for the audit trail: (study, SOP class, SOP instance)."""
    read: list[tuple[str, str, str]] = []
    sr, attributes, tree, sr_error = None, [], None, row.report_error
    report = node.ledger.report(row.report) if row.report else None
    if report is not None:
        try:
            sr = node.reports.dataset(report)
        except Unavailable as e:
            sr_error = str(e)
    if sr is not None:
        attributes = [(label, str(sr.get(key, "") or "")) for label, key in SHOWN]
        tree = srtree.tree(sr)
        read.append((row.study or "", SR_STORAGE, report.uid))
        read.append((row.study or "", srtree.source_class(sr), row.uid))
    else:
        attributes = [("Patient name", row.patient_name or ""), ("Patient ID", row.patient_id or ""),
                      ("Study date", row.study_date or ""), ("Accession", row.accession or "")]
        read.append((row.study or "", "", row.uid))
    return {"row": row, "attributes": attributes, "tree": tree, "sr_error": sr_error, "report": report,
            "reports": queries.reports_of(node.ledger, row.uid), "deliveries": node.ledger.deliveries(row.uid),
            "probs": class_probs(row), "frames": frames(row), "thumbnail": has_thumbnail(row),
            "viewer": viewer_link(node.opts.viewer_url, row.study)}, read


def thumbnail(node: Node, row: Instance) -> bytes:
    """What the model read, as a PNG: the ledger's file for this instance, decoded and preprocessed by the
    engine's own reader (its size and intensity contract), mapped back from the model's input range to 0..255."""
    import numpy as np
    from PIL import Image

    from ...preprocess import load

    spec = node.clf.spec
    array = load(row.path, spec)[0]
    lo, hi = spec.range
    gray = np.clip((array - lo) / (hi - lo), 0.0, 1.0)
    buffer = io.BytesIO()
    Image.fromarray((gray * 255 + 0.5).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()

"""The results page (search by patient ID, accession number, study date range, decision and state, 50 a page,
newest first) and the deliveries page (dead letters with their reasons, deliveries being retried, and the retry
action, which does what ``dcube-edge spool retry`` does: the ledger's own :meth:`..ledger.Ledger.retry`)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..audit import SR_STORAGE
from ..records import Delivery
from . import queries
from .queries import PAGE, STATES, Search

if TYPE_CHECKING:
    from ..node import Node

DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


class FormError(ValueError):
    """A search field that cannot be used; the message says which and what to give."""


def dicom_date(value: str, field: str) -> str:
    """A date as an HTML date field (YYYY-MM-DD) or DICOM (YYYYMMDD) gives it, as DICOM DA."""
    value = value.strip()
    if not value:
        return ""
    found = DATE.match(value)
    if not found:
        raise FormError(f"{field} {value[:20]!r}: give a date as YYYY-MM-DD")
    return "".join(found.groups())


def parse(params: list[tuple[str, str]], classes: list[str]) -> Search:
    """The search a results page's query string asks for."""
    given = {k: v.strip() for k, v in params}
    state, decision = given.get("state", ""), given.get("decision", "")
    if state and state not in STATES:
        raise FormError(f"state {state[:30]!r}: choose one of {', '.join(STATES)}")
    if decision and decision not in classes:
        raise FormError(f"decision {decision[:30]!r}: choose one of {', '.join(classes)}")
    try:
        page = max(1, int(given.get("page") or 1))
    except ValueError:
        raise FormError(f"page {given['page'][:20]!r}: give a page number") from None
    return Search(given.get("patient_id", "")[:64], given.get("accession", "")[:16],
                  dicom_date(given.get("date_from", ""), "from"), dicom_date(given.get("date_to", ""), "to"),
                  decision, state, page)


def results(node: Node, search: Search) -> tuple[dict, list[tuple[str, str, str]]]:
    """The page's content and the results it lists, for the audit trail."""
    total, rows = queries.search(node.ledger, search)
    pages = max(1, -(-total // PAGE))
    shown = [(r.instance.study or "", SR_STORAGE, r.instance.report) for r in rows if r.instance.report]
    return {"search": search, "total": total, "rows": rows, "pages": pages, "states": STATES,
            "classes": node.clf.classes, "first": (search.page - 1) * PAGE + 1 if rows else 0,
            "last": (search.page - 1) * PAGE + len(rows)}, shown


def deliveries(node: Node, page: int) -> tuple[dict, list[tuple[str, str, str]]]:
    dead_total, dead = queries.deliveries(node.ledger, Delivery.DEAD.value, page)
    failing_total, failing = queries.deliveries(node.ledger, Delivery.PENDING.value, failing=True)
    shown = [(x.study or "", SR_STORAGE, x.report or x.uid) for x in (*dead, *failing)]
    return {"dead": dead, "dead_total": dead_total, "failing": failing, "failing_total": failing_total,
            "page": page, "pages": max(1, -(-dead_total // PAGE)), "counts": node.ledger.delivery_counts()}, shown


def retry(node: Node, uid: str | None) -> tuple[int, list[tuple[str, str, str]]]:
    """Re-queue the dead deliveries (of one instance, or all), as ``spool retry`` does; (how many, the result SRs
    concerned)."""
    concerned = [(study or "", SR_STORAGE, sr) for study, sr in queries.dead_reports(node.ledger, uid)]
    return node.ledger.retry(uid), concerned

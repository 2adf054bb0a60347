"""Pages from Jinja2 templates shipped in the package (``templates/``, one stylesheet in ``static/``): autoescape
on for every template, so whatever a page shows from a DICOM file (PatientName and the rest), the ledger or a
request is text, never markup; undefined names are errors, not blanks."""
from __future__ import annotations

import datetime as dt
import functools
from importlib import resources

from ..dicomweb import Reply
from ..records import iso

STATUS = {200: "200 OK", 303: "303 See Other", 400: "400 Bad Request", 401: "401 Unauthorized", 403: "403 Forbidden",
          404: "404 Not Found", 405: "405 Method Not Allowed", 413: "413 Payload Too Large"}
HTML = "text/html; charset=utf-8"


@functools.lru_cache(maxsize=1)
def environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader(__package__, "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, da=da, pn=pn, pct=pct, short=short)
    return env


STATIC = {"console.css": "text/css; charset=utf-8", "icon.svg": "image/svg+xml"}  # static/: all there is


@functools.lru_cache(maxsize=len(STATIC))
def static_file(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def static(name: str) -> Reply:
    """One of the console's own files (no patient data: served before any login)."""
    return Reply(STATUS[200], [("Content-Type", STATIC[name])], static_file(name))


def page(template: str, code: int = 200, **context) -> Reply:
    body = environment().get_template(template).render(**context).encode()
    return Reply(STATUS[code], [("Content-Type", HTML)], body)


def redirect(location: str, *headers: tuple[str, str]) -> Reply:
    return Reply(STATUS[303], [("Location", location), *headers], b"")


# -- filters -----------------------------------------------------------------------------------------------------
def when(t: float | str | None) -> str:
    """An epoch time (or ISO 8601 text) as 'YYYY-MM-DD HH:MM:SS UTC'."""
    if t is None:
        return "–"
    text = iso(t) if isinstance(t, (int, float)) else str(t)
    try:
        return dt.datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return text


def da(value: str | None) -> str:
    """A DICOM date (YYYYMMDD) as YYYY-MM-DD."""
    value = (value or "").strip()
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value or "–"


def pn(value: str | None) -> str:
    """A DICOM person name (PS3.5 6.2: Family^Given^Middle^Prefix^Suffix, in up to three component groups
    separated by '=': alphabetic, ideographic, phonetic) as it reads: 'Family, Given Middle (ideographic;
    phonetic)'."""
    def group(text: str) -> str:
        parts = text.split("^")
        family, rest = parts[0], " ".join(p for p in parts[1:3] if p)
        return f"{family}, {rest}" if family and rest else family or rest

    first, *others = [group(g) for g in (value or "").split("=")]
    others = [g for g in others if g]
    return (first + (f" ({'; '.join(others)})" if others else "")) or "–"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def short(uid: str | None, keep: int = 14) -> str:
    """A long UID shortened for a table cell ('…' and its last ``keep`` characters)."""
    uid = uid or ""
    return uid if len(uid) <= keep + 1 else "…" + uid[-keep:]

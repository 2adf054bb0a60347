"""Attribute matching for QIDO-RS, as PS3.18 8.3.4.1 defines it by reference to the C-FIND key matching of
PS3.4 C.2.2.2:

- Universal Matching (C.2.2.2.3): an empty value, or ``*`` where wild cards apply, matches everything.
- List of UID Matching (C.2.2.2.2; PS3.18 8.3.4.1 ``uid-list-match``): UIDs separated by ``,`` or ``\\``.
- Range Matching (C.2.2.2.5) for DA, TM and DT: ``A-B``, ``A-``, ``-B``; a single value of a partial time or
  date-time matches the span it names (``TM 1200`` matches 12:00:00 to 12:00:59.999999).
- Wild Card Matching (C.2.2.2.4) for AE, CS, LO, LT, PN, SH, ST, UC, UR, UT: ``*`` any run, ``?`` one character;
  case-sensitive except for PN.
- Single Value Matching (C.2.2.2.1) otherwise: exact; PN insensitive to case (C.2.2.2.1 permits it) and matched
  against the whole value and each of its component groups; IS, DS and the binary numbers compared as numbers
  (CP-2305: implementation dependent, stated in the conformance statement).
- A value list separated by ``\\`` (the DICOM value delimiter) matches where any of its values does.
- A multi-valued attribute of an entity (Modalities in Study) matches where any of its values does; an attribute
  path through a sequence (``00400275.00401001``) where any item's value does.
- An entity without a value for the attribute does not match a non-universal key, unless ``emptyvaluematching``
  is true (PS3.18 8.3.4.5), when it does.

Attributes that cannot be matched (sequences without a path into them, binary VRs) are the caller's to report
with a ``Warning`` (PS3.18 8.3.4.1)."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

WILDCARD_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}
NUMERIC_VRS = {"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}
TEXT_VRS = WILDCARD_VRS | {"AS", "DA", "TM", "DT", "UI"} | NUMERIC_VRS
TIME = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")
DATE = re.compile(r"^\d{8}$")
DATETIME = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$")
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class QueryError(ValueError):
    """A query parameter the origin server cannot use: answered with 400 and this message."""


@dataclass(frozen=True)
class Attribute:
    """A matching key's attribute: the path of tags (one, or through sequences), its VR and how it was named."""

    path: tuple[int, ...]
    vr: str
    name: str

    @property
    def tag(self) -> int:
        return self.path[-1]


def attribute(name: str) -> Attribute:
    """An ``attribute`` of PS3.18 8.3.4.1: keywords or 8-digit hex tags of PS3.6, joined by ``.`` through
    sequences. Raises QueryError for a name the data dictionary does not hold."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    path = []
    for part in name.split("."):
        tag = int(part, 16) if re.fullmatch(r"[0-9A-Fa-f]{8}", part) else tag_for_keyword(part)
        try:
            vr = dictionary_VR(tag) if tag is not None else None
        except KeyError:
            vr = None
        if vr is None:
            raise QueryError(f"{name!r} is not a DICOM attribute: give a keyword of PS3.6 (e.g. PatientID) or its "
                             "tag as 8 hex digits (e.g. 00100020)")
        path.append(tag)
    for tag in path[:-1]:
        if dictionary_VR(tag) != "SQ":
            raise QueryError(f"{name!r}: only a sequence can be followed by '.'")
    return Attribute(tuple(path), dictionary_VR(path[-1]).split(" or ")[0], name)


def values_of(ds, path: tuple[int, ...]) -> list[str]:
    """The entity's values of an attribute path, as strings: several for a multi-valued attribute, one per
    sequence item along a path; empty where the entity has no value."""
    if not path:
        return []
    element = ds.get(path[0]) if ds is not None else None
    if element is None or element.value is None or element.value == "":
        return []
    if len(path) > 1:
        return [v for item in element.value for v in values_of(item, path[1:])]
    value = element.value
    many = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    return [str(v) for v in many if str(v) != ""]


def matchable(attr: Attribute) -> bool:
    """Whether values of this attribute can be matched (text, dates, times, numbers; not sequences or bytes)."""
    return attr.vr in TEXT_VRS


def matcher(attr: Attribute, value: str, empty_matches: bool = False) -> Callable[[list[str]], bool]:
    """A predicate on an entity's values of ``attr`` (:func:`values_of`) for the key ``value``; raises
    QueryError for a value the attribute's VR cannot be matched with."""
    if value == "" or (value == "*" and attr.vr in WILDCARD_VRS):
        return lambda found: True  # Universal Matching
    if attr.vr == "UI":
        wanted = set(filter(None, re.split(r"[,\\]", value)))
        if not all(UID.match(u) for u in wanted):
            raise QueryError(f"{attr.name}={value[:80]!r}: a UID is digits and dots; list several with ','")
        one = wanted.__contains__
    else:
        ones = [single(attr, v) for v in value.split("\\")]
        one = (lambda v: any(m(v) for m in ones)) if len(ones) > 1 else ones[0]

    def match(found: list[str]) -> bool:
        return any(one(v) for v in found) if found else empty_matches

    return match


def single(attr: Attribute, value: str) -> Callable[[str], bool]:
    """A predicate on one value of the entity for one value of the key."""
    if attr.vr in ("DA", "TM", "DT"):
        low, ranged, high = split_range(attr.vr, value)
        if ranged and not (low or high):
            raise QueryError(f"{attr.name}: '-' alone is not a range; give a start, an end or both")
        lower = bound(attr, low, "low") if low else None
        upper = bound(attr, high if ranged else low, "high") if (high if ranged else low) else None
        return lambda v: within(position(attr.vr, v), lower, upper)
    if attr.vr in NUMERIC_VRS:
        try:
            number = float(value)
        except ValueError:
            raise QueryError(f"{attr.name}={value[:80]!r}: give a number (no wild cards for VR {attr.vr})") from None
        return lambda v: numeric(v) == number
    if attr.vr == "PN":
        pattern = wildcard(value, case_sensitive=False)
        return lambda v: any(pattern.fullmatch(part) for part in (v, *v.split("=")))
    if attr.vr in WILDCARD_VRS and ("*" in value or "?" in value):
        pattern = wildcard(value, case_sensitive=True)
        return lambda v: pattern.fullmatch(v) is not None
    return lambda v: v.strip() == value.strip()


def within(point: str | None, lower: str | None, upper: str | None) -> bool:
    return point is not None and (lower is None or point >= lower) and (upper is None or point <= upper)


def wildcard(value: str, case_sensitive: bool) -> re.Pattern:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value)
    return re.compile(body, re.DOTALL if case_sensitive else re.IGNORECASE | re.DOTALL)


def numeric(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def split_range(vr: str, value: str) -> tuple[str, bool, str]:
    """(start, whether it is a range, end). In a DT a '-' followed by four digits that form a UTC offset
    (HH <= 14, MM < 60) after an hour is the offset's sign, not the range's."""
    for i, c in enumerate(value):
        if c != "-":
            continue
        offset = re.match(r"(\d{2})(\d{2})(?=$|-)", value[i + 1:])
        if vr == "DT" and offset and len(re.sub(r"\D", "", value[:i])) >= 10 and int(offset[1]) <= 14 \
                and int(offset[2]) < 60:
            continue
        return value[:i], True, value[i + 1:]
    return value, False, ""


def bound(attr: Attribute, text: str, end: str) -> str:
    """The key value as a position comparable with :func:`position`'s, at the low or high end of the span it
    names (a partial time or date-time names a span)."""
    vr = attr.vr
    if vr == "DA":
        if not DATE.match(text):
            raise QueryError(f"{attr.name}: {text[:40]!r} is not a date (YYYYMMDD; a range as YYYYMMDD-YYYYMMDD)")
        return text
    if vr == "TM":
        found = TIME.match(text)
        if not found:
            raise QueryError(f"{attr.name}: {text[:40]!r} is not a time (HHMMSS.FFFFFF, partial allowed; ranges with -)")
        return time_position(found, end)
    if not DATETIME.match(text):
        raise QueryError(f"{attr.name}: {text[:40]!r} is not a date-time (YYYYMMDDHHMMSS.FFFFFF&ZZXX, partial allowed)")
    return datetime_digits(text).ljust(20, "0" if end == "low" else "9")


def time_position(found: re.Match, end: str) -> str:
    hours, minutes, seconds, fraction = found.groups()
    high = end == "high"
    return (hours + (minutes or ("59" if high else "00")) + (seconds or ("59" if high else "00"))
            + (fraction or "").ljust(6, "9" if high else "0"))


def datetime_digits(text: str) -> str:
    """A DT without its UTC offset, digits only (offsets are not applied: the node's results carry none)."""
    return re.sub(r"\D", "", re.sub(r"[+-]\d{4}$", "", text))


def position(vr: str, value: str) -> str | None:
    """An entity's DA, TM or DT value as a comparable position (its start); None if it is malformed."""
    value = value.strip()
    if vr == "DA":
        return value if DATE.match(value) else None
    if vr == "TM":
        found = TIME.match(value)
        return time_position(found, "low") if found else None
    return datetime_digits(value).ljust(20, "0") if DATETIME.match(value) else None

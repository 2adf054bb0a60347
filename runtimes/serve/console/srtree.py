"""A kept result SR's content tree (PS3.3 C.17.3, the SR Document Content Module) as nested items the instance
page renders: each content item's relationship to its parent, value type, concept name and value in words."""
from __future__ import annotations

from dataclasses import dataclass, field

MAX_DEPTH = 16


@dataclass(frozen=True)
class Item:
    relationship: str  # CONTAINS, HAS CONCEPT MOD, HAS OBS CONTEXT, INFERRED FROM, ... ("" at the root)
    kind: str  # the value type: CONTAINER, CODE, NUM, TEXT, UIDREF, IMAGE, ...
    name: str  # the concept name's meaning
    value: str
    children: list[Item] = field(default_factory=list)


def meaning(sequence) -> str:
    """A code sequence's first item in words: 'meaning (value, scheme)'."""
    if not sequence:
        return ""
    code = sequence[0]
    return f"{code.get('CodeMeaning', '')} ({code.get('CodeValue', '')}, {code.get('CodingSchemeDesignator', '')})"


def value_of(item) -> str:
    kind = str(item.get("ValueType", ""))
    if kind == "TEXT":
        return str(item.get("TextValue", ""))
    if kind == "CODE":
        return meaning(item.get("ConceptCodeSequence"))
    if kind == "NUM":
        measured = item.get("MeasuredValueSequence")
        if not measured:
            return "(no value)"
        unit = (measured[0].get("MeasurementUnitsCodeSequence") or [{}])[0].get("CodeValue", "")
        return f"{measured[0].get('NumericValue', '')} {unit}".strip()
    if kind == "UIDREF":
        return str(item.get("UID", ""))
    if kind in ("IMAGE", "COMPOSITE"):
        ref = (item.get("ReferencedSOPSequence") or [{}])[0]
        return f"{ref.get('ReferencedSOPInstanceUID', '')} (SOP class {ref.get('ReferencedSOPClassUID', '')})"
    if kind == "PNAME":
        return str(item.get("PersonName", ""))
    if kind in ("DATETIME", "DATE", "TIME"):
        return str(item.get(kind.title().replace("time", "Time"), ""))
    return ""


def items(sequence, depth: int = 0) -> list[Item]:
    if not sequence or depth >= MAX_DEPTH:
        return []
    return [Item(str(i.get("RelationshipType", "")), str(i.get("ValueType", "")),
                 meaning(i.get("ConceptNameCodeSequence")), value_of(i), items(i.get("ContentSequence"), depth + 1))
            for i in sequence]


def tree(sr) -> Item:
    """The document's root container with everything under it."""
    return Item("", str(sr.get("ValueType", "CONTAINER")), meaning(sr.get("ConceptNameCodeSequence")), "",
                items(sr.get("ContentSequence")))


def source_class(sr) -> str:
    """The SOP Class UID of the image an SR reports on (its first IMAGE item), for the audit trail."""
    stack = list(sr.get("ContentSequence") or [])
    while stack:
        item = stack.pop(0)
        if item.get("ValueType") == "IMAGE" and item.get("ReferencedSOPSequence"):
            return str(item.ReferencedSOPSequence[0].get("ReferencedSOPClassUID", ""))
        stack.extend(item.get("ContentSequence") or [])
    return ""

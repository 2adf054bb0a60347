"""Content negotiation for DICOMweb (PS3.18 8.7): the ``Accept`` header field (RFC 9110 12.5.1: media ranges,
parameters, ``q`` weights; or the ``accept`` query parameter, PS3.18 8.3.3.1, which takes its place) against what a
resource can be answered in. No acceptable representation: 406 naming those the resource has.

For ``multipart/related`` the ``type`` parameter names the media type of the parts and ``transfer-syntax`` the
transfer syntax of ``application/dicom`` parts (PS3.18 8.7.3.5.2; ``*`` any); a range without ``type`` takes the
resource's default part type."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Offer:
    """A representation a resource can be answered in."""

    media: str  # e.g. multipart/related or application/dicom+json
    params: dict[str, str] = field(default_factory=dict)  # e.g. {"type": "application/dicom", "transfer-syntax": …}

    def header(self) -> str:
        """As a Content-Type value (the multipart boundary is the caller's)."""
        return "; ".join([self.media, *(f'{k}="{v}"' if k == "type" else f"{k}={v}" for k, v in self.params.items())])


@dataclass(frozen=True)
class Range:
    """A media range of an Accept header with its parameters and weight."""

    media: str
    params: dict[str, str]
    q: float

    def admits(self, offer: Offer) -> bool:
        kind, _, sub = self.media.partition("/")
        offered_kind, _, offered_sub = offer.media.partition("/")
        if kind not in ("*", offered_kind) or sub not in ("*", offered_sub):
            return False
        for name, value in self.params.items():
            if name == "transfer-syntax" and value == "*":
                continue
            if name in offer.params and offer.params[name].lower() != value.lower():
                return False
            if name not in offer.params and name in ("type", "transfer-syntax"):
                return False
        return True


def parse(header: str) -> list[Range]:
    """The media ranges of an Accept field value, most preferred first (by q; then by order given)."""
    ranges = []
    for text in split(header, ","):
        media, *raw = (p.strip() for p in split(text, ";"))
        if not media:
            continue
        params, q = {}, 1.0
        for item in raw:
            name, _, value = item.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
            elif name:
                params[name] = value
        ranges.append(Range(media.lower(), params, q))
    return sorted(ranges, key=lambda r: -r.q)


def split(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside double quotes (a quoted parameter value may hold ``,`` or ``;``)."""
    parts, current, quoted = [], [], False
    for c in text:
        if c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts


def choose(header: str | None, offers: list[Offer], default_type: str | None = None) -> Offer | None:
    """The offer the client prefers, or None (406). No header, or an empty one, accepts the first offer."""
    if not header or not header.strip():
        return offers[0]
    for accepted in parse(header):
        if accepted.q <= 0:
            continue
        if accepted.media == "multipart/related" and "type" not in accepted.params and default_type:
            accepted = Range(accepted.media, {**accepted.params, "type": default_type}, accepted.q)
        for offer in offers:
            if accepted.admits(offer) and not refused(header, offer):
                return offer
    return None


def refused(header: str, offer: Offer) -> bool:
    """Whether a range with q=0 excludes this offer explicitly (``application/dicom+json;q=0``)."""
    return any(r.q <= 0 and r.media == offer.media and r.admits(offer) for r in parse(header))


def describe(offers: list[Offer]) -> str:
    return ", ".join(o.header() for o in offers)

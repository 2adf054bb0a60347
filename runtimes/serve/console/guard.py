"""What every console answer carries and what every console request is checked for, before any page runs:

- headers: a Content-Security-Policy that allows the console's own stylesheet and images and nothing else (no
  script at all, inline or not; no framing: ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``; forms post
  only to the node), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``, ``Cache-Control:
  no-store`` (pages carry patient data), cross-origin isolation of its resources;
- a request that changes something (a POST) from another site is refused: its ``Origin`` (else its ``Referer``)
  must name the host the request was sent to, and a session's CSRF token must come with it;
- on a node without a token (loopback only, :mod:`.`), the ``Host`` header must name a loopback address, so a
  page of another site that rebinds its name to 127.0.0.1 (DNS rebinding) reads nothing."""
from __future__ import annotations

import ipaddress
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from .sessions import COOKIE, LIFETIME_S

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
HEADERS = (("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"),
           ("Referrer-Policy", "same-origin"), ("Cross-Origin-Opener-Policy", "same-origin"),
           ("Cross-Origin-Resource-Policy", "same-origin"))


def headers(environ, cache: bool = False) -> list[tuple[str, str]]:
    """The security headers of every console answer (``cache``: the stylesheet, which carries no patient data)."""
    out = [*HEADERS, ("Cache-Control", "private, max-age=3600" if cache else "no-store")]
    if environ.get("wsgi.url_scheme") == "https":
        out.append(("Strict-Transport-Security", "max-age=31536000"))
    return out


def cookie(environ, name: str) -> str | None:
    jar = SimpleCookie()
    try:
        jar.load(environ.get("HTTP_COOKIE", ""))
    except Exception:  # noqa: BLE001 — a malformed Cookie header is no session
        return None
    return jar[name].value if name in jar else None


def session_cookie(environ, sid: str | None) -> tuple[str, str]:
    """The Set-Cookie of a session (``None``: the cookie cleared): HttpOnly, SameSite=Strict, path /ui, Secure
    when the request came over TLS. The browser keeps it for the session's lifetime; the node ends it sooner when
    it sits idle (:mod:`.sessions`)."""
    secure = "; Secure" if environ.get("wsgi.url_scheme") == "https" else ""
    age = int(LIFETIME_S) if sid else 0
    return "Set-Cookie", f"{COOKIE}={sid or ''}; Path=/ui; Max-Age={age}; HttpOnly; SameSite=Strict{secure}"


def host_of(authority: str) -> str:
    """The host part of ``host[:port]`` or ``[v6][:port]``."""
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def loopback_host(environ) -> bool:
    """The Host header names this machine's loopback (localhost, 127.0.0.0/8, ::1)."""
    host = host_of(environ.get("HTTP_HOST", "")).lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cross_site(environ) -> str | None:
    """Why a state-changing request looks sent from another site, or None. Its Origin (else Referer) must name
    the host it was sent to; a request with neither is judged by its CSRF token alone."""
    origin = environ.get("HTTP_ORIGIN") or environ.get("HTTP_REFERER")
    if not origin:
        return None
    if origin == "null":
        return "the request comes from an opaque origin"
    sent_to = environ.get("HTTP_HOST", "").lower()
    came_from = urlsplit(origin).netloc.lower()
    return None if came_from and came_from == sent_to else f"the request comes from {origin[:80]}, not from this node"


def next_page(target: str | None) -> str:
    """Where to go after logging in: a console page of this node, else the overview (never another site)."""
    target = (target or "").strip()
    if not target.startswith("/ui/") or target.startswith("//") or any(c in target for c in "\r\n\\"):
        return "/ui/"
    return target

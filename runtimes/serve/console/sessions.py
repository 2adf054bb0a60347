"""The console's server-side sessions: a login with the node's token opens one; the browser holds only its random
identifier (a cookie: HttpOnly, SameSite=Strict, Secure over TLS, path ``/ui``), never the token. A session ends
at logout, after :data:`IDLE_S` without a request, after :data:`LIFETIME_S` in all, and when the node restarts
(they live in its memory). Each carries its own CSRF token, which every form that changes something must send."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "dcube_console"
IDLE_S = 30 * 60
LIFETIME_S = 12 * 3600
MAX_SESSIONS = 256  # the oldest goes when a login would open more


@dataclass
class Session:
    csrf: str  # the form token tied to this session
    caller: str  # the address that logged in
    opened: float
    seen: float


def key(sid: str) -> str:
    """What the store is keyed by: the identifier's digest, so nothing held in memory is a cookie's value."""
    return hashlib.sha256(sid.encode()).hexdigest()


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock, self.lock, self.held = clock, threading.Lock(), {}

    def open(self, caller: str) -> tuple[str, Session]:
        """A new session: (the identifier to set as the cookie, the session)."""
        sid, now = secrets.token_urlsafe(32), self.clock()
        session = Session(secrets.token_urlsafe(32), caller, now, now)
        with self.lock:
            self.expire(now)
            while len(self.held) >= MAX_SESSIONS:
                del self.held[min(self.held, key=lambda k: self.held[k].seen)]
            self.held[key(sid)] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        """The live session of a cookie's identifier (its idle time restarts), or None."""
        if not sid:
            return None
        now = self.clock()
        with self.lock:
            self.expire(now)
            session = self.held.get(key(sid))
            if session is not None:
                session.seen = now
            return session

    def close(self, sid: str | None) -> None:
        with self.lock:
            self.held.pop(key(sid or ""), None)

    def expire(self, now: float) -> None:
        for k in [k for k, s in self.held.items() if now - s.seen > IDLE_S or now - s.opened > LIFETIME_S]:
            del self.held[k]


def csrf_matches(session: Session, given: str) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), given.encode())

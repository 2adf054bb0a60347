"""The operator console: HTML pages on the node's HTTP port under ``/ui/`` — overview, results (searched, paged),
an instance (thumbnail of what the model read, decision, probabilities, SR content tree, deliveries, viewer
link), deliveries and dead letters with a retry action, the engine's model card. Server-rendered (Jinja2,
autoescaped), no script, a stylesheet shipped in the package: nothing is fetched from elsewhere.

Security model (docs/serve.md, "The console"):

- The console shows patient data, so it is behind the node's token. A browser logs in by posting the token to
  ``/ui/login``: the node opens a server-side session (:mod:`.sessions`) and sets only its random identifier as a
  cookie (HttpOnly, SameSite=Strict, path /ui, Secure over TLS); ``Authorization: Bearer TOKEN`` works on every
  page too. Without either, a page asked for as HTML is redirected to the login page, anything else is 401.
- A POST (retry, logout, login) from another site is refused: its Origin (else Referer) must be this node, and a
  session's POST must carry that session's CSRF token (:mod:`.guard`).
- Every answer carries a strict Content-Security-Policy (no script at all, no framing) and nosniff, same-origin
  referrers, no caching; every template is autoescaped.
- Every page view and action is in the audit trail as the HTTP API's requests are (:mod:`..audit`): searches as
  Query, instance pages, thumbnails and dead-letter lists as reads of what they showed, pages without patient data
  as reads of no instance, logins and logouts as User Authentication, retries as updates of the result SRs.
- A node without a token (it binds loopback only: :mod:`..options` refuses another address without one) has an
  open console, with no login: it still opens a session, for the CSRF token, and answers only requests whose Host
  is a loopback address (so another site's page that rebinds its name to 127.0.0.1 gets nothing)."""
from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote

from .. import wsgi
from ..dicomweb import Reply
from . import guard, instance, overview, render, results
from .render import page, redirect
from .sessions import COOKIE, Session, Sessions, csrf_matches

if TYPE_CHECKING:
    from ..node import Node

STATIC = "/ui/static/"
INSTANCE = re.compile(r"^/ui/instances/([0-9]+(?:\.[0-9]+)*)(/thumbnail\.png)?$")
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_FORM = 8192


@dataclass(frozen=True)
class Caller:
    """Who a request is from: its address, and how it was let in (``bearer``, ``session`` or ``open``)."""

    address: str
    via: str
    session: Session | None = None
    sid: str | None = None

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session else ""


class Console:
    def __init__(self, node: Node, not_ready: Callable[[], list[str]], refusal: Callable[[dict], str | None]):
        """``not_ready``: why the node is not ready (none: ready); ``refusal``: why a request's bearer token is
        refused (None: accepted)."""
        self.node, self.not_ready, self.refusal = node, not_ready, refusal
        self.sessions = Sessions()

    @property
    def open(self) -> bool:
        """No token is configured: the console needs no login (the node is on loopback)."""
        return not self.node.opts.token

    def __call__(self, environ, method: str, path: str) -> Reply:
        reply = self.answer(environ, method, path)
        reply.headers.extend(guard.headers(environ, cache=path.startswith(STATIC) and reply.code == 200))
        return reply

    def answer(self, environ, method: str, path: str) -> Reply:
        if path == "/ui":
            return redirect("/ui/")
        if path.startswith(STATIC):
            name = path[len(STATIC):]
            if name in render.STATIC and method == "GET":
                return render.static(name)
            return page("error.html", 404, title="Not found", message="no such file", caller=None)
        if self.open and not guard.loopback_host(environ):
            return page("error.html", 403, title="Forbidden", message="This node has no token: its console answers "
                        "only at a loopback address (http://127.0.0.1:PORT/ui/).", caller=None)
        if path == "/ui/login":
            return self.login(environ, method)
        caller = self.identify(environ)
        if isinstance(caller, str):
            return self.refuse(environ, method, path, caller)
        reply = self.route(environ, method, path, caller)
        if caller.via == "open" and caller.sid:
            reply.headers.append(guard.session_cookie(environ, caller.sid))
        self.record(environ, method, path, reply, caller)
        return reply

    # -- who is asking -----------------------------------------------------------------------------------
    def identify(self, environ) -> Caller | str:
        """The caller, or why it is not let in."""
        address = environ.get("REMOTE_ADDR", "?")
        if environ.get("HTTP_AUTHORIZATION"):  # a bearer presented decides, right or wrong
            why = self.refusal(environ)
            return why if why else Caller(address, "bearer")
        sid = guard.cookie(environ, COOKIE)
        session = self.sessions.get(sid)
        if session is not None:
            return Caller(address, "open" if self.open else "session", session)
        if self.open:
            sid, session = self.sessions.open(address)
            return Caller(address, "open", session, sid)
        return "the console session expired or is unknown" if sid else "no console session and no bearer token"

    def refuse(self, environ, method: str, path: str, why: str) -> Reply:
        """No credentials, or wrong ones: HTML pages go to the login page, the rest is 401."""
        if self.node.audit is not None:
            self.node.audit.authentication(environ.get("REMOTE_ADDR", "?"), f"{method} {path[:200]}: {why}")
        if method == "GET" and "text/html" in environ.get("HTTP_ACCEPT", ""):
            target = path + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
            return redirect("/ui/login?next=" + quote(target, safe=""), guard.session_cookie(environ, None))
        reply = Reply("401 Unauthorized", [("Content-Type", "application/json"),
                                           ("WWW-Authenticate", 'Bearer realm="dcube-edge"')],
                      b'{"error": "log in at /ui/login, or send Authorization: Bearer TOKEN"}\n')
        return reply

    def login(self, environ, method: str) -> Reply:
        params = dict(wsgi.query(environ))
        target = guard.next_page(params.get("next"))
        if self.open:
            return redirect(target)
        if method == "GET":
            if self.sessions.get(guard.cookie(environ, COOKIE)) is not None:
                return redirect(target)
            return page("login.html", title="Log in", next=target, error=None, caller=None)
        if method != "POST":
            return page("error.html", 405, title="Not allowed", message="log in with the form", caller=None)
        address = environ.get("REMOTE_ADDR", "?")
        form = self.form(environ)
        target = guard.next_page(form.get("next"))
        if why := guard.cross_site(environ):
            return page("error.html", 403, title="Forbidden", message=f"not logged in: {why}", caller=None)
        given = form.get("token", "").strip()
        if not given or not hmac.compare_digest(given.encode(), self.node.opts.token.encode()):
            if self.node.audit is not None:
                self.node.audit.authentication(address, "console login: wrong token")
            return page("login.html", 401, title="Log in", next=target, caller=None,
                        error="That is not this node's token (the content of its --token-file).")
        sid, _ = self.sessions.open(address)
        if self.node.audit is not None:
            self.node.audit.authentication(address, "console login", outcome="success")
        return redirect(target, guard.session_cookie(environ, sid))

    def form(self, environ) -> dict[str, str]:
        """A posted form's fields (URL-encoded; at most MAX_FORM bytes)."""
        try:
            body = wsgi.body(environ, MAX_FORM, "post the console's form")
        except wsgi.BodyError:
            return {}
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

    def protect(self, environ, caller: Caller, form: dict[str, str]) -> str | None:
        """Why a state-changing request is refused as cross-site, or None (a bearer caller is no browser's)."""
        if caller.via == "bearer":
            return None
        if why := guard.cross_site(environ):
            return why
        if caller.session is None or not csrf_matches(caller.session, form.get("csrf", "")):
            return "the form's CSRF token is missing or not this session's: reload the page and try again"
        return None

    # -- the pages -----------------------------------------------------------------------------------------
    def route(self, environ, method: str, path: str, caller: Caller) -> Reply:
        if method == "POST" and path in ("/ui/logout", "/ui/deliveries/retry"):
            form = self.form(environ)
            if why := self.protect(environ, caller, form):
                if self.node.audit is not None:
                    self.node.audit.updated(caller.address, f"POST {path}: refused, {why}", [], outcome="minor")
                return page("error.html", 403, title="Forbidden", message=why, caller=caller)
            return self.logout(environ, caller) if path == "/ui/logout" else self.retry(caller, form)
        if method != "GET":
            reply = page("error.html", 405, title="Not allowed", message=f"{method} is not served here", caller=caller)
            reply.headers.append(("Allow", "GET"))
            return reply
        params = wsgi.query(environ)
        if path == "/ui/":
            return self.show("overview.html", "Overview", caller, overview.overview(self.node, self.not_ready), [])
        if path == "/ui/engine":
            return self.show("engine.html", "Engine", caller, overview.engine(self.node), [])
        if path == "/ui/results":
            try:
                search = results.parse(params, self.node.clf.classes)
            except results.FormError as e:
                return page("error.html", 400, title="Results", message=str(e), caller=caller)
            content, shown = results.results(self.node, search)
            reply = self.show("results.html", "Results", caller, content, None)
            reply.query = True
            return reply
        if path == "/ui/deliveries":
            content, shown = results.deliveries(self.node, number(dict(params).get("page")))
            return self.show("deliveries.html", "Deliveries", caller, {**content, "retried": dict(params).get(
                "retried")}, shown)
        if found := INSTANCE.match(path):
            return self.instance(caller, found.group(1), bool(found.group(2)), dict(params).get("retried"))
        return page("error.html", 404, title="Not found", message=f"no console page {path[:80]}", caller=caller)

    def show(self, template: str, title: str, caller: Caller, content: dict, read) -> Reply:
        reply = page(template, title=title, caller=caller, open=self.open, **content)
        reply.read = read
        return reply

    def instance(self, caller: Caller, uid: str, picture: bool, retried: str | None) -> Reply:
        row = self.node.ledger.instance(uid)
        if row is None:
            reply = page("error.html", 404, title="Not found", message=f"no instance {uid} was received", caller=caller)
            reply.read = []
            return reply
        if picture:
            return self.thumbnail(row)
        content, read = instance.context(self.node, row)
        return self.show("instance.html", "Instance", caller, {**content, "retried": retried}, read)

    def thumbnail(self, row) -> Reply:
        from ...images import ImageError

        read = [(row.study or "", "", row.uid)]
        if not instance.has_thumbnail(row):
            return Reply("404 Not Found", [("Content-Type", "text/plain")], b"no pixels kept for this instance\n",
                         read=read)
        try:
            png = instance.thumbnail(self.node, row)
        except (ImageError, OSError) as e:
            return Reply("404 Not Found", [("Content-Type", "text/plain")], f"{e}\n".encode(), read=read)
        return Reply("200 OK", [("Content-Type", "image/png")], png, read=read)

    def retry(self, caller: Caller, form: dict[str, str]) -> Reply:
        uid = form.get("uid") or None
        if uid is not None and not UID.match(uid):
            return page("error.html", 400, title="Retry", message="uid: a SOP Instance UID is digits and dots",
                        caller=caller)
        n, concerned = results.retry(self.node, uid)
        if self.node.audit is not None:
            self.node.audit.updated(caller.address, f"POST /ui/deliveries/retry{f' uid={uid}' if uid else ''}: {n} "
                                    "dead delivery(ies) re-queued", concerned)
        back = f"/ui/instances/{uid}" if uid and form.get("from") == "instance" else "/ui/deliveries"
        return redirect(f"{back}?retried={n}")

    def logout(self, environ, caller: Caller) -> Reply:
        self.sessions.close(guard.cookie(environ, COOKIE))
        if self.node.audit is not None:
            self.node.audit.authentication(caller.address, "console logout", outcome="success", type_="logout")
        return redirect("/ui/login", guard.session_cookie(environ, None))

    def record(self, environ, method: str, path: str, reply: Reply, caller: Caller) -> None:
        """A page view in the audit trail, with the outcome its status gives (actions record themselves)."""
        trail = self.node.audit
        if trail is None or method != "GET":
            return
        outcome = "success" if reply.code < 400 else "minor" if reply.code < 500 else "serious"
        target = path + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
        what = f"console {method} {target[:400]} -> {reply.status}"
        if reply.query:
            trail.query(caller.address, target, outcome, description=what)
        else:
            trail.read(caller.address, what, reply.read or [], outcome)


def number(text: str | None) -> int:
    try:
        return max(1, int(text or 1))
    except ValueError:
        return 1

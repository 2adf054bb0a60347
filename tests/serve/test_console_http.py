"""The console over plain HTTP (no browser), against `dcube-edge serve` started for real: no page without
credentials (a redirect to the login page for HTML, 401 for the rest), the bearer header and the session cookie
both let in, the cookie's flags and that it is not the token, the security headers on every answer, CSRF and
Origin checks on the retry action, markup from DICOM attributes escaped, every page view audited (records valid
against the schema), and a node without a token answering only at a loopback Host."""
from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

pytest.importorskip("pynetdicom", reason="serve needs the `serve` extra (pynetdicom)")
pytest.importorskip("jinja2", reason="the console needs the `serve` extra (jinja2)")

from serving import Pacs, Server, dicom_of, free_port, send  # noqa: E402
from test_audit import event, records  # noqa: E402

TOKEN = "console-token-for-the-tests-0123"
NAME = "<script>alert(1)</script>^Jane"  # markup in a person name (no '=': that separates its component groups)
MARKUP = "<img src=x onerror=alert(1)>"
PAGES = ("/ui/", "/ui/results", "/ui/results?patient_id=P1", "/ui/deliveries", "/ui/engine")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def call(url: str, headers: dict | None = None, data: dict | None = None) -> tuple[int, dict, str]:
    """(status, headers, body) of a GET, or of a form POST with ``data``; redirects are not followed."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with OPENER.open(request, timeout=15) as r:
            return r.status, dict(r.headers), r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def node(ort_engine, demo_data, tmp_path_factory):
    """A node with a token and a PACS that refuses every SR, holding one instance whose patient name is markup."""
    from pydicom import dcmread

    tmp = tmp_path_factory.mktemp("console-http")
    (tmp / "token").write_text(TOKEN + "\n")
    scan = dicom_of(sorted((demo_data / "val" / "benign").iterdir())[0], tmp / "scan.dcm")
    ds = dcmread(scan)
    ds.PatientName, ds.PatientID, ds.AccessionNumber = NAME, MARKUP, "<b>A1</b>"
    ds.save_as(scan, enforce_file_format=True)
    port = free_port()
    pacs = Pacs(port, status=0xC000)
    server = Server(ort_engine, tmp / "spool", "--token-file", str(tmp / "token"), "--forward", f"PACS@127.0.0.1:{port}",
                    "--viewer-url", "http://viewer.example/view?study={study}")
    try:
        assert send(server.dicom, [scan]) == [0]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        uid = str(ds.SOPInstanceUID)
        server.result(uid, headers=auth)
        deadline = time.time() + 60  # the PACS refuses: the delivery is dead at its first attempt, once tried
        while dead(server, uid) is None and time.time() < deadline:
            time.sleep(0.2)
        assert dead(server, uid) is not None, "the refused delivery was never dead-lettered"
        yield server, uid, str(ds.StudyInstanceUID), tmp / "spool"
    finally:
        server.stop()
        pacs.stop()


def dead(server: Server, uid: str) -> int | None:
    """The attempts of the instance's dead delivery, None while it is not dead."""
    delivery = server.get(f"/v1/results/{uid}", {"Authorization": f"Bearer {TOKEN}"})["deliveries"][0]
    return delivery["attempts"] if delivery["status"] == "dead" else None


def login(base: str) -> tuple[str, str]:
    """Log in with the token: (the Cookie header to send, the session's CSRF token from a page)."""
    code, headers, _ = call(f"{base}/ui/login", data={"token": TOKEN, "next": "/ui/deliveries"},
                            headers={"Origin": base})
    assert code == 303 and headers["Location"] == "/ui/deliveries"
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    code, _, page = call(f"{base}/ui/deliveries", {"Cookie": cookie})
    assert code == 200
    return cookie, re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_no_page_without_credentials(node):
    server, uid, _, _ = node
    base = f"http://127.0.0.1:{server.http}"
    for path in (*PAGES, f"/ui/instances/{uid}"):
        code, headers, _ = call(base + path, {"Accept": "text/html,application/xhtml+xml"})
        assert code == 303 and headers["Location"] == "/ui/login?next=" + urllib.parse.quote(path, safe=""), path
        code, headers, _ = call(base + path, {"Accept": "application/json"})
        assert code == 401 and headers["WWW-Authenticate"].startswith("Bearer"), path
    code, _, _ = call(f"{base}/ui/instances/{uid}/thumbnail.png", {"Accept": "image/png"})
    assert code == 401
    code, _, _ = call(f"{base}/ui/deliveries/retry", data={"uid": uid})
    assert code == 401
    code, _, _ = call(f"{base}/ui/results", {"Authorization": "Bearer not-the-token-at-all", "Accept": "text/html"})
    assert code in (303, 401)
    code, _, _ = call(f"{base}/ui/results", {"Cookie": "dcube_console=forged", "Accept": "application/json"})
    assert code == 401
    code, _, page = call(f"{base}/ui/login")
    assert code == 200 and 'name="token"' in page and "onerror" not in page


def test_bearer_and_session_show_the_results_with_markup_escaped(node):
    server, uid, study, _ = node
    base = f"http://127.0.0.1:{server.http}"
    code, _, page = call(f"{base}/ui/results", {"Authorization": f"Bearer {TOKEN}"})
    assert code == 200 and uid in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and MARKUP not in page
    assert "&lt;b&gt;A1&lt;/b&gt;" in page and "<b>A1</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;, Jane" in page and "<script>" not in page
    cookie, _ = login(base)
    code, _, page = call(f"{base}/ui/instances/{uid}", {"Cookie": cookie})
    assert code == 200 and MARKUP not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert f'href="http://viewer.example/view?study={study}"' in page
    assert "Imaging Measurement Report" in page  # the kept SR's content tree
    code, headers, png = call(f"{base}/ui/instances/{uid}/thumbnail.png", {"Cookie": cookie})
    assert code == 200 and headers["Content-Type"] == "image/png"
    code, _, page = call(f"{base}/ui/results?patient_id=P2", {"Cookie": cookie})
    assert code == 200 and uid not in page
    code, _, page = call(f"{base}/ui/results?" + urllib.parse.urlencode({"patient_id": MARKUP}), {"Cookie": cookie})
    assert code == 200 and uid in page
    code, _, page = call(f"{base}/ui/results?date_from=yesterday", {"Cookie": cookie})
    assert code == 400 and "YYYY-MM-DD" in page
    code, _, _ = call(f"{base}/ui/instances/../../etc/passwd", {"Cookie": cookie})
    assert code == 404


def test_the_session_cookie_and_the_security_headers(node):
    server, _, _, _ = node
    base = f"http://127.0.0.1:{server.http}"
    code, headers, page = call(f"{base}/ui/login", data={"token": "wrong-token-0123456789"}, headers={"Origin": base})
    assert code == 401 and "Set-Cookie" not in headers and "not this node" in page
    code, headers, _ = call(f"{base}/ui/login", data={"token": TOKEN, "next": "https://evil.example/"},
                            headers={"Origin": base})
    assert code == 303 and headers["Location"] == "/ui/"
    flags = [f.strip() for f in headers["Set-Cookie"].split(";")]
    name, value = flags[0].split("=", 1)
    assert name == "dcube_console" and len(value) >= 40 and TOKEN not in value
    assert {"HttpOnly", "SameSite=Strict", "Path=/ui"} <= set(flags) and "Secure" not in flags  # plain HTTP here
    code, _, _ = call(f"{base}/ui/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"})
    assert code == 403
    for path in (*PAGES, "/ui/login", "/ui/static/console.css", "/ui/nothing"):
        _, headers, _ = call(base + path, {"Authorization": f"Bearer {TOKEN}"})
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp, path
        assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "same-origin", path
        assert headers["Cache-Control"] == ("no-store" if not path.startswith("/ui/static") else "private, max-age=3600")


def test_retry_refused_without_the_csrf_token_or_from_another_origin(node):
    server, uid, _, spool = node
    base = f"http://127.0.0.1:{server.http}"
    code, _, _ = call(f"{base}/ui/login", data={"token": "wrong-token-0123456789"}, headers={"Origin": base})
    assert code == 401  # audited below (the module's tests may run on other workers, with their own node)
    cookie, csrf = login(base)
    form = {"uid": uid}
    deadline = time.time() + 60  # another test's retry is tried again and refused again
    while (attempts := dead(server, uid)) is None and time.time() < deadline:
        time.sleep(0.2)
    code, _, page = call(f"{base}/ui/deliveries/retry", {"Cookie": cookie, "Origin": base}, form)
    assert code == 403 and "CSRF" in page
    code, _, _ = call(f"{base}/ui/deliveries/retry", {"Cookie": cookie, "Origin": base}, {**form, "csrf": "forged"})
    assert code == 403
    other_cookie, _ = login(base)  # another session's token is no good either
    code, _, _ = call(f"{base}/ui/deliveries/retry", {"Cookie": other_cookie, "Origin": base}, {**form, "csrf": csrf})
    assert code == 403
    code, _, _ = call(f"{base}/ui/deliveries/retry", {"Cookie": cookie, "Origin": "http://evil.example"},
                      {**form, "csrf": csrf})
    assert code == 403
    assert attempts is not None and dead(server, uid) == attempts  # none of the refused retries re-queued it
    code, headers, _ = call(f"{base}/ui/deliveries/retry", {"Cookie": cookie, "Origin": base}, {**form, "csrf": csrf})
    assert code == 303 and headers["Location"] == "/ui/deliveries?retried=1"
    assert call(f"{base}/ui/results", {"Cookie": cookie})[0] == 200  # a search and a read, audited below
    assert call(f"{base}/ui/instances/{uid}", {"Cookie": cookie})[0] == 200
    code, headers, _ = call(f"{base}/ui/logout", {"Cookie": cookie, "Origin": base}, {"csrf": csrf})
    assert code == 303 and "Max-Age=0" in headers["Set-Cookie"]
    code, _, _ = call(f"{base}/ui/", {"Cookie": cookie, "Accept": "application/json"})
    assert code == 401  # the session ended with the logout
    found = records(spool / "audit.log")  # each record valid against the schema
    kinds = [(event(m), m.find("EventIdentification/EventOutcomeDescription")) for m in found]
    described = [(e, d.text if d is not None else "") for e, d in kinds]
    assert any(e == ("DICOM Instances Accessed", "U", "0") and "1 dead delivery" in d for e, d in described)
    assert any(e == ("DICOM Instances Accessed", "U", "4") and "CSRF" in d for e, d in described)
    assert any(e == ("User Authentication", "E", "0") and d == "console login" for e, d in described)
    assert any(e == ("User Authentication", "E", "0") and d == "console logout" for e, d in described)
    assert any(e == ("User Authentication", "E", "4") and "wrong token" in d for e, d in described)
    assert any(e == ("Query", "E", "0") and "/ui/results" in d for e, d in described)
    read = [m for m in found if event(m) == ("DICOM Instances Accessed", "R", "0") and
            f"/ui/instances/{uid}" in m.find("EventIdentification/EventOutcomeDescription").text]
    assert read and any(i.get("UID") == uid for m in read for i in m.iter("Instance"))


def test_without_a_token_the_console_is_open_on_loopback_only(ort_engine, tmp_path):
    server = Server(ort_engine, tmp_path / "spool")
    base = f"http://127.0.0.1:{server.http}"
    try:
        code, headers, page = call(f"{base}/ui/results")
        assert code == 200 and "no token configured" in page
        cookie = headers["Set-Cookie"].split(";", 1)[0]  # a session all the same, for the CSRF token
        csrf = re.search(r'name="csrf" value="([^"]+)"', call(f"{base}/ui/deliveries", {"Cookie": cookie})[2])
        code, _, _ = call(f"{base}/ui/deliveries/retry", {"Cookie": cookie}, {})
        assert code == 403 and csrf is None  # no dead letters, no form; and no post without the token
        code, _, page = call(f"{base}/ui/results", {"Host": "rebound.evil.example"})
        assert code == 403 and "loopback" in page
        assert call(f"{base}/ui/login")[1]["Location"] == "/ui/"
    finally:
        server.stop()

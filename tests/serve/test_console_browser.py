"""The console in a real browser: Playwright for Python driving Debian's Chromium (never a downloaded build; the
test skips, saying why, where /usr/bin/chromium or playwright is absent). A node with a token and a PACS that
refuses SRs until its fault is fixed: log in, find an instance by patient ID, open it, retry its dead letter and
see it delivered; markup held in DICOM attributes shows as text and never runs (no dialog, no script element, no
window flag set, nothing blocked by the CSP either); no page opens without logging in; a retry posted without the
session's CSRF token is refused."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

pytest.importorskip("pynetdicom", reason="serve needs the `serve` extra (pynetdicom)")
pytest.importorskip("jinja2", reason="the console needs the `serve` extra (jinja2)")
playwright_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (the `dev` extra)")

from serving import Pacs, Server, dicom_of, free_port, send  # noqa: E402

CHROMIUM = os.environ.get("DCUBE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
TOKEN = "console-browser-token-0123456789"
NAME = "<script>alert('name')</script>^<b>Jane</b>"  # no '=': it separates a person name's component groups
PATIENT_ID = "<img src=x onerror=window.pwned=1>"
ACCESSION = "<i>ACC1</i>"
PAGES = ("/ui/", "/ui/results", "/ui/deliveries", "/ui/engine")


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package chromium; .ci/run installs it)")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def node(ort_engine, demo_data, tmp_path_factory):
    """A node whose PACS refuses every SR (0xC000: dead-lettered at once) until a test fixes it; two instances,
    one whose patient name and accession number are markup."""
    from pydicom import dcmread

    tmp = tmp_path_factory.mktemp("console-browser")
    (tmp / "token").write_text(TOKEN)
    scans, uids = [], []
    for i, png in enumerate(sorted((demo_data / "val" / "malignant").iterdir())[:2]):
        scan = dicom_of(png, tmp / f"scan{i}.dcm")
        ds = dcmread(scan)
        ds.PatientName, ds.PatientID = (NAME, PATIENT_ID) if i == 0 else ("ROE^RICHARD", "PLAIN2")
        ds.AccessionNumber = ACCESSION if i == 0 else "ACC2"
        ds.save_as(scan, enforce_file_format=True)
        scans.append(scan)
        uids.append(str(ds.SOPInstanceUID))
    port = free_port()
    pacs = Pacs(port, status=0xC000)
    server = Server(ort_engine, tmp / "spool", "--token-file", str(tmp / "token"), "--forward", f"PACS@127.0.0.1:{port}")
    try:
        assert send(server.dicom, scans) == [0, 0]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for uid in uids:
            server.result(uid, headers=auth)
        deadline = time.time() + 30
        while time.time() < deadline and any(server.get(f"/v1/results/{u}", auth)["deliveries"][0]["status"] != "dead"
                                             for u in uids):
            time.sleep(0.2)
        yield server, pacs, uids, json.loads((ort_engine / "manifest.json").read_text())["preprocess"]["size"]
    finally:
        server.stop()
        pacs.stop()


def watched(context):
    """A page whose dialogs, CSP reports and page errors are recorded (any of them fails the test)."""
    page = context.new_page()
    seen: list[str] = []
    page.on("dialog", lambda d: (seen.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: seen.append(f"error: {e}"))
    page.on("console", lambda m: seen.append(f"console: {m.text}") if m.type == "error" else None)
    return page, seen


def test_log_in_find_open_retry_and_see_it_delivered(browser, node):
    server, pacs, (marked, plain), side = node
    base = f"http://127.0.0.1:{server.http}"
    context = browser.new_context()
    page, seen = watched(context)
    page.goto(f"{base}/ui/results")
    assert page.url.startswith(f"{base}/ui/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    assert page.url == f"{base}/ui/results"  # back where it was going
    cookie = next(c for c in context.cookies() if c["name"] == "dcube_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] != TOKEN

    page.fill("input[name=patient_id]", "<img*")  # a prefix
    page.click("form.search button[type=submit]")
    rows = page.locator("table.results tbody tr")
    assert rows.count() == 1
    assert rows.first.locator("td.name").inner_text() == "<script>alert('name')</script>, <b>Jane</b>"
    assert PATIENT_ID in rows.first.inner_text() and ACCESSION in rows.first.inner_text()  # the markup as text
    rows.first.locator("a").click()
    assert page.url == f"{base}/ui/instances/{marked}"
    assert page.locator("p.called").inner_text() in ("benign", "malignant", "normal")
    assert page.locator("table.probs tbody tr").count() == 3
    assert page.locator("ul.tree").get_by_text("Imaging Measurement Report").count() == 1
    size = page.evaluate("[document.querySelector('figure.thumb img').naturalWidth, "
                         "document.querySelector('figure.thumb img').naturalHeight]")
    assert size == [side, side]  # the thumbnail loaded: what the model read, at the engine's input size

    assert page.locator("td").get_by_text("dead").count() >= 1
    pacs.status = 0x0000  # the PACS's fault is fixed
    page.goto(f"{base}/ui/deliveries")
    assert page.locator("table.dead").get_by_text("Cannot Understand").count() == 2
    page.locator("table.dead tr", has_text=PATIENT_ID).locator("button").click()
    assert page.url == f"{base}/ui/deliveries?retried=1"
    page.goto(f"{base}/ui/instances/{marked}")
    deadline = time.time() + 30
    while page.locator("span.state.delivered").count() == 0 and time.time() < deadline:
        time.sleep(0.5)
        page.reload()
    assert page.locator("span.state.delivered").count() == 1
    assert [str(sr.SOPInstanceUID) for sr in pacs.received] and page.locator("td").get_by_text("dead").count() == 0
    page.goto(f"{base}/ui/deliveries")
    assert page.locator("table.dead tr", has_text="PLAIN2").count() == 1  # the other one still waits

    for path in (*PAGES, f"/ui/instances/{marked}"):
        page.goto(base + path)
        assert page.evaluate("window.pwned") is None
        assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert seen == [], seen
    context.close()


def test_no_page_opens_without_logging_in(browser, node):
    server, _, (marked, _), _ = node
    base = f"http://127.0.0.1:{server.http}"
    context = browser.new_context()
    page = context.new_page()
    for path in (*PAGES, f"/ui/instances/{marked}", "/ui/results?patient_id=PLAIN2"):
        page.goto(base + path)
        assert page.url.startswith(f"{base}/ui/login?next="), path
        assert page.locator("input#token").count() == 1 and "ROE" not in page.content()
    answer = context.request.get(f"{base}/ui/instances/{marked}/thumbnail.png")
    assert answer.status == 401
    page.fill("#token", "wrong-token-but-long-enough")
    page.click("button[type=submit]")
    assert page.locator("p.error").count() == 1 and page.url.startswith(f"{base}/ui/login")
    context.close()


def test_a_retry_without_the_csrf_token_is_refused(browser, node):
    server, _, (_, plain), _ = node
    base = f"http://127.0.0.1:{server.http}"
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base}/ui/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    assert page.url == f"{base}/ui/"
    answer = context.request.post(f"{base}/ui/deliveries/retry", form={"uid": plain}, headers={"Origin": base},
                                  max_redirects=0)
    assert answer.status == 403 and "CSRF" in answer.text()
    csrf = page.locator("form[action='/ui/logout'] input[name=csrf]").get_attribute("value")
    answer = context.request.post(f"{base}/ui/deliveries/retry", form={"uid": plain, "csrf": csrf},
                                  headers={"Origin": "http://attacker.example"}, max_redirects=0)
    assert answer.status == 403
    page.goto(f"{base}/ui/deliveries")
    assert page.locator("table.dead tr", has_text="PLAIN2").count() == 1  # nothing was re-queued
    page.click("text=Log out")
    assert page.url == f"{base}/ui/login"
    page.goto(f"{base}/ui/deliveries")
    assert page.url.startswith(f"{base}/ui/login")
    context.close()

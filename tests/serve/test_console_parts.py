"""The console's parts without a node: sessions expire, the redirect after login stays on the node, cross-site
requests are told apart, person names read as names, and the ledger's search finds the right rows, a page at a
time, through its indexes."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("jinja2", reason="the console needs the `serve` extra (jinja2)")

from dcube_edge.runtimes.serve.console import guard, queries, render  # noqa: E402
from dcube_edge.runtimes.serve.console.sessions import IDLE_S, LIFETIME_S, Sessions, csrf_matches  # noqa: E402
from dcube_edge.runtimes.serve.ledger import Ledger  # noqa: E402
from dcube_edge.runtimes.serve.records import Listing, Report  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_end_when_idle_at_their_lifetime_and_at_logout():
    clock = Clock()
    sessions = Sessions(clock)
    sid, session = sessions.open("127.0.0.1")
    assert sessions.get(sid) is session and sessions.get("forged") is None and sessions.get(None) is None
    assert sid not in sessions.held  # the store holds digests, not cookie values
    clock.now += IDLE_S - 1
    assert sessions.get(sid) is session  # a request restarts the idle time
    clock.now += IDLE_S + 1
    assert sessions.get(sid) is None
    sid, _ = sessions.open("127.0.0.1")
    for _ in range(int(LIFETIME_S // (IDLE_S / 2)) + 1):  # kept busy, it still ends at its lifetime
        clock.now += IDLE_S / 2
        sessions.get(sid)
    assert sessions.get(sid) is None
    sid, session = sessions.open("127.0.0.1")
    assert csrf_matches(session, session.csrf) and not csrf_matches(session, "") and not csrf_matches(session, "x")
    sessions.close(sid)
    assert sessions.get(sid) is None


def test_the_page_after_login_is_always_one_of_the_console():
    assert guard.next_page("/ui/results?patient_id=P1") == "/ui/results?patient_id=P1"
    for hostile in ("https://evil.example/", "//evil.example/ui/", "/ui/\r\nSet-Cookie: x", "/dicomweb/studies", None,
                    "/ui/\\\\evil"):
        assert guard.next_page(hostile) == "/ui/"


def test_a_post_from_another_site_is_told_apart():
    ours = {"HTTP_HOST": "127.0.0.1:8080"}
    assert guard.cross_site({**ours, "HTTP_ORIGIN": "http://127.0.0.1:8080"}) is None
    assert guard.cross_site({**ours, "HTTP_REFERER": "http://127.0.0.1:8080/ui/deliveries"}) is None
    assert guard.cross_site(ours) is None  # neither header: the CSRF token decides
    assert "evil" in guard.cross_site({**ours, "HTTP_ORIGIN": "http://evil.example"})
    assert guard.cross_site({**ours, "HTTP_ORIGIN": "http://127.0.0.1:9999"})
    assert guard.cross_site({**ours, "HTTP_ORIGIN": "null"})
    assert guard.loopback_host({"HTTP_HOST": "localhost:8080"}) and guard.loopback_host({"HTTP_HOST": "[::1]:80"})
    assert guard.loopback_host({"HTTP_HOST": "127.0.0.2"})
    assert not guard.loopback_host({"HTTP_HOST": "rebound.evil.example:8080"}) and not guard.loopback_host({})


def test_person_names_read_as_names():
    assert render.pn("DOE^JANE^M^^") == "DOE, JANE M"
    assert render.pn("Yamada^Tarou=山田^太郎=やまだ^たろう") == "Yamada, Tarou (山田, 太郎; やまだ, たろう)"
    assert render.pn("") == "–" and render.pn(None) == "–"
    assert render.da("20261126") == "2026-11-26" and render.da("") == "–"


def filled(path: Path, n: int) -> Ledger:
    """A ledger of ``n`` received instances (every third classified benign, the rest malignant; every fifth dead
    at its one destination), received a second apart."""
    ledger = Ledger(path)
    now = time.time()
    with ledger.transaction() as db:
        for i in range(n):
            db.execute("INSERT INTO instances (uid, path, source, received, status, label, classified, patient_id, "
                       "patient_name, accession, study_date, study) VALUES (?, ?, 'S@x', ?, 'done', ?, ?, ?, ?, ?, ?, "
                       "'1.2.3')", (f"1.2.{i}", f"/nowhere/{i}", now - n + i, "benign" if i % 3 == 0 else "malignant",
                                    now - n + i, f"P{i % 50:03d}", f"NAME^{i}", f"ACC{i}", f"202611{1 + i % 28:02d}"))
            db.execute("INSERT INTO deliveries (uid, destination, status, attempts, next_at, updated, error, given) VALUES "
                       "(?, 'dicom:PACS', ?, 1, 0, ?, ?, ?)", (f"1.2.{i}", "dead" if i % 5 == 0 else "delivered",
                                                              now - n + i, "refused" if i % 5 == 0 else None,
                                                              "refused" if i % 5 == 0 else None))
    return ledger


def test_the_results_search_filters_pages_and_uses_the_indexes(tmp_path):
    ledger = filled(tmp_path / "ledger.sqlite", 500)
    total, rows = queries.search(ledger, queries.Search())
    assert total == 500 and len(rows) == queries.PAGE and rows[0].instance.uid == "1.2.499"  # newest first
    total, rows = queries.search(ledger, queries.Search(page=10))
    assert [r.instance.uid for r in rows][-1] == "1.2.0"
    total, rows = queries.search(ledger, queries.Search(patient_id="P007"))
    assert total == 10 and {r.instance.patient_id for r in rows} == {"P007"}
    total, _ = queries.search(ledger, queries.Search(patient_id="P00*"))
    assert total == 100  # P000 .. P009
    total, rows = queries.search(ledger, queries.Search(accession="ACC42"))
    assert [r.instance.uid for r in rows] == ["1.2.42"]
    total, rows = queries.search(ledger, queries.Search(date_from="20261105", date_to="20261106"))
    assert total > 0 and {r.instance.study_date for r in rows} <= {"20261105", "20261106"}
    total, rows = queries.search(ledger, queries.Search(decision="benign", state="dead"))
    assert total == len([i for i in range(500) if i % 3 == 0 and i % 5 == 0])
    assert all(r.deliveries == {"dead": 1} for r in rows)
    total, _ = queries.search(ledger, queries.Search(state="done"))
    assert total == 500
    plan = " ".join(str(r) for r in ledger.query("EXPLAIN QUERY PLAN SELECT uid FROM instances i WHERE i.patient_id = ? "
                                                 "ORDER BY i.received DESC LIMIT 50", "P001"))
    assert "instances_patient" in plan and "TEMP B-TREE" not in plan
    dead, letters = queries.deliveries(ledger, "dead", page=1)
    assert dead == 100 and len(letters) == queries.PAGE and letters[0].uid == "1.2.495"
    assert queries.throughput(ledger, (60, 1000))[1000] >= 499
    ledger.close()


def test_the_ledger_keeps_the_listing_and_a_correction_replaces_it(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.add("1.2.3", tmp_path / "a.dcm", "S@x", "c", study="1.2", header="h", listing=Listing("P1", "A^B", "X1",
                                                                                                   "20260101"))
    row = ledger.instance("1.2.3")
    assert (row.patient_id, row.patient_name, row.accession, row.study_date) == ("P1", "A^B", "X1", "20260101")
    ledger.correct("1.2.3", "h2", "1.2", "S@x", Listing("P2", "C^D", "X2", "20260102"))
    assert ledger.instance("1.2.3").patient_id == "P2"
    assert queries.search(ledger, queries.Search(patient_id="P1"))[0] == 0
    ledger.finish([(ledger.instance("1.2.3"), {"label": "a", "probs": {"a": 1.0}})], "e", time.time())
    assert ledger.attach(Report("9.9", "1.2.3", "1.2", "9", 1, 1, "p", "s", time.time()), 1, ())
    assert [r.uid for r in queries.reports_of(ledger, "1.2.3")] == ["9.9"]
    ledger.close()


def test_the_console_needs_no_torch():
    """The console is part of the torch-free node: its modules import and its pages render with `import torch`
    failing (jinja2 comes with the `serve` extra)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, BlockTorch())
        from dcube_edge.runtimes.serve.http import HttpApi
        from dcube_edge.runtimes.serve.console import render
        page = render.page("login.html", title="Log in", next="/ui/", error="<b>", caller=None)
        assert b"&lt;b&gt;" in page.body and "torch" not in sys.modules
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_per_frame_results_and_the_viewer_link():
    """A result whose probabilities carry per-frame results becomes a strip; a single-frame one has none. The
    viewer's address gets the study's UID where it says {study}."""
    from dcube_edge.runtimes.serve.console.instance import class_probs, frames, viewer_link
    from dcube_edge.runtimes.serve.records import Instance, State

    single = Instance("1.2", "/x", "S@x", 0.0, State.DONE, probs={"a": 0.7, "b": 0.3})
    assert frames(single) == [] and class_probs(single) == {"a": 0.7, "b": 0.3}
    multi = Instance("1.2", "/x", "S@x", 0.0, State.DONE, probs={"a": 0.6, "b": 0.4, "frames": [
        {"label": "a", "probs": {"a": 0.9, "b": 0.1}}, {"label": "b", "probs": {"a": 0.2, "b": 0.8}}]})
    strip = frames(multi)
    assert [(f.index, f.label) for f in strip] == [(0, "a"), (1, "b")] and strip[1].probs["b"] == 0.8
    assert class_probs(multi) == {"a": 0.6, "b": 0.4}
    assert viewer_link("http://ohif/viewer?StudyInstanceUIDs={study}", "1.2.3") == "http://ohif/viewer?StudyInstanceUIDs=1.2.3"
    assert viewer_link(None, "1.2.3") is None and viewer_link("http://v/{study}", None) is None

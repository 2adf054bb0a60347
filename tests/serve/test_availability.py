"""A node a site can leave running (issue 38): a bad reload keeps it up, it restarts at once after a stop, one node
per spool, `spool status` on a spool with work, SIGTERM stops the intake before it reports, a PACS outage loses no
result, a full disk is refused at the door and does not take the node down. Each test failed on the code before."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="serve needs the `serve` extra (pynetdicom)")
pytest.importorskip("cheroot", reason="serve needs the `serve` extra (cheroot)")

from serving import EXE, Pacs, Server, dicom_of, free_port, send  # noqa: E402


@pytest.fixture()
def scans(demo_data, tmp_path) -> list[Path]:
    pngs = sorted((demo_data / "val" / "malignant").iterdir())[:2] + sorted((demo_data / "val" / "benign").iterdir())[:2]
    return [dicom_of(p, tmp_path / f"scan{i}.dcm") for i, p in enumerate(pngs)]


def uid_of(path: Path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def wait(predicate, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def events(log: Path) -> list[dict]:
    return [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]


def spool_status(spool: Path) -> dict:
    res = subprocess.run([str(EXE), "spool", "status", str(spool), "--json", "-"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    return json.loads(res.stdout)


def test_spool_status_shows_a_spool_with_work_by_state(tmp_path):
    """Item 4: `spool status` crashed (AttributeError, exit 3) on any spool with work in it and its --json had
    lost the per-state counts (the total overwrote them)."""
    import sqlite3

    from dcube_edge.runtimes.serve.ledger import Ledger

    spool = tmp_path / "spool"
    spool.mkdir()
    ledger = Ledger(spool / "ledger.sqlite")
    for i in range(3):
        ledger.add(f"1.2.3.{i}", spool / f"{i}.dcm", "SCANNER@127.0.0.1")
    ledger.add("1.2.3.9", spool / "9.dcm", "SCANNER@127.0.0.1", not_applicable="not an image")
    ledger.close()
    with sqlite3.connect(spool / "ledger.sqlite") as db:  # one classified (the rest of its row does not matter here)
        db.execute("UPDATE instances SET status = 'done' WHERE uid = '1.2.3.0'")
    found = spool_status(spool)
    assert found["instances"] == {"pending": 2, "done": 1, "not_applicable": 1}
    assert found["total_instances"] == 4
    res = subprocess.run([str(EXE), "spool", "status", str(spool)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "2 pending" in res.stdout and "1 done" in res.stdout, res.stdout + res.stderr


def time_wait_on(port: int) -> None:
    """A connection on ``port`` closed first by its accepting side: that side's socket stays in TIME-WAIT (about
    60 s on Linux), as the node's own connections do after a stop that followed traffic."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the accepting side closes first: its end enters TIME-WAIT
        client.recv(1)
        client.close()
    with socket.socket() as plain:  # what the old start-up check did: bind without SO_REUSEADDR
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))


def test_a_node_restarts_at_once_after_a_stop_that_followed_traffic(ort_engine, scans, tmp_path):
    """Item 2: a restart within about 60 s of a stop after traffic failed "--dicom-port … Address already in use"
    though nothing held it: the start-up check bound a test socket without SO_REUSEADDR and tripped on TIME-WAIT."""
    first = Server(ort_engine, tmp_path / "spool")
    ports = (first.dicom, first.http)
    try:
        assert send(first.dicom, scans[:2]) == [0, 0]
        for _ in range(3):
            first.get("/healthz")
    finally:
        first.stop(signal.SIGTERM)
    time_wait_on(ports[0])
    time_wait_on(ports[1])
    again = Server(ort_engine, tmp_path / "spool", ports=ports)
    try:
        assert again.result(uid_of(scans[1]))["status"] == "done"
    finally:
        again.stop()
    with socket.socket() as taken:  # a port another program listens on is still refused, naming the option
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        res = subprocess.run([str(EXE), "serve", str(ort_engine), "--spool", str(tmp_path / "spool2"), "--dicom-port",
                              str(taken.getsockname()[1])], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--dicom-port" in res.stderr and not (tmp_path / "spool2").exists()


def test_a_second_node_on_the_same_spool_is_refused(ort_engine, scans, tmp_path):
    """Item 5: a second node started on the same spool ran beside the first and most deliveries went twice."""
    spool = tmp_path / "spool"
    first = Server(ort_engine, spool)
    try:
        res = subprocess.run([str(EXE), "serve", str(ort_engine), "--spool", str(spool), "--dicom-port", str(free_port()),
                              "--http-port", str(free_port())], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "in use by another node" in res.stderr and f"pid {first.proc.pid}" in res.stderr
        assert send(first.dicom, scans[:1]) == [0]  # the first one is untouched
    finally:
        first.stop()
    again = Server(ort_engine, spool)  # the lock goes with the process that held it
    again.stop()


def test_a_bad_reload_keeps_the_node_running_and_a_good_one_applies(ort_engine, scans, tmp_path):
    """Item 1: a typo in the config file followed by SIGHUP stopped the node (exit 2), and under systemd the
    restart read the same file, so it stayed down. Now the bad file is refused with the reason and the node goes
    on; a good file's live settings apply, its other changes are named as needing a restart."""
    config = tmp_path / "serve.toml"
    config.write_text('min_free = "1B"\nlog_format = "json"\n')
    log = tmp_path / "node.log"
    server = Server(ort_engine, tmp_path / "spool", "--config", str(config), log=log)
    try:
        for bad, named in (("max_batchh = 4\n", "unknown key 'max_batchh'"), ("min_free = \"lots\"\n", "min_free"),
                           ("keep_days = 0\n", "keep_days 0: must lie in 1..36500"), ("[broken\n", "not valid TOML")):
            config.write_text(bad)
            server.proc.send_signal(signal.SIGHUP)
            wait(lambda named=named: any(e["event"] == "reload-refused" and named in e["message"] for e in events(log)),
                 10, f"the refusal of {bad!r}")
            assert server.proc.poll() is None and server.get("/healthz")["status"] == "ok"
        assert send(server.dicom, scans[:1]) == [0]
        config.write_text(f'min_free = "{shutil.disk_usage(tmp_path).free * 10}B"\nlog_format = "json"\nmax_batch = 3\n')
        server.proc.send_signal(signal.SIGHUP)
        wait(lambda: any(e["event"] == "reloaded" for e in events(log)), 10, "the reload")
        reloaded = next(e for e in events(log) if e["event"] == "reloaded")["message"]
        assert "min_free now" in reloaded and "max_batch changed: takes effect at the next start" in reloaded
        assert send(server.dicom, scans[1:2]) == [0xA700]  # the new watermark applies at once
    finally:
        server.stop()
    assert server.proc.returncode == 130


def test_sigterm_takes_nothing_in_after_it_reports_stopped(ort_engine, demo_data, tmp_path):
    """Item 18: SIGTERM printed "stopped: 17 pending" and then acknowledged 49 more instances over 1.3 s, and the
    audit trail showed transfers after Application Stop. Now the door closes first: every transfer record comes
    before Application Stop, the last record, and every acknowledged instance is in the ledger."""
    from pydicom import dcmread
    from pynetdicom import AE, StoragePresentationContexts

    pngs = sorted((demo_data / "train" / "benign").iterdir())[:24]
    files = [dicom_of(p, tmp_path / f"s{i}.dcm") for i, p in enumerate(pngs)]
    spool = tmp_path / "spool"
    server = Server(ort_engine, spool)
    acked: list[str] = []

    def sender(chunk: list[Path]) -> None:
        """One long association, as a modality sending a large study: the chunk again and again (a resend is
        acknowledged and audited like the first), until the node ends it."""
        ae = AE(ae_title="SCANNER")
        ae.requested_contexts = StoragePresentationContexts[:100]
        assoc = ae.associate("127.0.0.1", server.dicom, ae_title="DCUBE")
        datasets = [(uid_of(f), dcmread(f)) for f in chunk]
        for uid, ds in datasets * 50:
            if not assoc.is_established:
                return
            status = assoc.send_c_store(ds)
            if status and int(status.Status) == 0:
                acked.append(uid)
        assoc.release()

    threads = [threading.Thread(target=sender, args=(files[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    wait(lambda: len(acked) >= 6, 60, "the first acknowledgements")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 143
    for t in threads:
        t.join(timeout=60)
    records = []
    for line in (spool / "audit.log").read_text().splitlines():
        ident = re.search(r'<EventIdentification EventActionCode="(\w)".*?originalText="([^"]+)"', line)
        records.append((ident.group(2), ident.group(1), line))
    stop = [i for i, (what, _, line) in enumerate(records) if "Application Stop" in line]
    assert stop == [len(records) - 1], [r[:2] for r in records[-5:]]  # Application Stop is the last record
    import sqlite3

    held = {u for (u,) in sqlite3.connect(spool / "ledger.sqlite").execute("SELECT uid FROM instances")}
    assert set(acked) <= held


def test_a_pacs_outage_loses_nothing_and_its_results_go_when_it_answers_again(ort_engine, scans, tmp_path):
    """Item 10: an outage of about 14 minutes dead-lettered every result of that time, and nothing re-queued them
    when the PACS was back. Now the destination is retried for --retry-for (72 h by default), an alert is raised
    while it does not answer (a log line, dcube_destination_up 0), and what was given up goes by itself once it
    answers (here --retry-for 2s, so the results are given up before it comes back)."""
    port = free_port()
    log = tmp_path / "node.log"
    server = Server(ort_engine, tmp_path / "spool", "--forward", f"PACS@127.0.0.1:{port}", "--retry-for", "2s",
                    "--log-format", "json", log=log)
    pacs = None
    name = f"dicom:PACS@127.0.0.1:{port}"
    try:
        assert send(server.dicom, scans[:2]) == [0, 0]
        uids = [uid_of(f) for f in scans[:2]]
        wait(lambda: all(server.result(u)["deliveries"] and d["status"] == "dead" for u in uids
                         for d in server.result(u)["deliveries"]), 60, "the results given up")
        assert f'dcube_destination_up{{destination="{name}"}} 0.0' in server.get("/metrics")
        down = [e for e in events(log) if e["event"] == "destination-down"]
        assert down and "does not answer" in down[0]["message"] and down[0]["destination"] == name
        assert all(d["given_up"] == "expired" for d in spool_status(tmp_path / "spool")["dead"])
        pacs = Pacs(port)
        wait(lambda: {str(d.SOPInstanceUID) for d in pacs.received} and
             all(server.result(u)["forwarded"] for u in uids), 120, "the deliveries after the outage")
        assert len({str(d.SOPInstanceUID) for d in pacs.received}) == 2
        assert f'dcube_destination_up{{destination="{name}"}} 1.0' in server.get("/metrics")
        assert any(e["event"] == "forward-requeued" for e in events(log))
    finally:
        server.stop()
        if pacs:
            pacs.stop()


def test_the_default_retry_horizon_is_hours_and_the_watermark_is_on():
    """Items 9 and 10: the defaults a site gets without configuring anything."""
    from dcube_edge.runtimes.serve.options import ServeOptions

    defaults = ServeOptions()
    assert defaults.retry_for >= 24 * 3600 and defaults.min_free >= 500 * 10**6


def test_the_log_says_durations_and_sizes_as_they_are_given():
    """A reload logged "retry_for now 172800.0" and an outage "retried for up to 0.00556 h"."""
    from dcube_edge.runtimes.serve.options import duration_words, specs

    assert [duration_words(s) for s in (172800.0, 7200, 5400, 20.0, 0.5)] == ["2d", "2h", "90m", "20s", "0.5s"]
    assert specs()["retry_for"][0].words(259200.0) == "3d" and specs()["min_free"][0].words(10**9) == "1GB"
    assert specs()["min_free"][0].words(1500) == "1500B" and specs()["keep_days"][0].words(30) == "30"


@pytest.fixture()
def small_disk(tmp_path):
    """(a command prefix that runs a program with ``folder`` on a 24 MB tmpfs, the folder, that disk as this
    process sees it): a real disk that fills up, in a mount namespace of its own (held by a sleeping process, so
    the same disk outlives the node's restarts), without touching the machine's own."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("a private tmpfs needs unshare and nsenter (util-linux)")
    holder = subprocess.Popen(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                               'mount -t tmpfs -o size=24m tmpfs "$0" && echo mounted && exec sleep 3600', str(folder)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if holder.stdout.readline().strip() != "mounted":
        holder.wait(timeout=10)
        pytest.skip(f"a private tmpfs needs user namespaces: {holder.stderr.read().strip()}")
    try:
        yield ("nsenter", "-t", str(holder.pid), "-U", "-m", "--preserve-credentials"), folder, \
            Path(f"/proc/{holder.pid}/root{folder}")
    finally:
        holder.kill()
        holder.wait()


def fill(folder: Path) -> Path:
    """Write into ``folder`` until its disk is full; the file written."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for block in (1 << 20, 4096, 1):
            try:
                while f.write(b"\0" * block):
                    pass
            except OSError:
                pass
    return filler


def stow(server: Server, path: Path) -> tuple[int, bytes]:
    """One instance by STOW-RS, the status and body as they come."""
    import urllib.error
    import urllib.request

    body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + path.read_bytes() + b"\r\n--b--\r\n"
    request = urllib.request.Request(f"http://127.0.0.1:{server.http}/dicomweb/studies", data=body, method="POST",
                                     headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_full_disk_is_refused_at_the_door_and_does_not_take_the_node_down(ort_engine, scans, small_disk, tmp_path):
    """Item 9, on a real 24 MB disk that fills up. Before: without --min-free (the default was 0) the sender got
    0xC211, nothing was logged or audited, /readyz stayed ready, STOW answered 500 with an empty body; the node
    exited 70 and then would not start on the full disk (OperationalError, exit 3). Now the default watermark
    refuses at the door; with the watermark off, the write that finds the disk full is refused with 0xA700, logged
    and audited, and the node stays up, stops cleanly and starts again on the full disk, saying so."""
    wrap, folder, disk = small_disk
    audit = tmp_path / "audit.log"  # on the machine's disk: a record of a full disk needs somewhere to go
    spool, log = folder / "spool", tmp_path / "node.log"
    base = ("--audit-log", str(audit), "--log-format", "json")
    server = Server(ort_engine, spool, *base, wrap=wrap, log=log)  # the default watermark, over a 24 MB disk
    try:
        code, body = stow(server, scans[0])
        assert code == 507 and b"watermark" in body
        assert send(server.dicom, scans[:1]) == [0xA700]
        assert server.get("/healthz")["status"] == "ok"
        code, body = http_get(server, "/readyz")
        assert code == 503 and "watermark" in " ".join(json.loads(body)["reasons"])
    finally:
        server.stop(signal.SIGTERM)
    assert server.proc.returncode == 143 and "DISK" in log.read_text()
    assert 'EventOutcomeIndicator="4"' in audit.read_text()  # the refusal is audited

    server = Server(ort_engine, spool, *base, "--min-free", "0", wrap=wrap, log=log)
    try:
        assert send(server.dicom, scans[:1]) == [0]
        wait(lambda: server.result(uid_of(scans[0]))["status"] == "done", 60, "the first result")
        filler = fill(disk)
        code, body = stow(server, scans[1])  # a proper answer with a body: Failure Reason 0xA700, or 507 saying why
        assert code in (409, 507) and (str(0xA700).encode() in body or b"out of resources" in body), (code, body)
        assert send(server.dicom, scans[2:3]) == [0xA700]
        assert any(e["event"] == "disk-full" for e in events(log))
        assert "disk is full" in audit.read_text() or "out of resources" in audit.read_text()
        assert http_get(server, "/readyz")[0] == 503
        time.sleep(3)
        assert server.proc.poll() is None  # no part of it died of the full disk
    finally:
        server.stop(signal.SIGTERM)
    assert server.proc.returncode == 143, log.read_text()[-2000:]

    server = Server(ort_engine, spool, *base, "--min-free", "0", wrap=wrap, log=log)  # on the full disk, no watermark
    try:
        assert http_get(server, "/readyz")[0] == 503 and send(server.dicom, scans[3:4]) == [0xA700]
        assert "DISK" in log.read_text().split("serving")[-1]
        filler.unlink()
        wait(lambda: http_get(server, "/readyz")[0] == 200, 30, "readiness once space is back")
        assert send(server.dicom, scans[3:4]) == [0]
        wait(lambda: server.result(uid_of(scans[3]))["status"] == "done", 60, "a result after the disk was freed")
    finally:
        server.stop(signal.SIGTERM)
    assert server.proc.returncode == 143


def http_get(server: Server, path: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_every_setting_is_declared_once_and_read_the_same_from_the_command_line_and_the_file(tmp_path):
    """Settings declared once: each one is a command-line option (with its range) and a config key, and a value
    out of range is refused the same way from either, naming the option or the key."""
    from dcube_edge.runtimes.serve import config
    from dcube_edge.runtimes.serve.options import specs

    res = subprocess.run([str(EXE), "serve", "--help"], capture_output=True, text=True, timeout=60)
    text = re.sub(r"[\s│]+", " ", res.stdout)
    for name, (spec, _) in specs().items():
        assert spec.argument or spec.option(name) in text, name
    assert "[1<=x<=65535]" in text and "[default: 72h]" in text and "[default: 1GB]" in text
    for key, value, named in (("dicom_port", 70000, "dicom_port 70000: must lie in 1..65535"),
                              ("retry_for", "soon", "retry_for 'soon'"), ("keep_days", 0, "keep_days 0")):
        (tmp_path / "serve.toml").write_text(f"{key} = {json.dumps(value)}\n")
        with pytest.raises(Exception, match=re.escape(named)):
            config.settings(tmp_path / "serve.toml", {"engine": "e", "spool": "s"})
        option = "--" + key.replace("_", "-")
        with pytest.raises(Exception, match=re.escape(option)):
            config.settings(None, {key: value, "engine": "e", "spool": "s"})
    opts = config.settings(None, {"retry_for": "90m", "min_free": "2GB", "allow_ae": "A,B"})
    assert (opts.retry_for, opts.min_free, opts.allow_ae) == (5400.0, 2 * 10**9, ("A", "B"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.min_free = 0


def test_several_pacs_are_several_destinations_and_a_repeat_is_refused(tmp_path):
    """A second --forward silently replaced the first (the banner named only the last PACS), and a TOML list
    was refused: a site with a PACS and a research archive could reach only one."""
    from dcube_edge.runtimes.serve import config

    opts = config.settings(None, {"forward": ["PACS@10.0.0.5:104", "ARCHIVE@10.0.0.6:11112"]})
    assert opts.forward == (("PACS", "10.0.0.5", 104), ("ARCHIVE", "10.0.0.6", 11112))
    assert config.settings(None, {"forward": "PACS@10.0.0.5:104,ARCHIVE@10.0.0.6:11112"}).forward == opts.forward
    (tmp_path / "serve.toml").write_text('forward = ["PACS@10.0.0.5:104", "ARCHIVE@10.0.0.6:11112"]\n')
    assert config.settings(tmp_path / "serve.toml", {}).forward == opts.forward
    with pytest.raises(Exception, match="a destination is given twice"):
        config.settings(None, {"forward": ["PACS@10.0.0.5:104", "PACS@10.0.0.5:104"]})
    res = subprocess.run([str(EXE), "serve", "engine", "--spool", str(tmp_path / "spool"), "--forward", "PACS@h:104",
                          "--forward", "nonsense"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--forward 'nonsense': expected AE@HOST:PORT" in res.stderr, res.stderr

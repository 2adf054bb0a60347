"""A node that runs for months unattended: failures sorted and dead-lettered, the disk guarded, input rules,
readiness, shutdown, start-up order, HTTP details, the audit trail, the configuration file, TLS, deploy files.
Each first-day finding of issue 32 has a test here or in test_serve.py that fails on the code before it."""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="serve needs the `serve` extra (pynetdicom)")
pytest.importorskip("cheroot", reason="serve needs the `serve` extra (cheroot)")

from serving import EXE, Pacs, Server, dicom_of, free_port, send  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


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


def http_status(url: str, data: bytes | None = None, headers: dict | None = None, context=None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_a_refusing_destination_is_dead_lettered_and_the_others_keep_flowing(ort_engine, scans, tmp_path):
    """One PACS answers 0xA700 (out of resources: transient) to every SR, another stores them: after --retry-for
    the first one's deliveries are dead with the status in the reason, the metric counts them, `spool retry`
    re-queues them, and the second destination got every result meanwhile."""
    refusing, good = free_port(), free_port()
    bad_pacs, good_pacs = Pacs(refusing, status=0xA700, title="FULL"), Pacs(good, title="PACS")
    spool = tmp_path / "spool"
    server = Server(ort_engine, spool, "--forward", f"FULL@127.0.0.1:{refusing}", "--forward-stow",
                    f"http://127.0.0.1:{free_port()}/nothing-here", "--retry-for", "2s")
    try:
        assert send(server.dicom, scans) == [0] * len(scans)
        uids = [uid_of(f) for f in scans]

        def states() -> dict:
            return {u: {d["destination"].split(":")[0]: d for d in server.result(u)["deliveries"]} for u in uids}

        wait(lambda: all(s.get("dicom", {}).get("status") == "dead" and s.get("stow", {}).get("status") == "dead"
                         for s in states().values()), 60, "dead letters")
        for s in states().values():
            assert s["dicom"]["attempts"] >= 2 and "0xA700 (Refused: Out of Resources)" in s["dicom"]["error"]
            assert "gave up after" in s["dicom"]["error"]
        metrics = server.get("/metrics")
        assert f'dcube_results_dead_lettered_total{{destination="dicom:FULL@127.0.0.1:{refusing}"}} {len(scans)}.0' in metrics
        status = subprocess.run([str(EXE), "spool", "status", str(spool), "--json", "-"], capture_output=True, text=True, check=True)
        dead = json.loads(status.stdout)["dead"]
        assert len(dead) == 2 * len(scans) and all(d["error"] for d in dead)
        res = subprocess.run([str(EXE), "spool", "retry", str(spool), "--uid", "abc"], capture_output=True, text=True)
        assert res.returncode == 2 and "--uid 'abc': a SOP Instance UID is digits and dots" in res.stderr + res.stdout
        res = subprocess.run([str(EXE), "spool", "retry", str(spool), "--uid", uids[0]], capture_output=True, text=True)
        assert res.returncode == 0 and "re-queued 2 dead-lettered deliveries" in res.stdout
        wait(lambda: states()[uids[0]]["dicom"]["attempts"] >= 1 and states()[uids[0]]["dicom"]["status"] in ("pending", "dead"),
             10, "a re-queued delivery")
    finally:
        server.stop()
    # the other destination: restart with a good PACS added; the refusing one's dead letters stay dead
    again = Server(ort_engine, spool, "--forward", f"PACS@127.0.0.1:{good}")
    try:
        wait(lambda: len({str(d.SOPInstanceUID) for d in good_pacs.received}) == len(scans), 60, "the good PACS")
        assert all(again.result(u)["forwarded"] is False for u in uids)  # dead ones still count as not delivered
    finally:
        again.stop()
        bad_pacs.stop()
        good_pacs.stop()


def test_reclassify_sends_the_new_results_again(ort_engine, tiny_run, scans, tmp_path):
    """First-day finding: --reclassify wrote new labels but kept `forwarded`, so the PACS kept the old SRs."""
    from dcube_edge.export.build import ExportOptions, export

    other = tmp_path / "other-engine"
    export(tiny_run, other, ExportOptions(max_batch=8, timesteps=(20,)), log=lambda *_: None)
    port = free_port()
    pacs = Pacs(port)
    spool = tmp_path / "spool"
    server = Server(ort_engine, spool, "--forward", f"PACS@127.0.0.1:{port}")
    try:
        send(server.dicom, scans[:2])
        wait(lambda: len(pacs.received) == 2, 30, "the first SRs")
    finally:
        server.stop()
    again = Server(other, spool, "--forward", f"PACS@127.0.0.1:{port}", "--reclassify")
    try:
        wait(lambda: len(pacs.received) == 4, 30, "the reclassified SRs")
        series = {str(d.SeriesInstanceUID) for d in pacs.received}
        assert len(series) == 2 and len({str(d.SOPInstanceUID) for d in pacs.received}) == 4  # one series per study
        # and engine: the new engine's results are new documents in a series of their own
    finally:
        again.stop()
        pacs.stop()


def test_the_disk_watermark_refuses_at_the_door_and_lifts_on_sighup(ort_engine, scans, tmp_path):
    free = shutil.disk_usage(tmp_path).free
    config = tmp_path / "serve.toml"
    config.write_text(f'min_free = "{free * 10}B"\n')
    spool = tmp_path / "spool"
    server = Server(ort_engine, spool, "--config", str(config))
    try:
        code, body = http_status(f"http://127.0.0.1:{server.http}/readyz")
        assert code == 503 and "out of resources" in " ".join(body["reasons"])
        assert send(server.dicom, scans[:2]) == [0xA700, 0xA700]
        assert not any((spool / "instances").iterdir()) and not any((spool / "rejected").iterdir())
        assert server.get("/healthz")["status"] == "ok" and "pending" not in server.get("/healthz")  # no ledger rows
        code, body = http_status(f"http://127.0.0.1:{server.http}/v1/classify", data=scans[0].read_bytes())
        assert code == 507
        config.write_text('min_free = "1B"\n')
        server.proc.send_signal(signal.SIGHUP)
        wait(lambda: http_status(f"http://127.0.0.1:{server.http}/readyz")[0] == 200, 10, "readiness")
        assert send(server.dicom, scans[:1]) == [0]
        assert server.result(uid_of(scans[0]))["status"] == "done"
    finally:
        server.stop()


def test_a_ct_sent_to_an_ultrasound_engine_is_refused_with_the_rule(ort_engine, scans, tmp_path):
    from pydicom import dcmread

    ct = dcmread(scans[1])
    ct.Modality = "CT"
    ct.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    server = Server(ort_engine, tmp_path / "spool", "--accept-modality", "US")
    try:
        statuses = send(server.dicom, [scans[0], tmp_path / "ct.dcm"])
        assert statuses == [0, 0xC001]
        assert server.result(uid_of(scans[0]))["status"] == "done"
        refused = server.get(f"/v1/results/{uid_of(scans[1])}")
        assert refused["status"] == "refused" and "modality CT is not accepted" in refused["error"]
    finally:
        server.stop()


def test_shutdown_stops_accepting_reports_what_is_pending_and_exits_130_or_143(ort_engine, scans, tmp_path):
    """First-day finding: Ctrl-C kept acknowledging C-STOREs, exited 0, said nothing; SIGTERM exited silently."""
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        server = Server(ort_engine, tmp_path / f"spool-{code}")
        assert send(server.dicom, scans[:1]) == [0]
        server.proc.send_signal(sig)
        assert server.proc.wait(timeout=30) == code
        err = server.proc.stderr.read()
        assert "stopped:" in err and "waiting to be classified" in err and "Traceback" not in err
        assert send(server.dicom, scans[1:2]) == [None]  # nothing listens any more


def test_start_up_checks_come_before_anything_is_created_or_announced(ort_engine, tmp_path):
    """First-day findings: the banner printed before a port conflict ([Errno 98], port not named) or a long AE
    title; the spool was created first; --spool /missing/deep/path created its parents silently."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = [(["--dicom-port", str(port)], f"--dicom-port {port}"), (["--http-port", str(port)], f"--http-port {port}"),
                 (["--ae-title", "A-TITLE-FAR-TOO-LONG"], "--ae-title"),
                 (["--spool", str(tmp_path / "missing" / "deep" / "spool")], "does not exist")]
        for extra, named in cases:
            spool = tmp_path / "spool"
            args = [str(EXE), "serve", str(ort_engine), "--spool", str(spool), *extra]
            res = subprocess.run(args, capture_output=True, text=True, timeout=120)
            assert res.returncode == 2 and named in res.stderr and "serving" not in res.stdout + res.stderr, (extra, res.stderr)
            assert len(res.stderr.strip().splitlines()) == 1 and not spool.exists() and not (tmp_path / "missing").exists()


def test_http_details(ort_engine, scans, tmp_path):
    """First-day findings: an empty POST got 413, a multipart upload 422 naming a temp file, `bearer` in lower case
    401, a refused instance's results 404; timestamps were epoch floats; the banner a Python dict."""
    from pydicom import dcmread

    token = tmp_path / "token"
    token.write_text("s3cret-token-for-the-test\n")
    bad = dcmread(scans[0])
    bad.SOPInstanceUID = bad.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7.8.9.10"
    del bad.PixelData
    bad.save_as(tmp_path / "bad.dcm", enforce_file_format=True)
    server = Server(ort_engine, tmp_path / "spool", "--token-file", str(token))
    base, auth = f"http://127.0.0.1:{server.http}", {"Authorization": "bearer s3cret-token-for-the-test"}
    try:
        code, body = http_status(f"{base}/v1/classify", data=b"", headers=auth)
        assert code == 400 and "--data-binary" in body["error"]
        code, body = http_status(f"{base}/v1/classify", data=b"--x\r\n\r\n--x--", headers={
            **auth, "Content-Type": "multipart/form-data; boundary=x"})
        assert code == 415 and "tmp" not in body["error"]
        assert send(server.dicom, [scans[1], tmp_path / "bad.dcm"]) == [0, 0xC000]
        result = server.get(f"/v1/results/{uid_of(scans[1])}", headers=auth)
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", result["received"])
        refused = server.get("/v1/results/1.2.3.4.5.6.7.8.9.10", headers=auth)
        assert refused["status"] == "refused" and "no pixel data" in refused["error"]
    finally:
        server.stop()
    err = server.proc.stderr.read()
    assert "serving" in err and "{'" not in err and "spool" in err


def test_every_event_is_audited_once_in_the_standard_form(ort_engine, scans, tmp_path):
    """One run with every kind of event; each appears in spool/audit.log, each record is an RFC 5424 line whose
    message validates against the DICOM audit message schema (PS3.15 A.5.1, runtimes/serve/audit.rng)."""
    lxml = pytest.importorskip("lxml.etree", reason="the schema check needs lxml (the `dev` extra)")
    from pydicom import dcmread

    from dcube_edge.runtimes.serve.audit import SCHEMA

    port = free_port()
    pacs = Pacs(port)
    bad = dcmread(scans[0])
    bad.SOPInstanceUID = bad.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7.8.9.11"
    del bad.PixelData
    bad.save_as(tmp_path / "bad.dcm", enforce_file_format=True)
    spool = tmp_path / "spool"
    server = Server(ort_engine, spool, "--forward", f"PACS@127.0.0.1:{port}", "--allow-ae", "SCANNER")
    try:
        assert send(server.dicom, [scans[0], tmp_path / "bad.dcm"]) == [0, 0xC000]
        assert send(server.dicom, scans[:1], ae_title="INTRUDER") == [None]
        wait(lambda: server.result(uid_of(scans[0]))["forwarded"], 30, "the delivery")
        server.get(f"/dicomweb/studies/{dcmread(scans[0]).StudyInstanceUID}/instances")
    finally:
        server.stop()
        pacs.stop()
    schema = lxml.RelaxNG(lxml.parse(str(SCHEMA)))
    events = []
    for line in (spool / "audit.log").read_text().splitlines():
        found = re.match(r"^<(\d+)>1 \S+Z \S+ dcube-edge \d+ DICOM\+RFC3881 - (<AuditMessage>.*</AuditMessage>)$", line)
        assert found, line
        message = lxml.fromstring(found.group(2).encode())
        assert schema.validate(message), schema.error_log.last_error
        ident = message.find("EventIdentification")
        events.append((ident.find("EventID").get("originalText"), ident.get("EventActionCode"),
                       ident.get("EventOutcomeIndicator")))
    counts = {e: events.count(e) for e in set(events)}
    assert counts[("Application Activity", "E", "0")] == 2  # engine loaded, node stopped
    assert counts[("Begin Transferring DICOM Instances", "E", "0")] == 1  # the one accepted association
    assert counts[("Security Alert", "E", "4")] == 1  # INTRUDER refused
    assert counts[("DICOM Instances Transferred", "C", "0")] == 1 and counts[("DICOM Instances Transferred", "C", "4")] == 1
    assert counts[("DICOM Instances Accessed", "C", "0")] == 1  # the result produced
    assert counts[("DICOM Instances Transferred", "R", "0")] == 1  # delivered to the PACS
    assert counts[("DICOM Instances Accessed", "R", "0")] >= 1 and counts[("Query", "E", "0")] == 1  # results read, QIDO


@pytest.mark.parametrize("content, named", [("max_batchh = 4", "unknown key 'max_batchh'"),
                                            ("dicom_port = 70000", "dicom_port 70000: must lie in 1..65535"),
                                            ("allow_ae = [1, 2]", "allow_ae"), ("min_free = \"lots\"", "min_free 'lots'"),
                                            ("log_format = \"xml\"", "log_format 'xml': choose text or json"), ("allow_ae = []", "names no AE title")])
def test_a_bad_configuration_file_is_refused_naming_the_key(ort_engine, tmp_path, content, named):
    config = tmp_path / "serve.toml"
    config.write_text(content + "\n")
    res = subprocess.run([str(EXE), "serve", str(ort_engine), "--spool", str(tmp_path / "spool"), "--config", str(config)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and named in res.stderr and "Traceback" not in res.stderr and not (tmp_path / "spool").exists()


def test_the_example_configuration_parses_and_the_command_line_wins(tmp_path):
    from dcube_edge.runtimes.serve import config
    from dcube_edge.runtimes.serve.options import specs

    settings = config.read(ROOT / "deploy" / "serve.toml")
    token = tmp_path / "token"
    token.write_text("s3cret-token-for-the-test\n")
    opts = config.settings(ROOT / "deploy" / "serve.toml", {"token_file": str(token), "http_port": 9999, "tls_ca": None})
    assert set(settings) <= set(specs()) and opts.http_port == 9999 and opts.dicom_port == settings["dicom_port"]
    assert opts.min_free == 5 * 10**9 and opts.allow_ae == tuple(settings["allow_ae"]) and str(opts.engine) == settings["engine"]
    assert opts.retry_for == 72 * 3600 and opts.token == "s3cret-token-for-the-test"


def test_the_systemd_unit_verifies_and_the_dockerfile_lints(tmp_path):
    """systemd-analyze verify on the unit (where systemd is installed; ExecStart pointed at this install); the
    Dockerfile can only be linted here — no container runtime runs on these machines."""
    unit = (ROOT / "deploy" / "dcube-edge.service").read_text()
    assert "ExecStart=/opt/dcube-edge/bin/dcube-edge serve --config /etc/dcube/serve.toml" in unit
    assert "SuccessExitStatus=143" in unit and "KillSignal=SIGTERM" in unit
    if shutil.which("systemd-analyze"):
        local = tmp_path / "dcube-edge.service"
        local.write_text(unit.replace("/opt/dcube-edge/bin/dcube-edge", str(EXE)).replace("User=dcube", "User=root")
                         .replace("Group=dcube", "Group=root"))
        res = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
        problems = [x for x in (res.stdout + res.stderr).splitlines() if "dcube-edge.service" in x]
        assert res.returncode == 0 and not problems, res.stdout + res.stderr
    lines = [x.strip() for x in (ROOT / "deploy" / "Dockerfile").read_text().splitlines() if x.strip() and not x.startswith("#")]
    instructions = [x.split()[0] for x in lines if not x.startswith(("&&", "\\"))]
    assert set(instructions) <= {"FROM", "RUN", "WORKDIR", "COPY", "USER", "VOLUME", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT"}
    assert re.match(r"FROM python:\d+\.\d+\.\d+-slim", lines[0])  # a pinned base
    assert instructions.index("USER") < instructions.index("ENTRYPOINT") and "USER root" not in lines  # not root
    assert not any("torch" in x for x in lines if x.startswith("RUN"))  # the torch-free node
    exposed = next(x for x in lines if x.startswith("EXPOSE")).split()[1:]
    assert exposed == ["11112", "8080"] and "/healthz" in next(x for x in lines if x.startswith("HEALTHCHECK"))


def certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made here with `cryptography`."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def issue(name: str, issuer=None, issuer_key=None, ca: bool = False, usage=None, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(issuer_key or key, hashes.SHA256())
        (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.TraditionalOpenSSL,
                                                               serialization.NoEncryption()))
        return cert, key

    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = issue("ca", ca=True)
    issue("server", ca.subject, ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH,
          san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    issue("client", ca.subject, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return {n: folder / f"{n}.{ext}" for n in ("ca", "server", "client") for ext in ("crt",)} | {
        f"{n}_key": folder / f"{n}.key" for n in ("server", "client")}


def test_tls_dicom_with_client_certificates_and_https_with_the_token(ort_engine, scans, tmp_path):
    """DICOM TLS: a client with a certificate the CA signed is accepted, one without is refused; HTTPS with the
    bearer token works; plain HTTP to the TLS port fails. DCMTK's storescu +tls as a second client where present."""
    import ssl

    from pydicom import dcmread
    from pynetdicom import AE, StoragePresentationContexts

    pki = certificates(tmp_path / "pki")
    token = tmp_path / "token"
    token.write_text("s3cret-token-for-the-test\n")
    trust = ssl.create_default_context(cafile=str(pki["ca"]))
    server = Server(ort_engine, tmp_path / "spool", "--tls-cert", str(pki["server"]), "--tls-key", str(pki["server_key"]),
                    "--tls-ca", str(pki["ca"]), "--token-file", str(token), scheme="https", context=trust)

    def store(with_certificate: bool) -> int | None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca"]))
        context.check_hostname = False
        if with_certificate:
            context.load_cert_chain(pki["client"], pki["client_key"])
        ae = AE(ae_title="SCANNER")
        ae.requested_contexts = StoragePresentationContexts[:100]
        assoc = ae.associate("127.0.0.1", server.dicom, ae_title="DCUBE", tls_args=(context, None))
        if not assoc.is_established:
            return None
        status = assoc.send_c_store(dcmread(scans[0]))
        assoc.release()
        return int(status.Status)

    try:
        assert store(with_certificate=True) == 0
        assert store(with_certificate=False) is None  # the handshake fails: no certificate, no association
        code, body = http_status(f"https://127.0.0.1:{server.http}/v1/results/{uid_of(scans[0])}",
                                 headers={"Authorization": "Bearer s3cret-token-for-the-test"}, context=trust)
        assert code == 200 and body["sop_instance_uid"] == uid_of(scans[0])
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)) as plain:
            urllib.request.urlopen(f"http://127.0.0.1:{server.http}/healthz", timeout=10).read()
        assert not isinstance(plain.value, urllib.error.HTTPError) or plain.value.code >= 400
        if shutil.which("storescu"):
            res = subprocess.run(["storescu", "+tls", str(pki["client_key"]), str(pki["client"]), "+cf", str(pki["ca"]),
                                  "-aet", "SCANNER", "-aec", "DCUBE", "127.0.0.1", str(server.dicom), str(scans[1])],
                                 capture_output=True, text=True, timeout=60)
            assert res.returncode == 0, res.stderr
            assert server.get(f"/v1/results/{uid_of(scans[1])}", headers={"Authorization": "Bearer s3cret-token-for-the-test"})
    finally:
        server.stop()


def test_the_engine_says_what_it_takes_and_the_node_logs_each_event(tiny_run, scans, tmp_path):
    """export --modality US makes a node refuse a CT without being told (`--accept-modality '*'` lifts it); one
    JSON log line per association, stored instance, refusal and batch, each with its UID; a second Ctrl-C exits at
    once without a traceback (first-day finding: an ignored KeyboardInterrupt from threading._shutdown)."""
    from pydicom import dcmread

    from dcube_edge.export.build import ExportOptions, export

    engine = tmp_path / "us-engine"
    export(tiny_run, engine, ExportOptions(max_batch=8, modalities="US"), log=lambda *_: None)
    ct = dcmread(scans[1])
    ct.Modality = "CT"
    ct.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    server = Server(engine, tmp_path / "spool", "--log-format", "json")
    assert send(server.dicom, [scans[0], tmp_path / "ct.dcm"]) == [0, 0xC001]
    server.result(uid_of(scans[0]))
    server.proc.send_signal(signal.SIGINT)
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=30) == 130
    err = server.proc.stderr.read()
    assert "Traceback" not in err and "Exception ignored" not in err
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    events = {(x["event"], x.get("uid")) for x in lines}
    assert ("evt_accepted", None) in events and ("received", uid_of(scans[0])) in events
    assert ("refused", uid_of(scans[1])) in events and ("batch", None) in events
    refused = next(x for x in lines if x["event"] == "refused")
    assert refused["status"] == "0xC001" and "modality CT" in refused["message"] and refused["calling"].startswith("SCANNER@")
    anyone = Server(engine, tmp_path / "spool2", "--accept-modality", "*")
    try:
        assert send(anyone.dicom, [tmp_path / "ct.dcm"]) == [0]
    finally:
        anyone.stop()


def test_a_failed_ledger_write_is_rolled_back_and_the_next_one_commits(tmp_path):
    """A write that fails inside its transaction (here: a result that cannot be stored) leaves nothing half written
    and does not wedge the node's one connection inside an open transaction."""
    from dcube_edge.runtimes.serve.ledger import Ledger
    from dcube_edge.runtimes.serve.records import Report

    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.add("1.2.3", tmp_path / "a.dcm", "MODALITY@127.0.0.1")
    ledger.add("1.2.4", tmp_path / "b.dcm", "MODALITY@127.0.0.1")
    first, second = ledger.pending(10)
    with pytest.raises(TypeError):  # the second result's probabilities are not JSON: fails after the first row's UPDATE
        ledger.finish([(first, {"label": "benign", "probs": {"benign": 0.9}}),
                       (second, {"label": "benign", "probs": {"benign": object()}})], "engine", time.time())
    assert ledger.counts() == {"pending": 2}  # the first row's result went with the failed transaction
    assert ledger.finish([(first, {"label": "benign", "probs": {"benign": 0.9}})], "engine", time.time()) == ["1.2.3"]
    assert ledger.counts() == {"done": 1, "pending": 1} and ledger.awaiting_report() == [ledger.instance("1.2.3")]
    report = Report("9.9.1", "1.2.3", "1.2", "1.2.9", 1, 0, str(tmp_path / "sr.dcm"), "0" * 64, time.time(), "engine")
    assert ledger.attach(report, 0, ("dicom:PACS",)) and not ledger.attach(report, 0, ("dicom:PACS",))
    assert ledger.delivery_counts() == {"dicom:PACS": {"pending": 1}} and ledger.report("9.9.1") == report
    assert ledger.instance("1.2.3").report == "9.9.1" and ledger.awaiting_report() == []
    ledger.close()


def test_a_part_that_dies_stops_the_node_instead_of_leaving_it_half_alive(caplog):
    """A batcher (or forwarder) thread killed by an unexpected error would leave a node that acknowledges images and
    never classifies or delivers them; the node stops instead (serve exits 70 and the service manager restarts it)."""
    import logging

    from dcube_edge.runtimes.serve.node import Node

    def broken() -> None:
        raise OSError("disk I/O error")

    node = Node(opts=None, clf=None, engine_hash="", ledger=None, metrics=None)
    with caplog.at_level(logging.CRITICAL, logger="dcube_edge.serve"):
        t = node.supervise("batcher", broken)
        t.start()
        t.join(5)
    assert node.stopping.is_set() and node.failed == "the batcher thread (OSError: disk I/O error)"
    assert any(r.event == "part-failed" and r.exc_info for r in caplog.records)

    quiet = Node(opts=None, clf=None, engine_hash="", ledger=None, metrics=None)
    t = quiet.supervise("http", lambda: None)  # returned while the node runs: as bad as an error
    t.start()
    t.join(5)
    assert quiet.stopping.is_set() and "returned while the node was running" in quiet.failed

    stopping = Node(opts=None, clf=None, engine_hash="", ledger=None, metrics=None)
    stopping.stopping.set()
    t = stopping.supervise("forward dicom:PACS", broken)  # an error on the way out is logged, not a failure
    t.start()
    t.join(5)
    assert stopping.failed is None

"""The audit trail (issue 38, item 17) against PS3.15 A.5: refused bearer tokens (User Authentication), failed
reads recorded as failures, queries with their participant object (A.5.3.10), reads naming the real SOP class,
`/v1/classify` of a DICOM instance with its patient, TLS refusals of HTTPS and DICOM (Security Alert), and the
"result produced" record on disk before the result can be delivered. Every record is validated against
runtimes/serve/audit.rng."""
from __future__ import annotations

import base64
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="serve needs the `serve` extra (pynetdicom)")
lxml = pytest.importorskip("lxml.etree", reason="the schema check needs lxml (the `dev` extra)")

from serving import Server, dicom_of, send  # noqa: E402

TOKEN = "s3cret-token-for-the-test"
SR = "1.2.840.10008.5.1.4.1.1.88.33"


def records(log: Path) -> list:
    """Every record of an audit log as an lxml element, each checked against the schema."""
    from dcube_edge.runtimes.serve.audit import SCHEMA

    schema = lxml.RelaxNG(lxml.parse(str(SCHEMA)))
    out = []
    for line in log.read_text().splitlines():
        found = re.match(r"^<\d+>1 \S+Z \S+ dcube-edge \d+ DICOM\+RFC3881 - (<AuditMessage>.*</AuditMessage>)$", line)
        assert found, line
        message = lxml.fromstring(found.group(1).encode())
        assert schema.validate(message), (schema.error_log.last_error, line)
        out.append(message)
    return out


def event(message) -> tuple[str, str, str]:
    ident = message.find("EventIdentification")
    return ident.find("EventID").get("originalText"), ident.get("EventActionCode"), ident.get("EventOutcomeIndicator")


def status(url: str, headers: dict, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=15) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_http_events_are_audited_with_the_outcome_answered(ort_engine, demo_data, tmp_path):
    """Issue 38 item 17: wrong bearer tokens and /v1/classify of a DICOM with patient data went unaudited; failed
    reads were audited as successes; query records had no participant object; read records said
    SOPClass UID="unknown"."""
    from pydicom import dcmread

    (tmp_path / "token").write_text(TOKEN + "\n")
    spool = tmp_path / "spool"
    scan = dicom_of(sorted((demo_data / "val" / "benign").iterdir())[0], tmp_path / "scan.dcm")
    ds = dcmread(scan)
    uid, study = str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)
    server = Server(ort_engine, spool, "--token-file", str(tmp_path / "token"))
    base, auth = f"http://127.0.0.1:{server.http}", {"Authorization": f"Bearer {TOKEN}"}
    try:
        assert status(f"{base}/v1/results/{uid}", {}) == 401
        assert status(f"{base}/dicomweb/studies", {"Authorization": "Bearer not-the-token-at-all"}) == 401
        assert send(server.dicom, [scan]) == [0]
        assert server.result(uid, headers=auth)["status"] == "done"
        start = len((spool / "audit.log").read_text().splitlines())
        assert status(f"{base}/v1/results/{uid}", auth) == 200
        assert status(f"{base}/v1/results/1.2.3.404", auth) == 404
        assert status(f"{base}/dicomweb/studies/1.2.3.404", auth) == 404
        assert status(f"{base}/dicomweb/studies?PatientID=Q%2A", auth) == 204
        assert status(f"{base}/dicomweb/studies?limit=abc", auth) == 400
        assert status(f"{base}/v1/classify", auth, data=scan.read_bytes()) == 200
    finally:
        server.stop()
    messages = records(spool / "audit.log")
    logins = [m for m in messages if event(m)[0] == "User Authentication"]
    assert [event(m)[2] for m in logins] == ["4", "4"]
    assert all(m.find("EventIdentification/EventTypeCode").get("originalText") == "Login" for m in logins)
    assert "no bearer token" in logins[0].findtext("EventIdentification/EventOutcomeDescription")
    assert "wrong bearer token" in logins[1].findtext("EventIdentification/EventOutcomeDescription")
    later = messages[start:]
    reads = [m for m in later if event(m)[:2] == ("DICOM Instances Accessed", "R")]
    assert [event(m)[2] for m in reads] == ["0", "4", "4", "0"]  # result, unknown UID, unknown study, classify
    instance = reads[0].find("ParticipantObjectIdentification/SOPClass")
    assert instance.get("UID") == SR and instance.find("Instance").get("UID") != uid  # the SR's own UID
    assert reads[0].find("ParticipantObjectIdentification").get("ParticipantObjectID") == study
    classify = reads[3].findall("ParticipantObjectIdentification")
    assert classify[0].get("ParticipantObjectID") == str(ds.PatientID) and classify[0].get("ParticipantObjectTypeCode") == "1"
    assert classify[1].find("SOPClass").get("UID") == str(ds.SOPClassUID)
    assert classify[1].find("SOPClass/Instance").get("UID") == uid
    queries = [m for m in later if event(m)[0] == "Query"]
    assert [event(m)[2] for m in queries] == ["0", "4"]
    query = queries[0].find("ParticipantObjectIdentification")
    assert query.find("ParticipantObjectIDTypeCode").get("csd-code") == "110181"
    assert query.get("ParticipantObjectID") == "1.2.840.10008.5.1.4.1.2.2.1"
    assert base64.b64decode(query.findtext("ParticipantObjectQuery")).decode() == "/dicomweb/studies?PatientID=Q%2A"
    roles = {p.get("UserIsRequestor"): p.find("RoleIDCode").get("csd-code") for p in queries[0].findall("ActiveParticipant")}
    assert roles == {"true": "110153", "false": "110152"}  # the caller issued it (Source), the node answers


def test_tls_refusals_of_https_and_dicom_are_audited_and_a_silent_peer_holds_nobody_off(ort_engine, tmp_path):
    """Issue 38 item 17: a DICOM client without a certificate, and plain HTTP on the HTTPS port, were refused
    without a trace in the audit trail. Beside it (found on the way): a peer that opened the DICOM TLS port and sent
    nothing held every other DICOM TLS client off for good (the handshake runs in pynetdicom's accepting thread,
    on a socket without timeout); now the handshake is bounded and the silent peer's refusal audited."""
    import socket
    import ssl

    from pynetdicom import AE, StoragePresentationContexts
    from test_serve_ops import certificates

    pki = certificates(tmp_path / "pki")
    spool = tmp_path / "spool"
    trust = ssl.create_default_context(cafile=str(pki["ca"]))
    server = Server(ort_engine, spool, "--tls-cert", str(pki["server"]), "--tls-key", str(pki["server_key"]),
                    "--tls-ca", str(pki["ca"]), scheme="https", context=trust)

    def associate(with_certificate: bool, outcome: list) -> None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca"]))
        context.check_hostname = False
        if with_certificate:
            context.load_cert_chain(pki["client"], pki["client_key"])
        ae = AE(ae_title="SCANNER")
        ae.requested_contexts = StoragePresentationContexts[:10]
        assoc = ae.associate("127.0.0.1", server.dicom, ae_title="DCUBE", tls_args=(context, None))
        outcome.append(assoc.is_established)
        if assoc.is_established:
            assoc.release()

    silent = socket.create_connection(("127.0.0.1", server.dicom))  # connects, never says a word
    try:
        for with_certificate in (True, False):
            outcome: list = []
            worker = threading.Thread(target=associate, args=(with_certificate, outcome), daemon=True)
            worker.start()
            worker.join(30)
            assert outcome == [with_certificate], "a TLS association was held off (or its certificate ignored)"
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{server.http}/healthz", timeout=10).read()
        time.sleep(1)  # the refusals are recorded by the servers' own threads
    finally:
        silent.close()
        server.stop()
    alerts = [m for m in records(spool / "audit.log") if event(m)[0] == "Security Alert"]
    described = [m.findtext("EventIdentification/EventOutcomeDescription") for m in alerts]
    assert len(alerts) == 3 and all(event(m)[2] == "4" and "TLS handshake refused" in d for m, d in zip(alerts, described))
    assert any("timed out" in d for d in described)  # the silent peer
    assert any("CERTIFICATE" in d.upper() for d in described) and any("HTTP" in d.upper() for d in described)


class Fixed:
    """A classifier answering every image with the same prediction (the batcher's ordering is under test here,
    not an engine)."""

    class Prediction:
        label, probs, error = "benign", {"benign": 0.9, "malignant": 0.1}, None

    def __init__(self) -> None:
        from dcube_edge.runtimes.decision import Decision

        self.decision = Decision(classes=("benign", "malignant"))  # argmax: the batcher explains each result

    def classify(self, paths, batch_size=1, workers=1):
        return [self.Prediction() for _ in paths]


def test_a_result_produced_record_is_on_disk_before_the_result_is_committed(tmp_path):
    """Issue 38 item 17: after kill -9, three delivered results had no "result produced" record: the record was
    written after the commit that lets a forwarder send the result. Now it is written (and synced) first: at the
    moment of the commit every result of the batch is already in spool/audit.log."""
    from dcube_edge.runtimes.serve.audit import AuditTrail
    from dcube_edge.runtimes.serve.batcher import Batcher
    from dcube_edge.runtimes.serve.ledger import Ledger
    from dcube_edge.runtimes.serve.metrics import Metrics
    from dcube_edge.runtimes.serve.node import Node
    from dcube_edge.runtimes.serve.options import ServeOptions

    ledger = Ledger(tmp_path / "ledger.sqlite")
    uids = [f"1.2.3.{i}" for i in range(4)]
    for u in uids:
        ledger.add(u, tmp_path / f"{u}.dcm", "SCANNER@127.0.0.1", study="1.2.3")
    audit = AuditTrail(str(tmp_path / "audit.log"), "DCUBE")
    node = Node(ServeOptions(spool=tmp_path), Fixed(), "engine-sha", ledger, Metrics(), ("dicom:PACS",), audit)
    seen_at_commit: list[str] = []
    commit = ledger.finish

    def finish(*args, **kwargs):
        seen_at_commit.append((tmp_path / "audit.log").read_text() if (tmp_path / "audit.log").exists() else "")
        return commit(*args, **kwargs)

    ledger.finish = finish
    worker = threading.Thread(target=Batcher(node).classify_rows, args=(ledger.pending(16),))
    worker.start()
    worker.join(30)
    assert ledger.counts() == {"done": 4} and len(seen_at_commit) == 1
    assert all(f"of {u} by engine" in seen_at_commit[0] for u in uids)
    produced = [m for m in records(tmp_path / "audit.log") if event(m) == ("DICOM Instances Accessed", "C", "0")]
    assert len(produced) == 4 and all(m.find("ParticipantObjectIdentification/SOPClass").get("UID") == SR
                                      for m in produced)

"""The node's DICOMweb against PS3.18 over real HTTP (issue 38, items 3, 13, 14, 15): QIDO-RS matching and its
warnings, paging and Retrieve URLs; WADO-RS content negotiation (406) and metadata; 401 with WWW-Authenticate;
STOW-RS sent chunked; and clients trickling their headers while everyone else is still served."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("dicomweb_client", reason="DICOMweb tests need dicomweb-client (the `serve` extra)")
pytest.importorskip("pynetdicom", reason="serve needs the `serve` extra (pynetdicom)")

from serving import Server, dicom_of  # noqa: E402

TOKEN = "s3cret-token-for-the-test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STUDY_A, STUDY_B = "1.2.826.0.1.3680043.10.1000.71", "1.2.826.0.1.3680043.10.1000.72"


def studies(demo_data: Path, folder: Path) -> list:
    """Three instances of two patients in two studies: Doe^Jane (two, January) and Roe^Richard (one, November)."""
    from pydicom import dcmread

    pngs = sorted((demo_data / "val" / "malignant").iterdir())[:2] + sorted((demo_data / "val" / "normal").iterdir())[:1]
    out = []
    for i, (png, (study, name, pid, date)) in enumerate(zip(pngs, [(STUDY_A, "Doe^Jane", "P-1", "20260105")] * 2
                                                           + [(STUDY_B, "Roe^Richard", "P-2", "20261126")])):
        ds = dcmread(dicom_of(png, folder / f"q{i}.dcm"))
        ds.StudyInstanceUID, ds.PatientName, ds.PatientID, ds.StudyDate = study, name, pid, date
        out.append(ds)
    return out


def call(server: Server, path: str, headers: dict | None = None, data: bytes | None = None,
         method: str | None = None) -> tuple[int, object, bytes]:
    """(status, headers, body) of one request, whatever the status; the headers an email.message.Message."""
    url = path if path.startswith("http") else f"http://127.0.0.1:{server.http}{path}"
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def ready(server: Server, datasets: list, headers: dict | None = None) -> None:
    for ds in datasets:
        assert server.result(str(ds.SOPInstanceUID), headers=headers)["status"] == "done"


@pytest.fixture()
def node(ort_engine, demo_data, tmp_path):
    """A node holding the results of the three instances (sent by dicomweb-client), no token."""
    from dicomweb_client.api import DICOMwebClient

    server = Server(ort_engine, tmp_path / "spool")
    datasets = studies(demo_data, tmp_path)
    DICOMwebClient(url=f"http://127.0.0.1:{server.http}/dicomweb").store_instances(datasets)
    ready(server, datasets)
    yield server, datasets
    server.stop()


def uids(body: bytes, tag: str = "0020000D") -> list[str]:
    return [row[tag]["Value"][0] for row in json.loads(body)]


def test_qido_rs_matches_what_it_lists_and_warns_of_what_it_ignores(node):
    """Issue 38 item 13: PatientName=Nobody, 00100020=NOBODY and ModalitiesInStudy=CT each returned every study;
    ranges and wild cards matched nothing; limit=abc was a 500; /series and /instances were 404; the instance
    RetrieveURL was relative and named the study."""
    server, datasets = node
    for query in ("PatientName=Nobody", "00100020=NOBODY", "ModalitiesInStudy=CT", "StudyDate=20270101-"):
        code, _, body = call(server, f"/dicomweb/studies?{query}")
        assert (code, body) == (204, b""), query
    for query, expected in [("PatientName=doe*", [STUDY_A]), ("PatientName=ROE%5ERICHARD", [STUDY_B]),
                            ("StudyDate=20261101-20261130", [STUDY_B]), ("StudyDate=20260101-", [STUDY_A, STUDY_B]),
                            (f"StudyInstanceUID={STUDY_B},{STUDY_A}", [STUDY_A, STUDY_B]), ("PatientID=P-?", [STUDY_A, STUDY_B]),
                            ("ModalitiesInStudy=SR", [STUDY_A, STUDY_B]), ("limit=1&offset=1", [STUDY_B])]:
        code, headers, body = call(server, f"/dicomweb/studies?{query}")
        assert code == 200 and headers["Content-Type"] == "application/dicom+json" and uids(body) == expected, query
    code, headers, body = call(server, "/dicomweb/studies?ContentSequence=x&fuzzymatching=true&PatientName=doe^jane")
    assert code == 200 and uids(body) == [STUDY_A]
    warnings = headers.get_all("Warning")
    assert len(warnings) == 2 and all(w.startswith('299 dcube-edge "') for w in warnings)
    assert "ContentSequence" in warnings[0] + warnings[1] and "fuzzymatching" in warnings[0] + warnings[1]
    for query, says in [("limit=abc", "limit"), ("offset=-1", "offset"), ("Foo=1", "not a DICOM attribute"),
                        ("StudyDate=2026-01-05", "not a date")]:
        code, headers, body = call(server, f"/dicomweb/studies?{query}")
        assert code == 400 and says in json.loads(body)["error"], query
    code, _, body = call(server, "/dicomweb/series")
    series = {row["0020000E"]["Value"][0] for row in json.loads(body)}
    assert code == 200 and series == {str(ds.SeriesInstanceUID) for ds in result_sets(server, datasets)}
    code, _, body = call(server, "/dicomweb/instances")
    rows = json.loads(body)
    assert code == 200 and len(rows) == 3 and {r["00100020"]["Value"][0] for r in rows} == {"P-1", "P-2"}
    for row in rows:
        url = row["00081190"]["Value"][0]
        study, series, instance = (row[t]["Value"][0] for t in ("0020000D", "0020000E", "00080018"))
        assert url == f"http://127.0.0.1:{server.http}/dicomweb/studies/{study}/series/{series}/instances/{instance}"
        code, headers, body = call(server, url)
        assert code == 200 and headers["Content-Type"].startswith("multipart/related") and instance.encode() in body
    code, _, body = call(server, f"/dicomweb/studies/{STUDY_A}/instances?includefield=ContentDate")
    assert code == 200 and len(json.loads(body)) == 2 and all("00080023" in r for r in json.loads(body))


def result_sets(server: Server, datasets: list) -> list:
    """The node's result SRs, by dicomweb-client's own WADO-RS."""
    from dicomweb_client.api import DICOMwebClient

    web = DICOMwebClient(url=f"http://127.0.0.1:{server.http}/dicomweb")
    return [sr for study in (STUDY_A, STUDY_B) for sr in web.retrieve_study(study)]


def test_wado_rs_negotiates_content_and_serves_metadata(node):
    """Issue 38 item 15: Accept application/dicom+json or text/html got multipart DICOM; /metadata was 404; QIDO
    asked for XML answered JSON."""
    from dicomweb_client.api import DICOMwebClient
    from pydicom.dataset import Dataset

    server, datasets = node
    web = DICOMwebClient(url=f"http://127.0.0.1:{server.http}/dicomweb")
    row = web.search_for_instances(study_instance_uid=STUDY_B)[0]
    series, instance = row["0020000E"]["Value"][0], row["00080018"]["Value"][0]
    path = f"/dicomweb/studies/{STUDY_B}/series/{series}/instances/{instance}"
    for accept in ("application/dicom+json", "text/html", 'multipart/related; type="application/dicom+xml"',
                   'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'):
        code, headers, body = call(server, path, {"Accept": accept})
        assert code == 406 and "multipart/related" in json.loads(body)["error"], accept
    for accept in (None, "*/*", 'multipart/related; type="application/dicom"; transfer-syntax=*',
                   "text/html, multipart/related;q=0.5"):
        code, headers, body = call(server, path, {"Accept": accept} if accept else {})
        assert code == 200 and 'type="application/dicom"' in headers["Content-Type"], accept
    for resource in (f"/dicomweb/studies/{STUDY_B}", f"/dicomweb/studies/{STUDY_B}/series/{series}", path):
        code, headers, body = call(server, f"{resource}/metadata", {"Accept": "application/dicom+json"})
        assert code == 200 and headers["Content-Type"] == "application/dicom+json", resource
        assert [str(Dataset.from_json(d).SOPInstanceUID) for d in json.loads(body)] == [instance]
    code, _, _ = call(server, f"{path}/metadata", {"Accept": 'multipart/related; type="application/dicom+xml"'})
    assert code == 406
    assert str(Dataset.from_json(web.retrieve_study_metadata(STUDY_B)[0]).SOPInstanceUID) == instance
    for accept in ("application/dicom+xml", 'multipart/related; type="application/dicom+xml"', "text/html"):
        assert call(server, "/dicomweb/studies", {"Accept": accept})[0] == 406, accept
    code, headers, _ = call(server, "/dicomweb/studies?accept=application/dicom%2Bjson", {"Accept": "text/html"})
    assert code == 200 and headers["Content-Type"] == "application/dicom+json"  # the accept parameter wins (8.3.3.1)
    code, _, body = call(server, f"/dicomweb/studies/{STUDY_B}/frames/1")
    assert code == 404 and "no DICOMweb resource" in json.loads(body)["error"]


def multipart(datasets: list) -> tuple[bytes, str]:
    import io

    boundary = "dcube-test-boundary"
    parts = []
    for ds in datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        parts.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + buffer.getvalue() + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_stow_rs_sent_chunked_is_stored_and_a_401_names_the_scheme(ort_engine, demo_data, tmp_path):
    """Issue 38 items 14 and 15: STOW-RS with Transfer-Encoding: chunked (how Orthanc and dicomweb-client send
    large requests) was refused with 400; a 401 carried no WWW-Authenticate."""
    from dicomweb_client.api import DICOMwebClient

    (tmp_path / "token").write_text(TOKEN + "\n")
    server = Server(ort_engine, tmp_path / "spool", "--token-file", str(tmp_path / "token"))
    datasets = studies(demo_data, tmp_path)
    try:
        body, kind = multipart(datasets[:1])
        connection = http.client.HTTPConnection("127.0.0.1", server.http, timeout=30)
        connection.putrequest("POST", "/dicomweb/studies")
        for name, value in {**AUTH, "Content-Type": kind, "Transfer-Encoding": "chunked"}.items():
            connection.putheader(name, value)
        connection.endheaders()
        for i in range(0, len(body), 1000):  # 1000-byte chunks, as a streaming client sends them
            piece = body[i:i + 1000]
            connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        stored = json.loads(response.read())
        assert response.status == 200, stored
        assert stored["00081199"]["Value"][0]["00081155"]["Value"][0] == str(datasets[0].SOPInstanceUID)
        connection = http.client.HTTPConnection("127.0.0.1", server.http, timeout=30)
        connection.putrequest("POST", "/dicomweb/studies")
        for name, value in {**AUTH, "Content-Type": kind, "Transfer-Encoding": "chunked"}.items():
            connection.putheader(name, value)
        connection.endheaders()
        connection.send(b"zz\r\n" + body[:100] + b"\r\n0\r\n\r\n")  # a chunk size that is no hex number
        response = connection.getresponse()
        assert response.status == 400 and "chunked body is malformed" in json.loads(response.read())["error"]
        web = DICOMwebClient(url=f"http://127.0.0.1:{server.http}/dicomweb", headers=AUTH, chunk_size=2048)
        web.store_instances(datasets[1:])  # over chunk_size: dicomweb-client streams it chunked
        ready(server, datasets, AUTH)
        for headers, error in (({}, None), ({"Authorization": "Bearer wrong-token-of-16-chars"}, "invalid_token")):
            code, answer, _ = call(server, "/dicomweb/studies", headers)
            assert code == 401 and answer["WWW-Authenticate"].startswith("Bearer realm=")
            assert (error in answer["WWW-Authenticate"]) if error else "error=" not in answer["WWW-Authenticate"]
    finally:
        server.stop()


class Trickle(threading.Thread):
    """A client that sends its request headers one byte at a time, never finishing them."""

    def __init__(self, port: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.stop, self.sent = port, stop, 0

    def run(self) -> None:
        header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            for byte in header:
                if self.stop.wait(0.5):
                    return
                try:
                    s.send(bytes([byte]))
                except OSError:
                    return
                self.sent += 1


def test_clients_trickling_headers_do_not_block_everyone_else(node, demo_data, tmp_path):
    """Issue 38 item 3: four clients trickling their headers held every HTTP worker; /healthz, /readyz, STOW and
    QIDO then waited for them. Eight such clients now leave the node answering."""
    from dicomweb_client.api import DICOMwebClient
    from pydicom import dcmread

    server, _ = node
    stop = threading.Event()
    slow = [Trickle(server.http, stop) for _ in range(8)]
    for client in slow:
        client.start()
    try:
        time.sleep(2)
        assert all(c.sent >= 2 for c in slow), "the slow clients are connected and sending"
        assert call(server, "/healthz")[0] == 200 and call(server, "/readyz")[0] == 200
        assert call(server, "/dicomweb/studies")[0] == 200
        extra = dcmread(dicom_of(sorted((demo_data / "val" / "benign").iterdir())[0], tmp_path / "extra.dcm"))
        response = DICOMwebClient(url=f"http://127.0.0.1:{server.http}/dicomweb", timeout=15).store_instances([extra])
        assert str(response.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) == str(extra.SOPInstanceUID)
        assert all(c.is_alive() for c in slow), "the slow clients were still connected throughout"
    finally:
        stop.set()


def test_more_trickling_clients_than_workers_are_cut_at_the_header_deadline(node):
    """Thirty-three clients trickling their headers held all 32 workers for as long as they kept sending, so
    /healthz never answered (a byte every few seconds passes the per-read timeout). Each request now has
    HEADER_DEADLINE_S to finish its headers: with 40 such clients /healthz still answers, and they are cut."""
    from dcube_edge.runtimes.serve.http import HEADER_DEADLINE_S, HTTP_THREADS

    server, _ = node
    stop = threading.Event()
    slow = [Trickle(server.http, stop) for _ in range(HTTP_THREADS + 8)]
    for client in slow:
        client.start()
    try:
        time.sleep(2)
        assert sum(c.sent >= 2 for c in slow) >= HTTP_THREADS, "the slow clients hold every worker"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http}/healthz", timeout=HEADER_DEADLINE_S + 25) as r:
            assert r.status == 200
        for client in slow:
            client.join(timeout=HEADER_DEADLINE_S + 10)
        assert not any(c.is_alive() for c in slow), "every trickling client was cut at the deadline"
    finally:
        stop.set()

"""One SR per result, kept (issue 38 items 6, 7, 8, 11): the PACS's copy and the node's own are one document,
one results series per study, retention leaves every result retrievable and deliverable, a Japanese-charset source
gets its SR, a demographics correction gets a corrected SR, and a spool of an earlier version keeps working. Real
peers: Orthanc (with its DICOMweb plugin) as the PACS, DCMTK's storescu as the modality."""
from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="serve needs the `serve` extra (pynetdicom)")
pytest.importorskip("dicomweb_client", reason="DICOMweb tests need dicomweb-client (the `serve` extra)")

from commands import EXE  # noqa: E402
from dicom_forms import dciodvfy  # noqa: E402
from serving import STUDY, Orthanc, Pacs, Server, dicom_of, free_port, send, source_of  # noqa: E402

JAPANESE = "Yamada^Tarou=山田^太郎=やまだ^たろう"


@pytest.fixture()
def scans(demo_data, tmp_path) -> list[Path]:
    pngs = sorted((demo_data / "val" / "malignant").iterdir())[:2] + sorted((demo_data / "val" / "benign").iterdir())[:1]
    return [dicom_of(p, tmp_path / f"scan{i}.dcm") for i, p in enumerate(pngs)]


def japanese(png: Path, out: Path) -> Path:
    """A scan of another study whose names are in ISO 2022 IR 87 (Specific Character Set "\\ISO 2022 IR 87", valid
    per PS3.3 C.12.1.1.2: the empty first value is the default repertoire), as Japanese modalities write them."""
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    ds = dcmread(dicom_of(png, out))
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.PatientName, ds.ReferringPhysicianName = JAPANESE, "Sato^Hanako=佐藤^花子=さとう^はなこ"
    ds.StudyInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(out, enforce_file_format=True)
    assert b"\x1b$B" in out.read_bytes()  # written with ISO 2022 escape sequences
    return out


def uid_of(path: Path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def wait(predicate, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def content(ds) -> bytes:
    """A dataset's encoding without its file meta (what a C-STORE or STOW-RS carries), in Explicit VR LE."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return buffer.getvalue()


def web(url: str):
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(url=url)


def store_with_dcmtk(port: int, files: list[Path]) -> None:
    if shutil.which("storescu"):
        res = subprocess.run(["storescu", "-aet", "SCANNER", "-aec", "DCUBE", "127.0.0.1", str(port), *map(str, files)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
    else:
        assert send(port, files) == [0] * len(files)


def test_the_pacs_copy_is_the_nodes_copy_and_retention_keeps_every_result(ort_engine, scans, demo_data, tmp_path):
    """Items 6, 7, 8. Before: the SR was rebuilt per destination, retry and cache fill (the PACS copy and WADO-RS
    copy differed), each source image got its own series numbered 990, a Japanese-charset source's SR was never
    delivered and broke every QIDO, and retention's purge left WADO/QIDO answering 500 and a destination added later
    dead-lettering everything."""
    from pydicom import dcmread

    kanji = japanese(sorted((demo_data / "val" / "normal").iterdir())[0], tmp_path / "kanji.dcm")
    orthanc = Orthanc(tmp_path / "orthanc")
    spool = tmp_path / "spool"
    server = Server(ort_engine, spool, "--forward", f"ORTHANC@127.0.0.1:{orthanc.dicom}", "--forward-stow",
                    orthanc.dicomweb)
    sources = [*scans, kanji]
    uids = [uid_of(f) for f in sources]
    try:
        assert send(server.dicom, scans) == [0] * len(scans)
        store_with_dcmtk(server.dicom, [kanji])
        wait(lambda: all(server.result(u)["forwarded"] for u in uids), 120, "every delivery to Orthanc")
        node = web(f"http://127.0.0.1:{server.http}/dicomweb")
        pacs = web(orthanc.dicomweb)
        kept = {}
        for uid in uids:
            record = server.result(uid)
            study, sr_uid = record["study_instance_uid"], record["result_sr"]
            found = node.search_for_instances(study_instance_uid=study)
            series = next(f["0020000E"]["Value"][0] for f in found if f["00080018"]["Value"][0] == sr_uid)
            mine, theirs = node.retrieve_instance(study, series, sr_uid), pacs.retrieve_instance(study, series, sr_uid)
            assert content(mine) == content(theirs), uid  # byte for byte the same document
            assert content(dcmread(spool / "results" / f"{sr_uid}.dcm")) == content(mine)  # the one kept
            kept[uid] = content(mine)
        in_study = [f for f in pacs.search_for_instances(study_instance_uid=STUDY, search_filters={"Modality": "SR"})]
        assert len(in_study) == len(scans) and len({f["0020000E"]["Value"][0] for f in in_study}) == 1  # one series
        numbered = [pacs.retrieve_instance(STUDY, f["0020000E"]["Value"][0], f["00080018"]["Value"][0]) for f in in_study]
        assert {int(s.InstanceNumber) for s in numbered} == {1, 2, 3} and {int(s.SeriesNumber) for s in numbered} == {990}
        kanji_sr = pacs.retrieve_instance(server.result(uids[-1])["study_instance_uid"],
                                          dcmread(spool / "results" / f"{server.result(uids[-1])['result_sr']}.dcm")
                                          .SeriesInstanceUID, server.result(uids[-1])["result_sr"])
        assert str(kanji_sr.PatientName) == JAPANESE and kanji_sr.PatientName.ideographic == "山田^太郎"
        assert list(kanji_sr.SpecificCharacterSet) == ["ISO 2022 IR 6", "ISO 2022 IR 87"]
        assert source_of(kanji_sr) == uids[-1]
        errors, _ = dciodvfy(spool / "results" / f"{server.result(uids[-1])['result_sr']}.dcm")
        assert errors == [], errors
        studies = node.search_for_studies()  # QIDO keeps working with the Japanese study in the spool
        assert len(studies) == 2 and any(JAPANESE.split("=")[0] in json.dumps(s) for s in studies)
    finally:
        server.stop()
        orthanc.stop()

    with sqlite3.connect(spool / "ledger.sqlite") as db:  # three days pass
        db.execute("UPDATE instances SET received = received - 3 * 86400")
    later = free_port()
    added = Pacs(later)  # a destination added after the purge
    server = Server(ort_engine, spool, "--keep-days", "1", "--forward", f"PACS@127.0.0.1:{later}")
    try:
        wait(lambda: not list((spool / "instances").glob("*.dcm")), 60, "the purge")
        wait(lambda: len({str(d.SOPInstanceUID) for d in added.received}) == len(uids), 120, "the later destination")
        by_source = {source_of(d): content(d) for d in added.received}
        assert by_source == kept  # the same documents, without the sources
        node = web(f"http://127.0.0.1:{server.http}/dicomweb")
        assert len(node.retrieve_study(STUDY)) == len(scans) and len(node.search_for_studies()) == 2
        assert all(server.result(u)["pixels_deleted"] for u in uids)
    finally:
        server.stop()
        added.stop()


def test_a_demographics_correction_gets_a_corrected_sr(ort_engine, scans, tmp_path):
    """Item 11: a re-send with the same UID and pixels but a corrected PatientID got Success and was discarded,
    the PACS kept the SR with the wrong PatientID, and the log said the same as for a new instance. Now the
    corrected header replaces the held one and a corrected SR — a new SR instance naming the wrong one in its
    Predecessor Documents Sequence (PS3.3 C.17.2.3) — goes to every destination; the log says "corrected"."""
    from pydicom import dcmread

    port = free_port()
    pacs = Pacs(port)
    log = tmp_path / "node.log"
    server = Server(ort_engine, tmp_path / "spool", "--forward", f"PACS@127.0.0.1:{port}", "--log-format", "json",
                    log=log)
    uid = uid_of(scans[0])
    try:
        assert send(server.dicom, scans[:1]) == [0]
        wait(lambda: len(pacs.received) == 1, 60, "the first SR")
        first = pacs.received[0]
        fixed = dcmread(scans[0])
        fixed.PatientID, fixed.PatientName = "CORRECTED-42", "Right^Patient"
        fixed.save_as(tmp_path / "fixed.dcm", enforce_file_format=True)
        assert send(server.dicom, [tmp_path / "fixed.dcm"]) == [0]
        wait(lambda: len(pacs.received) == 2, 60, "the corrected SR")
        corrected = pacs.received[1]
        assert corrected.SOPInstanceUID != first.SOPInstanceUID and corrected.PatientID == "CORRECTED-42"
        assert corrected.SeriesInstanceUID == first.SeriesInstanceUID and corrected.InstanceNumber == 2
        predecessor = corrected.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert predecessor.ReferencedSOPInstanceUID == first.SOPInstanceUID
        record = server.result(uid)
        assert record["result_sr"] == corrected.SOPInstanceUID and record["corrections"] == 1
        assert record["decision"]["explanation"].startswith(record["label"] + ":")  # why, as classify says it
        assert send(server.dicom, [tmp_path / "fixed.dcm"]) == [0]  # the corrected one resent: nothing new
        found = web(f"http://127.0.0.1:{server.http}/dicomweb").search_for_instances(study_instance_uid=STUDY)
        assert [f["00080018"]["Value"][0] for f in found] == [corrected.SOPInstanceUID]  # the current one
        time.sleep(2)
        assert len(pacs.received) == 2
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
        fix = [x for x in lines if x["event"] == "corrected"]
        assert len(fix) == 1 and "PatientID" in fix[0]["message"] and "CORRECTED-42" not in fix[0]["message"]
        assert any(x["event"] == "sr-corrected" for x in lines)
    finally:
        server.stop()
        pacs.stop()


def test_a_spool_of_an_earlier_version_keeps_working(ort_engine, scans, tmp_path):
    """Ledger rows without a kept SR (spools of earlier versions) get their SR once, on first need, as those
    versions sent it: the same SOP Instance UID, the series per source; a row whose source retention deleted and
    of which nothing was cached stays readable, its delivery dead-lettered saying why, and QIDO still answers."""
    from pydicom import dcmread

    from dcube_edge.runtimes.files import sha256
    from dcube_edge.runtimes.serve.sr import sr_uids

    spool = tmp_path / "spool"
    (spool / "instances").mkdir(parents=True)
    engine_hash = sha256(ort_engine / "manifest.json")
    db = sqlite3.connect(spool / "ledger.sqlite")
    db.executescript(  # the schema and rows an earlier version wrote
        "CREATE TABLE instances (uid TEXT PRIMARY KEY, path TEXT, source TEXT, received REAL, status TEXT, label TEXT, "
        "probs TEXT, error TEXT, engine TEXT, classified REAL, batch INTEGER, forwarded INTEGER DEFAULT 0, "
        "forward_attempts INTEGER DEFAULT 0, forward_next REAL DEFAULT 0, forward_error TEXT, content TEXT, study TEXT, "
        "purged REAL);"
        "CREATE TABLE deliveries (uid TEXT, destination TEXT, status TEXT, attempts INTEGER, next_at REAL, error TEXT, "
        "updated REAL, PRIMARY KEY (uid, destination));"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);")
    db.execute("INSERT INTO meta VALUES ('engine_sha256', ?)", (engine_hash,))
    kept, gone = scans[0], scans[1]
    shutil.copy(kept, spool / "instances" / f"{uid_of(kept)}.dcm")
    probs = json.dumps({"benign": 0.2, "malignant": 0.7, "normal": 0.1})
    for f, purged in ((kept, None), (gone, time.time())):
        db.execute("INSERT INTO instances (uid, path, source, received, status, label, probs, engine, classified, batch, "
                   "study, purged) VALUES (?, ?, 'OLD@127.0.0.1', ?, 'done', 'malignant', ?, ?, ?, 1, ?, ?)",
                   (uid_of(f), str(spool / "instances" / f"{uid_of(f)}.dcm"), time.time(), probs, engine_hash,
                    time.time(), STUDY, purged))
    db.commit()
    db.close()
    port = free_port()
    pacs = Pacs(port)
    server = Server(ort_engine, spool, "--forward", f"PACS@127.0.0.1:{port}")
    try:
        wait(lambda: len(pacs.received) == 1, 60, "the earlier version's result")
        series, sr_uid = sr_uids(uid_of(kept), engine_hash)
        assert (pacs.received[0].SOPInstanceUID, pacs.received[0].SeriesInstanceUID) == (sr_uid, series)
        wait(lambda: server.result(uid_of(gone))["deliveries"][0]["status"] == "dead", 60, "the unrecoverable one")
        dead = server.result(uid_of(gone))
        assert dead["label"] == "malignant" and "deleted by retention" in dead["deliveries"][0]["error"]
        assert "deleted by retention" in dead["result_sr_error"]
        found = web(f"http://127.0.0.1:{server.http}/dicomweb").search_for_instances(study_instance_uid=STUDY)
        assert [f["00080018"]["Value"][0] for f in found] == [sr_uid]
        assert content(dcmread(spool / "results" / f"{sr_uid}.dcm")) == content(pacs.received[0])
    finally:
        server.stop(signal.SIGTERM)
        pacs.stop()
    status = subprocess.run([str(EXE), "spool", "status", str(spool), "--json", "-"], capture_output=True, text=True,
                            timeout=60)
    assert json.loads(status.stdout)["result_srs"] == 1

"""`dcube-edge serve` started for real on loopback and driven by real clients: a pynetdicom SCU and an HTTP
client. Includes the kill -9 fault test: every acknowledged instance ends with exactly one result."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="serve needs the `serve` extra (pynetdicom)")
pytest.importorskip("cheroot", reason="serve needs the `serve` extra (cheroot)")
pytest.importorskip("prometheus_client", reason="serve needs the `serve` extra (prometheus-client)")

from dicom_forms import dciodvfy  # noqa: E402
from serving import EXE, STUDY, Pacs, Server, decision_of, dicom_of, free_port, send, source_of  # noqa: E402

from dcube_edge import runtimes  # noqa: E402


def _frames_missing(ds) -> None:
    ds.NumberOfFrames = 3  # the pixel data holds one


def _unknown_photometric(ds) -> None:
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"  # a JPEG/MPEG form, not one for native pixel data


# Unusable three ways (colour and multi-frame objects are accepted: tests/serve/test_views.py).
BAD = [(lambda ds: ds.__delattr__("PixelData"), "no pixel data"), (_frames_missing, "NumberOfFrames says 3"),
       (_unknown_photometric, "photometric interpretation 'YBR_PARTIAL_420' is not one this reader decodes")]


@pytest.fixture()
def scans(demo_data, tmp_path):
    pngs = sorted((demo_data / "val" / "malignant").iterdir())[:3] + sorted((demo_data / "val" / "benign").iterdir())[:3]
    return [dicom_of(p, tmp_path / f"scan{i}.dcm") for i, p in enumerate(pngs)]


def test_echo_store_results_and_rejections(ort_engine, scans, tmp_path):
    from pydicom import dcmread
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    server = Server(ort_engine, tmp_path / "spool")
    try:
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", server.dicom, ae_title="DCUBE")
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        assoc.release()
        assert send(server.dicom, scans) == [0] * len(scans)
        bad = []
        for i, (change, _) in enumerate(BAD):  # the same instance made unusable three ways, each under a new UID
            ds = dcmread(scans[0])
            change(ds)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.4.5.6.7.{i + 1}"
            ds.save_as(tmp_path / f"bad{i}.dcm", enforce_file_format=True)
            bad.append(tmp_path / f"bad{i}.dcm")
        statuses = send(server.dicom, bad)
        assert all(s is not None and s >= 0xA000 for s in statuses), statuses  # failure statuses, not success
        rejected = tmp_path / "spool" / "rejected"
        assert len(list(rejected.glob("*.dcm"))) == len(BAD)
        reasons = " ".join(f.read_text() for f in rejected.glob("*.txt"))
        assert all(why in reasons for _, why in BAD)
        with runtimes.load(ort_engine) as clf:
            expected = list(clf.classify(scans))
        for f, want in zip(scans, expected):
            got = server.result(str(dcmread(f).SOPInstanceUID))
            assert got["status"] == "done" and got["label"] == want.label
            assert all(abs(got["probs"][c] - want.probs[c]) < 1e-5 for c in want.probs)
        body = scans[0].read_bytes()
        req = urllib.request.Request(f"http://127.0.0.1:{server.http}/v1/classify", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            direct = json.loads(r.read())
        assert direct["label"] == expected[0].label
        metrics = server.get("/metrics")
        assert "dcube_instances_received_total 6.0" in metrics and "dcube_instances_rejected_total 3.0" in metrics
        with pytest.raises(urllib.error.HTTPError):
            server.get("/v1/results/..%2F..%2Fetc%2Fpasswd")
    finally:
        server.stop()


def test_disallowed_calling_ae_is_refused(ort_engine, scans, tmp_path):
    server = Server(ort_engine, tmp_path / "spool", "--allow-ae", "SCANNER", "--workers", "2")
    try:
        assert send(server.dicom, scans[:1], ae_title="INTRUDER") == [None]
        assert send(server.dicom, scans[:1], ae_title="SCANNER") == [0]
    finally:
        server.stop()


def test_a_called_ae_title_other_than_the_nodes_is_rejected_unless_any_is_accepted(ort_engine, scans, tmp_path):
    """Issue 38 item 16: `storescu -aec ANYTHING` stored. Now the association is rejected (rejected-permanent,
    service-user, reason 7 "called AE title not recognized", PS3.8 7.1.1.9), logged and audited; `--any-called-ae`
    accepts any called AE title. DCMTK's storescu and pynetdicom both see the reason."""
    import shutil

    from pynetdicom import AE, StoragePresentationContexts

    spool = tmp_path / "spool"
    server = Server(ort_engine, spool)
    try:
        ae = AE(ae_title="SCANNER")
        ae.requested_contexts = StoragePresentationContexts[:10]
        assoc = ae.associate("127.0.0.1", server.dicom, ae_title="ANYTHING")
        assert assoc.is_rejected
        rejection = assoc.acceptor.primitive
        assert (rejection.result, rejection.result_source, rejection.diagnostic) == (0x01, 0x01, 0x07)
        if shutil.which("storescu"):
            res = subprocess.run(["storescu", "-aet", "SCANNER", "-aec", "ANYTHING", "127.0.0.1", str(server.dicom),
                                  str(scans[0])], capture_output=True, text=True, timeout=60)
            assert res.returncode != 0 and "Called AE Title Not Recognized" in res.stdout + res.stderr
        assert send(server.dicom, scans[:1]) == [0]  # addressed to DCUBE
    finally:
        server.stop()
    log = server.proc.stderr.read()
    assert "called AE title 'ANYTHING' not recognized" in log
    refusals = [line for line in (spool / "audit.log").read_text().splitlines() if "'ANYTHING' not recognized" in line]
    assert len(refusals) >= 1 and all('originalText="Security Alert"' in r and 'EventOutcomeIndicator="4"' in r
                                      for r in refusals)
    server = Server(ort_engine, tmp_path / "spool2", "--any-called-ae")
    try:
        ae = AE(ae_title="SCANNER")
        ae.requested_contexts = StoragePresentationContexts[:10]
        assoc = ae.associate("127.0.0.1", server.dicom, ae_title="ANYTHING")
        assert assoc.is_established
        assoc.release()
    finally:
        server.stop()


def test_kill_9_mid_stream_loses_nothing_and_classifies_once(ort_engine, demo_data, tmp_path):
    from pydicom import dcmread

    pngs = sorted((demo_data / "train" / "benign").iterdir())[:24]
    files = [dicom_of(p, tmp_path / f"s{i}.dcm") for i, p in enumerate(pngs)]
    spool = tmp_path / "spool"
    server = Server(ort_engine, spool)
    acked: list[str] = []
    lock = threading.Lock()

    def sender(chunk: list[Path]) -> None:
        from pynetdicom import AE, StoragePresentationContexts

        ae = AE(ae_title="SCANNER")
        ae.requested_contexts = StoragePresentationContexts[:100]
        assoc = ae.associate("127.0.0.1", server.dicom, ae_title="DCUBE")
        if not assoc.is_established:
            return
        for f in chunk:
            try:
                status = assoc.send_c_store(dcmread(f))
            except Exception:  # noqa: BLE001 — the server died mid-association
                return
            if status and int(status.Status) == 0:
                with lock:
                    acked.append(str(dcmread(f).SOPInstanceUID))
        assoc.release()

    threads = [threading.Thread(target=sender, args=(files[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    while len(acked) < 6:
        time.sleep(0.01)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    for t in threads:
        t.join(timeout=30)
    assert 6 <= len(acked) <= len(files)
    restarted = Server(ort_engine, spool)
    try:
        for uid in acked:
            r = restarted.result(uid)
            assert r["status"] == "done" and r["label"] and r["engine_sha256"]
    finally:
        restarted.stop()
    import sqlite3

    db = sqlite3.connect(spool / "ledger.sqlite")
    rows = dict(db.execute("SELECT uid, COUNT(*) FROM instances GROUP BY uid").fetchall())
    assert all(rows.get(uid) == 1 for uid in acked)  # one ledger row, hence one result, per acknowledged instance
    assert not list((spool / "instances").glob("*.partial"))


def test_results_go_back_to_the_pacs_as_structured_reports_retried_until_acknowledged(ort_engine, scans, tmp_path):
    from pydicom import dcmread

    pacs_port = free_port()
    server = Server(ort_engine, tmp_path / "spool", "--forward", f"PACS@127.0.0.1:{pacs_port}")
    pacs = None
    try:
        assert send(server.dicom, scans[:2]) == [0, 0]
        uids = [str(dcmread(f).SOPInstanceUID) for f in scans[:2]]
        first = server.result(uids[0])
        deadline = time.time() + 20
        while time.time() < deadline and server.get(f"/v1/results/{uids[0]}")["forward_attempts"] == 0:
            time.sleep(0.1)
        failed = server.get(f"/v1/results/{uids[0]}")
        assert not failed["forwarded"] and "association" in failed["forward_error"]  # no PACS yet: kept, retried
        pacs = Pacs(pacs_port)
        deadline = time.time() + 30
        while time.time() < deadline and len({str(d.SOPInstanceUID) for d in pacs.received}) < 2:
            time.sleep(0.2)
        reports = {source_of(d): d for d in pacs.received}
        assert set(reports) == set(uids)
        sr = reports[uids[0]]
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and sr.StudyInstanceUID == STUDY
        assert decision_of(sr) == first["label"]
        assert server.get(f"/v1/results/{uids[0]}")["forwarded"] == 1
        sr.save_as(tmp_path / "received-sr.dcm", enforce_file_format=True)
        errors, warnings = dciodvfy(tmp_path / "received-sr.dcm")
        assert errors == [] and all("99DCUBE" in w for w in warnings), errors + warnings  # this engine maps no codes
    finally:
        server.stop()
        if pacs:
            pacs.stop()


def test_serve_load_benchmark_reports_what_the_batcher_formed(ort_engine):
    res = subprocess.run([str(EXE), "bench", str(ort_engine), "--serve", "1,2", "--per-sender", "3", "--json", "-"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout[res.stdout.index('{\n  "machine"'):])["serve_load"]
    assert [r["senders"] for r in rows] == [1, 2] and [r["instances"] for r in rows] == [3, 6]
    assert all(sum(r["batch_sizes"].values()) == r["instances"] and r["p99_ms"] >= r["p50_ms"] > 0 for r in rows)


def test_http_needs_the_bearer_token_when_one_is_set(ort_engine, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token-for-the-test\n")
    server = Server(ort_engine, tmp_path / "spool", "--token-file", token)
    try:
        assert server.get("/healthz")["status"] == "ok"  # liveness stays open for the orchestrator
        with pytest.raises(urllib.error.HTTPError) as e:
            server.get("/v1/results/1.2.3")
        assert e.value.code == 401
        req = urllib.request.Request(f"http://127.0.0.1:{server.http}/v1/results/1.2.3",
                                     headers={"Authorization": "Bearer s3cret-token-for-the-test"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 404  # authorised; no such instance
    finally:
        server.stop()


def test_another_engine_needs_another_spool_or_reclassify(ort_engine, tiny_run, scans, tmp_path):
    from pydicom import dcmread

    from dcube_edge.export.build import ExportOptions, export

    other = tmp_path / "other-engine"
    export(tiny_run, other, ExportOptions(max_batch=8), log=lambda *_: None)  # same model, another manifest
    spool = tmp_path / "spool"
    server = Server(ort_engine, spool)
    try:
        assert send(server.dicom, scans[:1]) == [0]
        first = server.result(str(dcmread(scans[0]).SOPInstanceUID))
    finally:
        server.stop()
    res = subprocess.run([str(EXE), "serve", str(other), "--spool", str(spool)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "another engine" in res.stderr and "--reclassify" in res.stderr
    again = Server(other, spool, "--reclassify")
    try:
        redone = again.result(first["sop_instance_uid"])
        assert redone["engine_sha256"] != first["engine_sha256"] and redone["label"] == first["label"]
    finally:
        again.stop()


def test_readme_walkthrough_demo_scans_through_a_standard_sender(ort_engine, tmp_path):
    """`demo-data --dicom`, then pynetdicom's own storescu app as the sender, then the results over HTTP."""
    subprocess.run([str(EXE), "demo-data", str(tmp_path / "scans"), "--per-class", "1", "--size", "32", "--dicom"],
                   check=True, capture_output=True)
    files = sorted((tmp_path / "scans").rglob("*.dcm"))
    server = Server(ort_engine, tmp_path / "spool", "--allow-ae", "SCANNER")
    try:
        res = subprocess.run([sys.executable, "-m", "pynetdicom", "storescu", "127.0.0.1", str(server.dicom),
                              *map(str, files), "-aet", "SCANNER", "-aec", "DCUBE"], capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        from pydicom import dcmread

        with runtimes.load(ort_engine) as clf:
            expected = {str(dcmread(f).SOPInstanceUID): p.label for f, p in zip(files, clf.classify(files))}
        assert {uid: server.result(uid)["label"] for uid in expected} == expected
    finally:
        server.stop()


def test_a_repeated_uid_with_other_pixels_is_refused_never_overwritten(ort_engine, scans, tmp_path):
    """First-day finding: the same SOPInstanceUID sent twice with different pixels overwrote the spool file while
    the ledger kept the first image's label. Now the first image keeps its file and result; the second is
    refused and kept in rejected/; a plain resend (same pixels, a sender's retry) is acknowledged and changes
    nothing. Issue 38 item 16: the refusal was 0x0111, which is no C-STORE status (PS3.4 B.2.3, PS3.7 9.1.1) and
    which DCMTK showed as "Unknown Status"; now a failure of the Cannot understand range that storescu names."""
    import shutil

    from pydicom import dcmread

    first = scans[0]
    other = dcmread(scans[3])
    other.SOPInstanceUID = other.file_meta.MediaStorageSOPInstanceUID = dcmread(first).SOPInstanceUID
    other.save_as(tmp_path / "other.dcm", enforce_file_format=True)
    spool = tmp_path / "spool"
    server = Server(ort_engine, spool, log=tmp_path / "node.log")
    try:
        uid = str(dcmread(first).SOPInstanceUID)
        assert send(server.dicom, [first]) == [0]
        result = server.result(uid)
        held = (spool / "instances" / f"{uid}.dcm").read_bytes()
        assert send(server.dicom, [tmp_path / "other.dcm"]) == [0xC002]
        assert send(server.dicom, [first]) == [0]  # the sender's retry of the same image
        said = [line for line in server.errors().splitlines() if uid in line and "received" in line]
        assert sum("already held, unchanged" in line for line in said) == 1, said  # was logged as "stored"
        assert (spool / "instances" / f"{uid}.dcm").read_bytes() == held
        assert server.get(f"/v1/results/{uid}")["label"] == result["label"]
        kept = list((spool / "rejected").glob(f"{uid}.*.dcm"))
        assert len(kept) == 1 and dcmread(kept[0]).PixelData == other.PixelData
        assert "other pixel data" in kept[0].with_suffix(".txt").read_text()
        if shutil.which("storescu"):
            res = subprocess.run(["storescu", "-v", "-aet", "SCANNER", "-aec", "DCUBE", "127.0.0.1", str(server.dicom),
                                  str(tmp_path / "other.dcm")], capture_output=True, text=True, timeout=60)
            shown = res.stdout + res.stderr
            assert "Error: CannotUnderstand" in shown and "Unknown Status" not in shown, shown
    finally:
        server.stop()


@pytest.mark.parametrize("allow_ae", [",", " , ", ""])
def test_an_empty_allow_list_is_refused_not_read_as_anyone(ort_engine, tmp_path, allow_ae):
    token = tmp_path / "token"
    token.write_text("s3cret-token-for-the-test\n")
    res = subprocess.run([str(EXE), "serve", str(ort_engine), "--spool", str(tmp_path / "spool"), "--host", "0.0.0.0",
                          "--token-file", str(token), "--allow-ae", allow_ae], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "names no AE title" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "spool").exists()


def test_serve_gives_every_dicom_form_the_result_classify_gives_its_png(ort_engine, demo_data, tmp_path):
    """The intensity contract through the node: the phantoms' PNGs classified by `classify`, and the same pixels
    C-STOREd in every form a modality writes (tests/dicom_forms.py): identical labels and probabilities."""
    from dicom_forms import FORMS, dicom_forms
    from pydicom import dcmread

    pngs = sorted((demo_data / "val" / "malignant").iterdir())[:2] + sorted((demo_data / "val" / "normal").iterdir())[:2]
    with runtimes.load(ort_engine) as clf:
        want = {p.stem: (q.label, q.probs) for p, q in zip(pngs, clf.classify(pngs))}
    forms = dicom_forms(pngs, tmp_path / "forms")
    server = Server(ort_engine, tmp_path / "spool")
    try:
        for name in FORMS:
            assert send(server.dicom, forms[name]) == [0] * len(pngs), name
            for f in forms[name]:
                r = server.result(str(dcmread(f).SOPInstanceUID))
                assert (r["label"], r["probs"]) == want[f.stem], (name, f.stem)
    finally:
        server.stop()


def dcmtk(*args: str) -> None:
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def renumbered(src: Path, out: Path) -> Path:
    """The same file under a new SOP Instance UID (pixel data untouched, compressed or not)."""
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    ds = dcmread(src)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(out, enforce_file_format=True)
    return out


def test_what_scanners_send_is_accepted_compressed_or_not_and_non_images_are_not_applicable(ort_engine, demo_data, tmp_path):
    """DCMTK as the modality: one image uncompressed and as lossless JPEG-LS, RLE and JPEG Lossless (identical
    results) and as lossy JPEG baseline (a result); a dose SR sent with the study is accepted and recorded as not
    applicable, not failed."""
    import shutil as sh

    from pydicom import dcmread

    if not all(sh.which(t) for t in ("storescu", "dcmcjpls", "dcmcrle", "dcmcjpeg")):
        pytest.skip("DCMTK is not installed (Debian package dcmtk)")
    base = dicom_of(sorted((demo_data / "val" / "malignant").iterdir())[0], tmp_path / "base.dcm")
    forms = {"uncompressed": renumbered(base, tmp_path / "raw.dcm")}
    # each form with the storescu option that proposes its transfer syntax, as a modality holding it would
    propose = {"uncompressed": "-xe", "jpeg-ls": "-xt", "rle": "-xr", "jpeg-lossless": "-xs", "jpeg-baseline": "-xy"}
    for name, tool in {"jpeg-ls": ["dcmcjpls"], "rle": ["dcmcrle"], "jpeg-lossless": ["dcmcjpeg", "+e1"],
                       "jpeg-baseline": ["dcmcjpeg", "+eb"]}.items():
        dcmtk(*tool, str(base), str(tmp_path / f"{name}.tmp.dcm"))
        forms[name] = renumbered(tmp_path / f"{name}.tmp.dcm", tmp_path / f"{name}.dcm")
    syntaxes = {name: str(dcmread(f).file_meta.TransferSyntaxUID) for name, f in forms.items()}
    assert syntaxes["jpeg-ls"] == "1.2.840.10008.1.2.4.80" and syntaxes["rle"] == "1.2.840.10008.1.2.5"
    assert syntaxes["jpeg-lossless"] == "1.2.840.10008.1.2.4.70" and syntaxes["jpeg-baseline"] == "1.2.840.10008.1.2.4.50"
    dose = dose_sr(dcmread(base), tmp_path / "dose.dcm")
    server = Server(ort_engine, tmp_path / "spool")
    try:
        for name, f in forms.items():
            dcmtk("storescu", propose[name], "-aet", "SCANNER", "-aec", "DCUBE", "127.0.0.1", str(server.dicom), str(f))
        dcmtk("storescu", "-aet", "SCANNER", "-aec", "DCUBE", "127.0.0.1", str(server.dicom), str(dose))
        results = {name: server.result(str(dcmread(f).SOPInstanceUID)) for name, f in forms.items()}
        lossless = {name: (r["label"], r["probs"]) for name, r in results.items() if name != "jpeg-baseline"}
        assert len(set(map(json.dumps, lossless.values()))) == 1, lossless  # identical to the uncompressed image's
        assert results["jpeg-baseline"]["status"] == "done" and results["jpeg-baseline"]["label"]
        not_applicable = server.result(str(dcmread(dose).SOPInstanceUID))
        assert not_applicable["status"] == "not_applicable" and "not an image" in not_applicable["error"]
        assert not list((tmp_path / "spool" / "rejected").iterdir())
    finally:
        server.stop()


def dose_sr(image, out: Path) -> Path:
    """A minimal X-Ray Radiation Dose SR in the image's study: an object without pixel data, as a modality sends."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.67"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber"):
        setattr(ds, keyword, getattr(image, keyword, ""))
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = "SR", generate_uid(), 99, 1
    ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", "UNVERIFIED"
    ds.save_as(out, enforce_file_format=True)
    return out

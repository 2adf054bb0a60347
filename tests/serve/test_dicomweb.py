"""DICOMweb on the node (PS3.18), driven by dicomweb-client as an independent client: STOW-RS in on the same
intake and ledger as C-STORE, QIDO-RS and WADO-RS over the result SRs, and kill -9 during STOW-RS."""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("dicomweb_client", reason="DICOMweb tests need dicomweb-client (the `serve` extra)")
pytest.importorskip("pynetdicom", reason="serve needs the `serve` extra (pynetdicom)")

from serving import STUDY, Orthanc, Server, decision_of, dicom_of, source_of  # noqa: E402


@pytest.fixture()
def scans(demo_data, tmp_path) -> list[Path]:
    pngs = sorted((demo_data / "val" / "malignant").iterdir())[:2] + sorted((demo_data / "val" / "normal").iterdir())[:2]
    return [dicom_of(p, tmp_path / f"scan{i}.dcm") for i, p in enumerate(pngs)]


def client(server: Server):
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(url=f"http://127.0.0.1:{server.http}/dicomweb")


def test_stow_rs_stores_the_good_instance_and_names_the_bad_ones_failure(ort_engine, scans, tmp_path):
    from pydicom import dcmread

    good = dcmread(scans[0])
    bad = dcmread(scans[1])
    bad.SOPInstanceUID = bad.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    del bad.PixelData  # an image without its pixels: refused with a reason, as by C-STORE
    server = Server(ort_engine, tmp_path / "spool")
    try:
        response = client(server).store_instances([good, bad])
        stored = [str(i.ReferencedSOPInstanceUID) for i in response.ReferencedSOPSequence]
        failed = {str(i.ReferencedSOPInstanceUID): int(i.FailureReason) for i in response.FailedSOPSequence}
        assert stored == [str(good.SOPInstanceUID)] and failed == {"1.2.3.4.5.6.7.8.9": 0xC000}
        result = server.result(str(good.SOPInstanceUID))
        assert result["status"] == "done" and result["source"].startswith("STOW-RS")
        kept = list((tmp_path / "spool" / "rejected").glob("1.2.3.4.5.6.7.8.9.*.txt"))
        assert kept and "no pixel data" in kept[0].read_text()
    finally:
        server.stop()


def test_results_are_found_by_qido_rs_and_retrieved_by_wado_rs(ort_engine, scans, tmp_path):
    from pydicom import dcmread

    server = Server(ort_engine, tmp_path / "spool")
    try:
        web = client(server)
        web.store_instances([dcmread(f) for f in scans])
        uids = [str(dcmread(f).SOPInstanceUID) for f in scans]
        labels = {uid: server.result(uid)["label"] for uid in uids}
        assert [s["0020000D"]["Value"][0] for s in web.search_for_studies()] == [STUDY]
        found = web.search_for_instances(study_instance_uid=STUDY)
        assert len(found) == len(scans) and {f["00080016"]["Value"][0] for f in found} == {"1.2.840.10008.5.1.4.1.1.88.33"}
        series = found[0]["0020000E"]["Value"][0]
        sr = web.retrieve_instance(STUDY, series, found[0]["00080018"]["Value"][0])
        assert decision_of(sr) == labels[source_of(sr)] and sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
        assert len(web.retrieve_study(STUDY)) == len(scans)
        assert web.search_for_instances(study_instance_uid="1.2.3.999") == []
    finally:
        server.stop()


def test_kill_9_during_stow_rs_loses_nothing_acknowledged(ort_engine, demo_data, tmp_path):
    """Requests of 3 instances each go in back to back while the server is killed with SIGKILL; after a restart on
    the same spool every instance a response acknowledged has exactly one result."""
    from pydicom import dcmread

    pngs = sorted((demo_data / "train" / "benign").iterdir())[:18]
    datasets = [dcmread(dicom_of(p, tmp_path / f"s{i}.dcm")) for i, p in enumerate(pngs)]
    spool = tmp_path / "spool"
    server = Server(ort_engine, spool)
    acked: list[str] = []

    def sender() -> None:
        web = client(server)
        for i in range(0, len(datasets), 3):
            try:
                response = web.store_instances(datasets[i:i + 3])
            except Exception:  # noqa: BLE001 — the server died mid-request: nothing of this request was acknowledged
                return
            acked.extend(str(r.ReferencedSOPInstanceUID) for r in response.ReferencedSOPSequence)

    thread = threading.Thread(target=sender)
    thread.start()
    while len(acked) < 6 and thread.is_alive():
        time.sleep(0.01)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    thread.join()
    assert acked, "nothing was acknowledged before the kill"
    again = Server(ort_engine, spool)
    try:
        for uid in acked:
            assert again.result(uid)["status"] == "done"
    finally:
        again.stop()


def test_modality_to_node_to_orthanc_by_c_store_and_stow_rs(ort_engine, scans, tmp_path):
    """A modality sends by C-STORE (pynetdicom) and by STOW-RS (dicomweb-client); the node delivers every result SR
    to Orthanc by C-STORE and by STOW-RS; Orthanc's own QIDO-RS finds each one in the source's study."""
    from dicomweb_client.api import DICOMwebClient
    from pydicom import dcmread
    from serving import send

    pacs = Orthanc(tmp_path / "orthanc")
    server = Server(ort_engine, tmp_path / "spool", "--forward", f"ORTHANC@127.0.0.1:{pacs.dicom}",
                    "--forward-stow", pacs.dicomweb)
    try:
        assert send(server.dicom, scans[:2]) == [0, 0]
        client(server).store_instances([dcmread(f) for f in scans[2:]])
        uids = [str(dcmread(f).SOPInstanceUID) for f in scans]
        deadline = time.time() + 60
        while time.time() < deadline and not all(server.result(u)["forwarded"] for u in uids):
            time.sleep(0.3)
        for uid in uids:
            deliveries = {d["destination"].split(":")[0]: d["status"] for d in server.result(uid)["deliveries"]}
            assert deliveries == {"dicom": "delivered", "stow": "delivered"}, (uid, server.result(uid))
        found = DICOMwebClient(url=pacs.dicomweb).search_for_instances(study_instance_uid=STUDY, search_filters={"Modality": "SR"})
        reports = {f["00080018"]["Value"][0] for f in found}
        assert len(reports) == len(scans)
        stored = [DICOMwebClient(url=pacs.dicomweb).retrieve_instance(STUDY, f["0020000E"]["Value"][0], f["00080018"]["Value"][0])
                  for f in found]
        assert {source_of(sr) for sr in stored} == set(uids)
        assert all(decision_of(sr) == server.result(source_of(sr))["label"] for sr in stored)
    finally:
        server.stop()
        pacs.stop()

"""What the serve tests share: `dcube-edge serve` started for real on loopback (:class:`Server`), a C-STORE sender,
a stand-in PACS, scanner-like DICOM instances and readers of the TID 1500 reports the node sends."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
from commands import EXE
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STUDY = "1.2.826.0.1.3680043.10.1000.1"


def dicom_of(png: Path, out: Path) -> Path:
    """A secondary-capture instance holding a PNG's pixels, with the study attributes a scanner sends."""
    from pydicom import dcmread

    from dcube_edge.runtimes.dicom import write_secondary_capture

    write_secondary_capture(np.asarray(Image.open(png).convert("L"), dtype=np.uint8), out, STUDY)
    ds = dcmread(out)
    ds.Modality, ds.PatientBirthDate, ds.PatientSex = "US", "", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20261126", "120000", "1", "A1", ""
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.save_as(out, enforce_file_format=True)
    return out


class Server:
    """``dcube-edge serve`` on loopback. ``ports``: (DICOM, HTTP), free ones by default; ``log``: a file for its
    stderr (read while it runs) instead of a pipe; ``wrap``: a command line it runs under (e.g. in a namespace)."""

    def __init__(self, engine: Path, spool: Path, *extra: str, scheme: str = "http", context=None,
                 ports: tuple[int, int] | None = None, log: Path | None = None, wrap: tuple[str, ...] = ()):
        self.dicom, self.http = ports or (free_port(), free_port())
        self.scheme, self.context, self.log = scheme, context, log
        self.proc = subprocess.Popen([*wrap, str(EXE), "serve", str(engine), "--spool", str(spool), "--dicom-port",
                                      str(self.dicom), "--http-port", str(self.http), "--max-delay-ms", "20", *extra],
                                     stdout=subprocess.PIPE, stderr=open(log, "w") if log else subprocess.PIPE,  # noqa: SIM115
                                     text=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                self.get("/healthz")
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.errors()) from None
                time.sleep(0.2)
        raise RuntimeError("serve did not come up")

    def errors(self) -> str:
        """What it wrote to stderr so far (all of it once it has exited, where it writes to a pipe)."""
        return self.log.read_text() if self.log else self.proc.stderr.read()

    def get(self, path: str, headers: dict | None = None) -> dict:
        request = urllib.request.Request(f"{self.scheme}://127.0.0.1:{self.http}{path}", headers=headers or {})
        with urllib.request.urlopen(request, timeout=10, context=self.context) as r:
            body = r.read()
        return json.loads(body) if path != "/metrics" else body.decode()

    def result(self, uid: str, timeout: float = 60, headers: dict | None = None) -> dict:
        """An instance's record once it has its result and, for a classified one, its SR (or why it has none)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                r = self.get(f"/v1/results/{uid}", headers=headers)
                if r["status"] != "pending" and (r["status"] != "done" or r.get("result_sr") or r.get("result_sr_error")):
                    return r
            except urllib.error.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"no result for {uid}")

    def stop(self, sig=signal.SIGINT) -> None:
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Orthanc:
    """A real PACS on loopback: Debian's Orthanc with its DICOMweb plugin, in a folder of its own. ``servers``:
    the plugin's DicomWeb.Servers (remote DICOMweb servers Orthanc's own client talks to)."""

    PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")

    def __init__(self, folder: Path, servers: dict | None = None):
        import shutil

        import pytest

        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        if not Path(binary).exists() or not self.PLUGIN.exists():
            pytest.skip("Orthanc with its DICOMweb plugin is not installed (Debian packages orthanc, orthanc-dicomweb)")
        self.http, self.dicom = free_port(), free_port()
        folder.mkdir(parents=True)
        config = {"Name": "dcube-test-pacs", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
                  "HttpPort": self.http, "DicomPort": self.dicom, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
                  "AuthenticationEnabled": False, "DicomCheckCalledAet": True, "Plugins": [str(self.PLUGIN)],
                  "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": servers or {}}}
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = open(folder / "orthanc.log", "w")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.http}/system", timeout=2).read()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("Orthanc did not come up")

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{self.http}/dicom-web"

    def rest(self, path: str, body: object = None, raw: bytes | None = None) -> object:
        """A call to Orthanc's REST API: POST ``body`` as JSON (or ``raw`` bytes), else GET; the JSON answer."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", data=data)
        with urllib.request.urlopen(request, timeout=120) as r:
            return json.loads(r.read() or b"null")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def send(port: int, files: list[Path], ae_title: str = "SCANNER") -> list[int | None]:
    """C-STORE each file over one association; the status per file (None: association refused)."""
    from pydicom import dcmread
    from pynetdicom import AE, StoragePresentationContexts

    ae = AE(ae_title=ae_title)
    ae.requested_contexts = StoragePresentationContexts[:100]
    assoc = ae.associate("127.0.0.1", port, ae_title="DCUBE")
    if not assoc.is_established:
        return [None] * len(files)
    statuses = []
    for f in files:
        status = assoc.send_c_store(dcmread(f))
        statuses.append(int(status.Status) if status else None)
    assoc.release()
    return statuses


class Pacs:
    """A storage SCP standing in for the PACS: keeps every dataset it is sent that it answers with success
    (``status``, which a test may change: a PACS that refuses, then accepts once its fault is fixed)."""

    def __init__(self, port: int, status: int = 0x0000, title: str = "PACS"):
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import ComprehensiveSRStorage

        self.received: list = []
        self.status = status
        ae = AE(ae_title=title)
        ae.add_supported_context(ComprehensiveSRStorage)

        def keep(event):
            if self.status == 0x0000:
                self.received.append(event.dataset)
            return self.status  # 0x0000 keeps it; a PACS that refuses every SR answers a failure status

        self.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, keep)])

    def stop(self) -> None:
        self.server.shutdown()


def groups_of(sr) -> list:
    """The TID 1501 measurement groups of a TID 1500 report."""
    return [i for i in sr.ContentSequence if i.ValueType == "CONTAINER"][0].ContentSequence


def source_of(sr) -> str:
    """The SOP Instance UID of the image an SR reports on."""
    return str(next(c for c in groups_of(sr)[0].ContentSequence if c.ValueType == "IMAGE")
               .ReferencedSOPSequence[0].ReferencedSOPInstanceUID)


def decision_of(sr) -> str:
    """The code value of the SR's Classification."""
    return str(next(c for c in groups_of(sr)[0].ContentSequence if c.ValueType == "CODE").ConceptCodeSequence[0].CodeValue)

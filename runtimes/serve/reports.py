"""The result SRs the spool keeps in ``spool/results/``: one per result, built when the result is recorded,
written atomically (fsync, rename) and hashed into the ledger in the same transaction as the result. Every
destination, every retry and WADO-RS read these bytes (the hash checked), so the PACS copy and the node's own are
the same document; nothing needs the source image after that, and retention may delete it.

Spools of earlier versions hold results without a kept SR: each gets its SR once, on first need (a delivery,
a DICOMweb request, retention), in the layout those versions sent (its series per source instance, Instance
Number 1, the same SOP Instance UID) from the copy an earlier WADO-RS request cached in ``results/``, else from
the source; where retention already deleted the source and nothing was cached, the result stays readable in the
ledger (``GET /v1/results/{uid}``) but no SR can be made, and the delivery is dead-lettered saying so."""
from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..files import atomic_path
from .records import Instance, Report
from .sr import SERIES_NUMBER, Placement, series_uid, sr_uids, structured_report

if TYPE_CHECKING:
    from ..manifest import Manifest
    from .ledger import Ledger

log = logging.getLogger("dcube_edge.serve")


class Unavailable(Exception):
    """No SR can be read or made for this result."""


class Reports:
    def __init__(self, folder: Path, ledger: Ledger, manifest: Manifest, engine_hash: str):
        self.folder, self.ledger, self.manifest, self.engine_hash = folder, ledger, manifest, engine_hash
        self.numbers: dict[str, int] = {}  # next Instance Number per series (the batcher is the one writer)
        self.lock = threading.Lock()  # one build of an older spool's SR at a time

    def build(self, row: Instance, result: dict) -> Report:
        """The SR of a result about to be recorded: in the results series of its study and this engine, the next
        Instance Number there; a correction names the SR it corrects."""
        from pydicom import dcmread

        src = dcmread(row.path, stop_before_pixels=True)
        series = series_uid(str(src.StudyInstanceUID), self.engine_hash)
        number = self.numbers.get(series) or self.ledger.next_number(series)
        self.numbers[series] = number + 1
        before = self.ledger.report(row.report) if row.report else None
        predecessor = dcmread(before.path, stop_before_pixels=True) if before and Path(before.path).is_file() else None
        uid = sr_uids(row.uid, self.engine_hash, row.revision)[1]
        sr = structured_report(src, result, self.manifest, self.engine_hash,
                               Placement(series, SERIES_NUMBER, uid, number), predecessor)
        return self.write(sr, row, number, before.uid if before else None)

    def write(self, sr, row: Instance, number: int, predecessor: str | None) -> Report:
        buffer = io.BytesIO()
        sr.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        path = self.folder / f"{sr.SOPInstanceUID}.dcm"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        return Report(str(sr.SOPInstanceUID), row.uid, str(sr.StudyInstanceUID), str(sr.SeriesInstanceUID), number,
                      row.revision, str(path), hashlib.sha256(data).hexdigest(), time.time(), predecessor)

    def current(self, row: Instance) -> Report:
        """The SR of a classified instance (made once for an older spool's result)."""
        if row.report and (report := self.ledger.report(row.report)):
            return report
        return self.adopt(row)

    def read(self, report: Report) -> bytes:
        """The SR's bytes as recorded; a file that is gone or altered is refused."""
        try:
            data = Path(report.path).read_bytes()
        except OSError as e:
            raise Unavailable(f"the result SR {report.path} cannot be read ({e.strerror or e})") from None
        if hashlib.sha256(data).hexdigest() != report.sha256:
            raise Unavailable(f"the result SR {report.path} is not the one recorded (sha256 differs): it was altered")
        return data

    def dataset(self, report: Report):
        from pydicom import dcmread

        return dcmread(io.BytesIO(self.read(report)))

    def of_study(self, study: str | None) -> list:
        """The current SR dataset of every classified instance (of one study); results without one are skipped."""
        for row in self.ledger.without_report(limit=100_000):
            if not study or row.study == study:
                try:
                    self.adopt(row)
                except Unavailable:
                    continue
        out = []
        for report in self.ledger.reports(study):
            try:
                out.append(self.dataset(report))
            except Unavailable as e:
                log.warning("%s", e, extra={"event": "result-sr-missing", "uid": report.source})
        return out

    def adopt(self, row: Instance) -> Report:
        """An older spool's result: its SR as that version made it, kept and recorded once."""
        from pydicom import dcmread

        from ..decision import Decision

        with self.lock:
            if (fresh := self.ledger.instance(row.uid)) and fresh.report:
                return self.ledger.report(fresh.report)
            series, uid = sr_uids(row.uid, row.engine or self.engine_hash)
            cached = self.folder / f"{uid}.dcm"
            if cached.is_file():
                data = cached.read_bytes()
                sr = dcmread(io.BytesIO(data))
                report = Report(uid, row.uid, str(sr.StudyInstanceUID), series, int(sr.InstanceNumber), 0, str(cached),
                                hashlib.sha256(data).hexdigest(), time.time())
            elif row.purged is None and Path(row.path).is_file():
                src = dcmread(row.path, stop_before_pixels=True)
                result = {"label": row.label, "probs": row.probs,
                          "decision": row.decision or Decision.from_manifest(self.manifest.data).explain(row.probs)}
                sr = structured_report(src, result, self.manifest, self.engine_hash,
                                       Placement(series, SERIES_NUMBER, uid, 1))
                report = self.write(sr, row, 1, None)
            else:
                raise Unavailable("its source image was deleted by retention before this version kept result SRs, "
                                  "and no copy was cached: the result is in the ledger (GET /v1/results/UID), no SR "
                                  "can be made")
            self.ledger.adopt(report)
            log.info("result SR of an earlier version's result kept in results/", extra={"event": "sr-kept",
                                                                                         "uid": row.uid})
            return report

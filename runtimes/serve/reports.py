"""The result SRs the spool keeps in ``spool/results/``: one per result, made by the reporter (:mod:`.reporter`)
right after the result is recorded, written atomically (fsync, rename), and recorded with its sha256 in the ledger
together with the queueing of its deliveries. Every destination, every retry and WADO-RS read these bytes (the
hash checked), so the PACS copy and the node's own are the same document; nothing needs the source image after
that, and retention may delete it.

Spools of earlier versions hold results without a kept SR: the reporter makes each one once, oldest first, in the
layout those versions sent (its series per source instance, Instance Number 1, the same SOP Instance UID), from
the copy an earlier WADO-RS request cached in ``results/`` where there is one, else from the source; where
retention already deleted the source and nothing was cached, the result stays readable in the ledger (``GET
/v1/results/{uid}``), no SR can be made, and its deliveries are dead-lettered saying so."""
from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..files import atomic_path
from .disk import is_disk_full
from .monitor.store import ood_of
from .records import Instance, Report
from .sr import SERIES_NUMBER, Placement, series_uid, sr_uids, structured_report

if TYPE_CHECKING:
    from ..manifest import Manifest
    from .ledger import Ledger

log = logging.getLogger("dcube_edge.serve")


class Unavailable(Exception):
    """No SR can be read or made for this result."""


class Reports:
    """The kept SRs: made (:meth:`build`, :meth:`earlier`), written and read back."""

    def __init__(self, folder: Path, ledger: Ledger, manifest: Manifest, engine_hash: str):
        self.folder, self.ledger, self.manifest, self.engine_hash = folder, ledger, manifest, engine_hash
        self.numbers: dict[str, int] = {}  # next Instance Number per series (the reporter is the one writer)

    # -- making one ---------------------------------------------------------------------------------------
    def build(self, row: Instance) -> Report:
        """A result's SR: in the results series of its study and this engine, the next Instance Number there; a
        correction names the SR it corrects."""
        from pydicom import dcmread

        src = self.source(row)
        series = series_uid(str(src.StudyInstanceUID), self.engine_hash)
        number = self.numbers.get(series) or self.ledger.next_number(series)
        self.numbers[series] = number + 1
        before = self.ledger.latest_report(row.uid, self.engine_hash) if row.revision else None
        predecessor = dcmread(before.path, stop_before_pixels=True) if before and Path(before.path).is_file() else None
        uid = sr_uids(row.uid, self.engine_hash, row.revision)[1]
        result = {**row.result, "ood": ood_of(self.ledger, row.uid)}  # the monitor's, where it observed the instance
        sr = structured_report(src, result, self.manifest, self.engine_hash,
                               Placement(series, SERIES_NUMBER, uid, number), predecessor)
        return self.write(sr, row, number, before.uid if before and predecessor is not None else None)

    def source(self, row: Instance):
        from pydicom import dcmread

        try:
            return dcmread(row.path, stop_before_pixels=True)
        except OSError as e:
            if is_disk_full(e):
                raise
            raise Unavailable(f"its source image cannot be read ({e.strerror or e}): no result SR can be made") from None

    def earlier(self, row: Instance) -> Report:
        """An earlier version's result: its SR as that version made it."""
        from pydicom import dcmread

        from ..decision import Decision

        engine = row.engine or self.engine_hash
        series, uid = sr_uids(row.uid, engine)
        cached = self.folder / f"{uid}.dcm"
        if cached.is_file():  # what that version's WADO-RS served
            data = cached.read_bytes()
            sr = dcmread(io.BytesIO(data))
            return Report(uid, row.uid, str(sr.StudyInstanceUID), series, int(sr.InstanceNumber), 0, str(cached),
                          hashlib.sha256(data).hexdigest(), time.time(), engine)
        if row.purged is not None:
            raise Unavailable("its source image was deleted by retention before this version kept result SRs, and no "
                              "copy was cached: the result is in the ledger (GET /v1/results/UID), no SR can be made")
        result = row.result
        if result["decision"] is None:
            result["decision"] = Decision.of_record(self.manifest.record).explain(row.probs)
        sr = structured_report(self.source(row), result, self.manifest, engine,
                               Placement(series, SERIES_NUMBER, uid, 1), listed=False)
        return self.write(sr, row, 1, None, engine)

    def write(self, sr, row: Instance, number: int, predecessor: str | None, engine: str | None = None) -> Report:
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
                      row.revision, str(path), hashlib.sha256(data).hexdigest(), time.time(),
                      engine or self.engine_hash, predecessor)

    # -- reading ------------------------------------------------------------------------------------------
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
        """The SR dataset of every classified instance (of one study) that has one."""
        out = []
        for report in self.ledger.reports(study):
            try:
                out.append(self.dataset(report))
            except Unavailable as e:
                log.warning("%s", e, extra={"event": "result-sr-missing", "uid": report.source})
        return out

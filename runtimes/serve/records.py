"""The ledger's rows as typed records and its closed vocabularies as enums: an instance's state, a delivery's
state, why a delivery was given up, and the DIMSE status categories (from pynetdicom's own status tables,
PS3.4 B.2.3 and PS3.7 C) that decide what a destination's answer means. Torch-free."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from enum import Enum


class State(str, Enum):
    """Where a received instance is."""

    PENDING = "pending"  # acknowledged, waiting for its result
    DONE = "done"  # classified: its result SR is kept (report)
    ERROR = "error"  # could not be classified (e.g. the engine returned NaN)
    NOT_APPLICABLE = "not_applicable"  # a non-image object sent with the study: kept, nothing to classify


class Delivery(str, Enum):
    """Where one result's delivery to one destination is."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class Given(str, Enum):
    """Why a delivery was given up (dead-lettered)."""

    REFUSED = "refused"  # the destination refused it: sending again will not change that
    EXPIRED = "expired"  # the destination did not answer within --retry-for: re-queued when it answers again


class Answer(str, Enum):
    """What a destination's answer to one C-STORE means for the delivery."""

    STORED = "stored"  # success or warning: the SCP keeps it (PS3.4 B.2.3)
    TRANSIENT = "transient"  # out of resources, or no answer: try again later
    REFUSED = "refused"  # any other failure: sending the same document again will not change it


def dimse_answer(status: int) -> Answer:
    """A C-STORE response status's meaning, by pynetdicom's tables of the Storage Service Class statuses:
    its category (Success, Warning, Failure, ...) and, for failures, whether it is "Refused: Out of Resources"
    (0xA7xx), the one failure the SCP expects to go away."""
    from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, STORAGE_SERVICE_CLASS_STATUS, code_to_category

    category = code_to_category(status)
    if category in (STATUS_SUCCESS, STATUS_WARNING):
        return Answer.STORED
    meaning = STORAGE_SERVICE_CLASS_STATUS.get(status, ("", ""))[1]
    return Answer.TRANSIENT if "Out of Resources" in meaning else Answer.REFUSED


def status_meaning(status: int) -> str:
    """A C-STORE status's name as pynetdicom's table gives it (PS3.4 B.2.3, PS3.7 C)."""
    from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS

    return STORAGE_SERVICE_CLASS_STATUS.get(status, ("", "Unknown"))[1] or "Success"


def iso(t: float | None) -> str | None:
    """An epoch time as ISO 8601 in UTC (what the HTTP API and the audit log show)."""
    return None if t is None else dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Report:
    """One result SR as the spool keeps it: built once, written to ``spool/results/``, hashed; the same bytes go to
    every destination, every retry and WADO-RS."""

    uid: str  # its SOP Instance UID
    source: str  # the SOP Instance UID of the image it reports on
    study: str
    series: str
    number: int  # Instance Number in its series
    revision: int  # 0; n after the n-th correction of the source's demographics
    path: str
    sha256: str
    created: float
    engine: str = ""  # the manifest sha256 of the engine whose result it reports
    predecessor: str | None = None  # the SR this one corrects (Predecessor Documents Sequence)

    COLUMNS = "uid, source, study, series, number, revision, path, sha256, created, engine, predecessor"


@dataclass(frozen=True)
class Listing:
    """The attributes of a received instance the console searches and lists by, as the ledger keeps them (a
    correction of the demographics replaces them)."""

    patient_id: str = ""
    patient_name: str = ""
    accession: str = ""
    study_date: str = ""

    @classmethod
    def of(cls, ds) -> Listing:
        return cls(*(str(ds.get(k, "") or "") for k in ("PatientID", "PatientName", "AccessionNumber", "StudyDate")))


@dataclass(frozen=True)
class Instance:
    """A received instance's ledger row."""

    uid: str
    path: str
    source: str
    received: float
    state: State
    study: str | None = None
    content: str | None = None  # sha256 of the decoded pixels (a resend with the same pixels changes nothing)
    header: str | None = None  # sha256 of the demographics the SR copies (a change is a correction)
    label: str | None = None
    probs: dict | None = None
    decision: dict | None = None  # the rule, what it compared and the explanation in words
    error: str | None = None
    engine: str | None = None
    classified: float | None = None
    batch: int | None = None
    revision: int = 0
    report: str | None = None  # the SOP Instance UID of its result SR, once kept
    purged: float | None = None
    layout: int = 1  # 0: classified by a version that kept no SR (its SR is made as that version sent it)
    report_error: str | None = None  # why no SR can be made for it
    patient_id: str | None = None  # what the console searches and lists (:class:`Listing`); None: not recorded
    patient_name: str | None = None
    accession: str | None = None
    study_date: str | None = None  # DICOM DA, YYYYMMDD

    COLUMNS = ("uid, path, source, received, status, study, content, header, label, probs, decision, error, engine, "
               "classified, batch, revision, report, purged, layout, report_error, patient_id, patient_name, accession, "
               "study_date")

    @classmethod
    def of(cls, row: tuple) -> Instance:
        values = list(row)
        values[4] = State(values[4])
        values[9] = json.loads(values[9]) if values[9] else None
        values[10] = json.loads(values[10]) if values[10] else None
        values[15] = values[15] or 0
        values[18] = 1 if values[18] is None else values[18]
        return cls(*values)

    @property
    def result(self) -> dict:
        """What its SR reports: the label, the calibrated probabilities, the decision explained."""
        return {"label": self.label, "probs": self.probs, "decision": self.decision}

    def api(self, deliveries: list[dict]) -> dict:
        """The record as ``GET /v1/results/{uid}`` shows it (times in ISO 8601 UTC)."""
        return {"sop_instance_uid": self.uid, "source": self.source, "received": iso(self.received),
                "status": self.state.value, "label": self.label, "probs": self.probs, "decision": self.decision,
                "error": self.error, "engine_sha256": self.engine, "classified": iso(self.classified),
                "batch_size": self.batch, "study_instance_uid": self.study, "result_sr": self.report,
                "result_sr_error": self.report_error,
                "corrections": self.revision, "pixels_deleted": iso(self.purged), "deliveries": deliveries,
                "forwarded": bool(deliveries) and all(d["status"] == Delivery.DELIVERED for d in deliveries),
                "forward_attempts": sum(d["attempts"] for d in deliveries),
                "forward_error": next((d["error"] for d in deliveries if d["error"]), None)}

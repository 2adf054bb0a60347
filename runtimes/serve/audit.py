"""The node's audit trail: one DICOM audit message (PS3.15 A.5) per event, in an RFC 5424 syslog record, appended
to ``spool/audit.log`` (one record per line) or sent to a syslog collector (``--audit-log udp://HOST:PORT``,
RFC 5426). What each event is, in the standard's terms (PS3.15 A.5.3):

| event | audit message | outcome |
|---|---|---|
| engine loaded / node stopped | Application Activity (110100), Application Start / Stop | 0 |
| association accepted | Begin Transferring DICOM Instances (110102) | 0 |
| association refused (calling AE not allowed, TLS peer refused) | Security Alert (110113), Node Authentication | 4 |
| instance received / refused | DICOM Instances Transferred (110104), create | 0 / 4 |
| result produced | DICOM Instances Accessed (110103), create; the engine's sha256 described | 0 |
| result read over HTTP (results, QIDO-RS, WADO-RS) | DICOM Instances Accessed (110103) or Query (110112), read; the caller | 0 |
| result delivered / dead-lettered | DICOM Instances Transferred (110104), read, to the destination | 0 / 8 |

``runtimes/serve/audit.rng`` is the schema every record is checked against in the tests."""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlparse

SCHEMA = Path(__file__).with_name("audit.rng")
FACILITY_AUTHPRIV, SEVERITY_NOTICE, SEVERITY_WARNING = 10, 5, 4
OUTCOME = {"success": "0", "minor": "4", "serious": "8", "major": "12"}
EVENTS = {  # event name → (EventID code, meaning)
    "application": ("110100", "Application Activity"), "begin": ("110102", "Begin Transferring DICOM Instances"),
    "accessed": ("110103", "DICOM Instances Accessed"), "transferred": ("110104", "DICOM Instances Transferred"),
    "query": ("110112", "Query"), "security": ("110113", "Security Alert")}
TYPES = {"start": ("110120", "Application Start"), "stop": ("110121", "Application Stop"),
         "node-auth": ("110126", "Node Authentication")}
ROLES = {"application": ("110150", "Application"), "destination": ("110152", "Destination Role ID"),
         "source": ("110153", "Source Role ID")}


def code(tag: str, value: tuple[str, str]) -> ET.Element:
    element = ET.Element(tag)
    element.set("csd-code", value[0])
    element.set("codeSystemName", "DCM")
    element.set("originalText", value[1])
    return element


class AuditTrail:
    def __init__(self, target: str, source_id: str):
        """``target``: a file path (appended to), or ``udp://host:port`` of a syslog collector."""
        self.source_id, self.lock = source_id, threading.Lock()
        self.host = socket.gethostname()
        url = urlparse(target)
        self.address = (url.hostname, url.port or 514) if url.scheme == "udp" else None
        self.path = None if self.address else Path(target)

    # -- the events --------------------------------------------------------------------------------------
    def application(self, action: str, description: str) -> None:
        self.emit("application", "E", "success", [self.me("application")], type_=action, description=description)

    def association(self, calling: str, address: str, accepted: bool, why: str = "") -> None:
        peer = participant(calling, address, "source", requestor=True)
        if accepted:
            self.emit("begin", "E", "success", [peer, self.me("destination")])
        else:
            self.emit("security", "E", "minor", [peer, self.me("destination")], type_="node-auth",
                      description=why or "association refused")

    def received(self, source: str, study: str, sop_class: str, uid: str, patient: str, refused: str | None = None) -> None:
        calling, _, address = source.partition("@")
        self.emit("transferred", "C", "minor" if refused else "success",
                  [participant(calling, address or calling, "source", requestor=True), self.me("destination")],
                  objects=[patient_object(patient), study_object(study, sop_class, uid)], description=refused)

    def produced(self, study: str, uid: str, engine_sha256: str, label: str) -> None:
        self.emit("accessed", "C", "success", [self.me("application")],
                  objects=[study_object(study, "1.2.840.10008.5.1.4.1.1.88.33", uid)],
                  description=f"result {label!r} by engine sha256 {engine_sha256}")

    def read(self, caller: str, what: str, study: str = "", uid: str = "", query: bool = False) -> None:
        objects = [study_object(study, "", uid)] if study or uid else []
        self.emit("query" if query else "accessed", "E" if query else "R", "success",
                  [participant(caller, caller, "destination", requestor=True), self.me("source")], objects=objects,
                  description=what)

    def delivered(self, destination: str, study: str, uid: str, error: str | None = None) -> None:
        self.emit("transferred", "R", "serious" if error else "success",
                  [self.me("source"), participant(destination, destination, "destination")],
                  objects=[study_object(study, "1.2.840.10008.5.1.4.1.1.88.33", uid)], description=error)

    # -- writing -----------------------------------------------------------------------------------------
    def me(self, role: str) -> ET.Element:
        return participant(self.source_id, self.host, role, requestor=role == "application")

    def emit(self, event: str, action: str, outcome: str, participants: list[ET.Element],
             objects: list[ET.Element] = (), type_: str | None = None, description: str | None = None) -> None:
        message = ET.Element("AuditMessage")
        ident = ET.SubElement(message, "EventIdentification")
        now = dt.datetime.now(dt.timezone.utc)
        ident.set("EventActionCode", action)
        ident.set("EventDateTime", now.isoformat(timespec="milliseconds"))
        ident.set("EventOutcomeIndicator", OUTCOME[outcome])
        ident.append(code("EventID", EVENTS[event]))
        if type_:
            ident.append(code("EventTypeCode", TYPES[type_]))
        if description:
            ET.SubElement(ident, "EventOutcomeDescription").text = description[:500]
        message.extend(participants)
        source = ET.SubElement(message, "AuditSourceIdentification")
        source.set("AuditSourceID", self.source_id)
        source_type = ET.SubElement(source, "AuditSourceTypeCode")
        source_type.set("csd-code", "4")  # application server process tier in a multi-tier system (RFC 3881)
        source_type.set("codeSystemName", "DCM")
        source_type.set("originalText", "Application Server")
        message.extend(objects)
        self.write(ET.tostring(message, encoding="unicode"), SEVERITY_NOTICE if outcome == "success" else SEVERITY_WARNING,
                   now)

    def write(self, xml: str, severity: int, now: dt.datetime) -> None:
        """One RFC 5424 record: ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG`` (MSGID as IHE ATNA names it)."""
        record = (f"<{FACILITY_AUTHPRIV * 8 + severity}>1 {now.isoformat(timespec='milliseconds').replace('+00:00', 'Z')} "
                  f"{self.host} dcube-edge {os.getpid()} DICOM+RFC3881 - {xml}")
        with self.lock:
            if self.address:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(record.encode(), self.address)
                return
            try:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(record + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:  # a full disk: the event it records must not fail with it
                logging.getLogger("dcube_edge.serve").error("an audit record could not be written to %s (%s)",
                                                            self.path, e.strerror or e, extra={"event": "audit-failed"})


def participant(user: str, address: str, role: str, requestor: bool = False) -> ET.Element:
    element = ET.Element("ActiveParticipant")
    element.set("UserID", user or "unknown")
    element.set("UserIsRequestor", "true" if requestor else "false")
    element.set("NetworkAccessPointID", address or "unknown")
    element.set("NetworkAccessPointTypeCode", "2" if address and address[0].isdigit() else "1")  # IP address / name
    element.append(code("RoleIDCode", ROLES[role]))
    return element


def study_object(study: str, sop_class: str, uid: str) -> ET.Element:
    element = ET.Element("ParticipantObjectIdentification")
    element.set("ParticipantObjectID", study or "unknown")
    element.set("ParticipantObjectTypeCode", "2")  # system object
    element.set("ParticipantObjectTypeCodeRole", "3")  # report
    element.append(code("ParticipantObjectIDTypeCode", ("110180", "Study Instance UID")))
    if uid:
        sop = ET.SubElement(element, "SOPClass")
        sop.set("UID", sop_class or "unknown")
        sop.set("NumberOfInstances", "1")
        ET.SubElement(sop, "Instance").set("UID", uid)
    return element


def patient_object(patient: str) -> ET.Element:
    element = ET.Element("ParticipantObjectIdentification")
    element.set("ParticipantObjectID", patient or "unknown")
    element.set("ParticipantObjectTypeCode", "1")  # person
    element.set("ParticipantObjectTypeCodeRole", "1")  # patient
    id_type = ET.SubElement(element, "ParticipantObjectIDTypeCode")
    id_type.set("csd-code", "2")  # patient number (RFC 3881)
    id_type.set("codeSystemName", "RFC-3881")
    id_type.set("originalText", "Patient Number")
    return element

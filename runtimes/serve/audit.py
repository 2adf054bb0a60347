"""The node's audit trail: one DICOM audit message (PS3.15 A.5) per event, in an RFC 5424 syslog record, appended
to ``spool/audit.log`` (one record per line) or sent to a syslog collector (``--audit-log udp://HOST:PORT``,
RFC 5426). What each event is, in the standard's terms (PS3.15 A.5.3); HTTP outcomes follow the status answered
(2xx: 0, 4xx: 4, 5xx: 8); the caller of an HTTP request is named by its address:

| event | audit message | outcome |
|---|---|---|
| engine loaded / node stopped | Application Activity (110100), Application Start / Stop | 0 |
| association accepted | Begin Transferring DICOM Instances (110102) | 0 |
| association refused (calling or called AE title), TLS handshake refused | Security Alert (110113), Node Authentication | 4 |
| HTTP request without the bearer token or with a wrong one | User Authentication (110114), Login | 4 |
| console login (right or wrong token) / logout | User Authentication (110114), Login / Logout | 0 or 4 / 0 |
| console: results searched | Query (110112), execute | 0/4/8 |
| console: an instance, its thumbnail, the dead letters shown | DICOM Instances Accessed (110103), read | 0/4/8 |
| console page view without patient data (overview, engine) | DICOM Instances Accessed (110103), read, no instance | 0/4/8 |
| console retry of dead deliveries: the result SRs re-queued | DICOM Instances Accessed (110103), update | 0 |
| instance received / refused | DICOM Instances Transferred (110104), create | 0 / 4 |
| result produced (recorded before it is committed) | DICOM Instances Accessed (110103), create; engine sha256 | 0 |
| result read over HTTP (`/v1/results`, WADO-RS): SOP class and instances read | DICOM Instances Accessed (110103), read | 0/4/8 |
| QIDO-RS search: Study Root FIND SOP class, the request in ParticipantObjectQuery | Query (110112), execute | 0/4/8 |
| `/v1/classify` of a DICOM instance: its patient, study, SOP class and instance | DICOM Instances Accessed (110103), read | 0/4 |
| result delivered / dead-lettered | DICOM Instances Transferred (110104), read, to the destination | 0 / 8 |
| monitor alert started / ended (docs/monitoring.md) | Application Activity (110100), Alert Started / Ended (99DCUBE) | 4 / 0 |
| engine switched (promote, rollback) / switch refused | Security Alert (110113), Software Configuration (110131) | 0 / 4 |

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
    "query": ("110112", "Query"), "security": ("110113", "Security Alert"),
    "authentication": ("110114", "User Authentication")}
TYPES = {"start": ("110120", "Application Start"), "stop": ("110121", "Application Stop"),
         "login": ("110122", "Login"), "logout": ("110123", "Logout"), "node-auth": ("110126", "Node Authentication"),
         "software": ("110131", "Software Configuration"),
         # PS3.15 A.5.3.1 wants an event type for Application Activity; none of the standard's fits a monitor alert
         "alert-started": ("ALERT-STARTED", "Monitor Alert Started", "99DCUBE"),
         "alert-ended": ("ALERT-ENDED", "Monitor Alert Ended", "99DCUBE")}
SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR: the results
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # what a QIDO-RS search is the web form of (PS3.18 10.6)
ROLES = {"application": ("110150", "Application"), "destination": ("110152", "Destination Role ID"),
         "source": ("110153", "Source Role ID")}


def code(tag: str, value: tuple[str, ...]) -> ET.Element:
    """A coded value: (code, meaning) of DICOM's own scheme (DCM), or (code, meaning, scheme)."""
    element = ET.Element(tag)
    element.set("csd-code", value[0])
    element.set("codeSystemName", value[2] if len(value) > 2 else "DCM")
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
                  objects=[patient_object(patient), study_object(study, [(sop_class, uid)] if uid else [])],
                  description=refused)

    def produced(self, study: str, uid: str, engine_sha256: str, label: str, source: str = "") -> None:
        """A result SR (``uid``) created for the instance ``source``."""
        self.emit("accessed", "C", "success", [self.me("application")],
                  objects=[study_object(study, [(SR_STORAGE, uid)])],
                  description=f"result {label!r} of {source} by engine sha256 {engine_sha256}")

    def read(self, caller: str, what: str, objects: list[tuple[str, str, str]], outcome: str = "success") -> None:
        """Results read over HTTP: ``objects`` as (study, SOP class, SOP instance) of what was returned."""
        studies: dict[str, list[tuple[str, str]]] = {}
        for study, sop_class, uid in objects:
            studies.setdefault(study, []).append((sop_class, uid))
        self.emit("accessed", "R", outcome, [participant(caller, caller, "destination", requestor=True), self.me("source")],
                  objects=[study_object(study, instances) for study, instances in studies.items()], description=what)

    def query(self, caller: str, request: str, outcome: str = "success", description: str | None = None) -> None:
        """A QIDO-RS search (PS3.15 A.5.3.10): the caller issued it (Source), the node answers (Destination); the
        query is the participant object, the request target in ParticipantObjectQuery."""
        self.emit("query", "E", outcome, [participant(caller, caller, "source", requestor=True), self.me("destination")],
                  objects=[query_object(STUDY_ROOT_FIND, request)], description=description)

    def authentication(self, caller: str, why: str, outcome: str = "minor", type_: str = "login") -> None:
        """An HTTP request refused for its bearer token (PS3.15 A.5.3.12 User Authentication: Login, failed); the
        console's logins (success or not) and logouts."""
        self.emit("authentication", "E", outcome, [participant(caller, caller, None, requestor=True),
                                                   self.me("destination")], type_=type_, description=why)

    def updated(self, caller: str, what: str, objects: list[tuple[str, str, str]], outcome: str = "success") -> None:
        """Results whose handling an operator changed (the console's retry of dead deliveries): ``objects`` as
        (study, SOP class, SOP instance) of the result SRs concerned."""
        studies: dict[str, list[tuple[str, str]]] = {}
        for study, sop_class, uid in objects:
            studies.setdefault(study, []).append((sop_class, uid))
        self.emit("accessed", "U", outcome, [participant(caller, caller, "source", requestor=True),
                                             self.me("destination")],
                  objects=[study_object(study, instances) for study, instances in studies.items()], description=what)

    def used(self, caller: str, patient: str, study: str, sop_class: str, uid: str, outcome: str, what: str) -> None:
        """An instance sent to ``/v1/classify``: read to classify it, not stored."""
        self.emit("accessed", "R", outcome, [participant(caller, caller, "source", requestor=True),
                                             self.me("destination")],
                  objects=[patient_object(patient), study_object(study, [(sop_class, uid)])], description=what)

    def delivered(self, destination: str, study: str, uid: str, error: str | None = None) -> None:
        self.emit("transferred", "R", "serious" if error else "success",
                  [self.me("source"), participant(destination, destination, "destination")],
                  objects=[study_object(study, [(SR_STORAGE, uid)])], description=error)

    def monitored(self, description: str, started: bool) -> None:
        """A monitor alert started (outcome 4) or ended (0): the application reporting on its own operation."""
        self.emit("application", "E", "minor" if started else "success", [self.me("application")],
                  type_="alert-started" if started else "alert-ended", description=description)

    def switched(self, description: str, refused: bool) -> None:
        """The active engine switched (promote, rollback), or a switch refused (outcome 4): a change of the
        software's configuration, which PS3.15 A.5.3.11 audits as a Security Alert."""
        self.emit("security", "E", "minor" if refused else "success", [self.me("application")],
                  type_="software", description=description)

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


def participant(user: str, address: str, role: str | None, requestor: bool = False) -> ET.Element:
    element = ET.Element("ActiveParticipant")
    element.set("UserID", user or "unknown")
    element.set("UserIsRequestor", "true" if requestor else "false")
    element.set("NetworkAccessPointID", address or "unknown")
    element.set("NetworkAccessPointTypeCode", "2" if address and (address[0].isdigit() or ":" in address) else "1")
    if role is not None:
        element.append(code("RoleIDCode", ROLES[role]))
    return element


def study_object(study: str, instances: list[tuple[str, str]]) -> ET.Element:
    """A study with its instances, grouped by SOP class (PS3.15 A.5.2.5: one SOPClass element per class)."""
    element = ET.Element("ParticipantObjectIdentification")
    element.set("ParticipantObjectID", study or "unknown")
    element.set("ParticipantObjectTypeCode", "2")  # system object
    element.set("ParticipantObjectTypeCodeRole", "3")  # report
    element.append(code("ParticipantObjectIDTypeCode", ("110180", "Study Instance UID")))
    classes: dict[str, list[str]] = {}
    for sop_class, uid in instances:
        classes.setdefault(sop_class or "unknown", []).append(uid)
    for sop_class, uids in classes.items():
        sop = ET.SubElement(element, "SOPClass")
        sop.set("UID", sop_class)
        sop.set("NumberOfInstances", str(len(uids)))
        for uid in uids:
            ET.SubElement(sop, "Instance").set("UID", uid)
    return element


def query_object(sop_class: str, request: str) -> ET.Element:
    """The query of a Query message (PS3.15 A.5.3.10): the SOP class it is made under and, base64, the query."""
    import base64

    element = ET.Element("ParticipantObjectIdentification")
    element.set("ParticipantObjectID", sop_class)
    element.set("ParticipantObjectTypeCode", "2")  # system object
    element.set("ParticipantObjectTypeCodeRole", "3")  # report
    element.append(code("ParticipantObjectIDTypeCode", ("110181", "SOP Class UID")))
    ET.SubElement(element, "ParticipantObjectQuery").text = base64.b64encode(request.encode()).decode()
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

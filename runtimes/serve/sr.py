"""The result as a DICOM Structured Report: TID 1500 (Measurement Report) built with ``highdicom``, so viewers,
PACS and the IHE AI Results profile read it without knowing dcube-edge.

- Observation context: a device observer (TID 1004) whose UID derives from the engine's hash, with the
  manufacturer and the model (preset, backend, precision).
- One measurement group (TID 1501) with the decision: the qualitative evaluation *Classification* (SCT 278201002)
  coded as the engine's class code — the decision at the engine's operating point — the algorithm (TID 4019: name,
  version, backend, precision, engine sha256, operating point, calibration temperature) and the source image.
- One measurement group per class: its *Finding* (DCM 121071) is the class code, its measurement *Probability*
  (DCM 122157, UCUM unit "1": the calibrated probability); algorithm and source image as above.

Every concept name is a standard code; only a class the export left unmapped falls back to the private scheme
``99DCUBE`` (``export --class-codes`` maps them). The SR's UIDs derive from the source instance and the engine, so a
retried send is the same document. Missing or empty type-2 patient and study attributes of the source are sent
empty, as PS3.3 allows, instead of failing."""
from __future__ import annotations

from typing import TYPE_CHECKING

from dcube_edge import __version__

if TYPE_CHECKING:
    from ..manifest import Manifest

PRIVATE_SCHEME = "99DCUBE"  # as export/codes.py writes it
# What the report holds, for the conformance statement: (content, concept name, value).
CONCEPTS = (
    ("document title", "(126000, DCM, \"Imaging Measurement Report\")", "TID 1500, mapping resource DCMR"),
    ("observer", "(121005, DCM, \"Observer Type\")", "(121007, DCM, \"Device\"); device UID derived from the engine's "
                                                      "hash, name, manufacturer, model"),
    ("procedure", "(121058, DCM, \"Procedure reported\")", "(363679005, SCT, \"Imaging procedure\")"),
    ("algorithm (TID 4019)", "(111001 / 111003 / 111002, DCM, name / version / parameters)",
     "dcube-edge, its version; backend, precision, engine sha256, operating point, temperature"),
    ("decision", "(278201002, SCT, \"Classification\")", "the code (export --class-codes) of the class decided at the "
                                                          "engine's operating point"),
    ("per class", "(121071, DCM, \"Finding\") and (122157, DCM, \"Probability\")", "the class's code; the calibrated "
                                                                                       "probability, UCUM unit \"1\""),
    ("source", "(121112, DCM, \"Source of Measurement\")", "the classified image's SOP Class and Instance UIDs"),
)
# Type-2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1) the SR copies from its source.
TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def class_code(manifest: Manifest, name: str):
    """The coded concept of a class: the export's mapping, else the private scheme."""
    from highdicom.sr import CodedConcept

    code = manifest.record.graph.class_codes.get(name)
    if code:
        return CodedConcept(code.value, code.scheme, code.meaning)
    return CodedConcept(name[:16], PRIVATE_SCHEME, name)


def sr_uids(source_uid: str, engine_hash: str) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of the SR this engine writes about this source instance: derived,
    so a retried send, a WADO-RS retrieve and a QIDO-RS search all name the same document."""
    from pydicom.uid import generate_uid

    seed = [str(source_uid), engine_hash]
    return generate_uid(entropy_srcs=[*seed, "series"]), generate_uid(entropy_srcs=[*seed, "sr"])


def structured_report(source_path: str, label: str, probs: dict[str, float], manifest: Manifest, engine_hash: str):
    """A Comprehensive SR holding a TID 1500 Measurement Report of one classified instance."""
    from highdicom.sr import (
        AlgorithmIdentification,
        ComprehensiveSR,
        DeviceObserverIdentifyingAttributes,
        Measurement,
        MeasurementReport,
        MeasurementsAndQualitativeEvaluations,
        ObservationContext,
        ObserverContext,
        QualitativeEvaluation,
        SourceImageForMeasurementGroup,
        TrackingIdentifier,
    )
    from pydicom import dcmread
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from ..decision import Decision

    decision = Decision.of(manifest.record.decision, manifest.record.calibration, manifest.classes)
    src = dcmread(source_path, stop_before_pixels=True)
    for keyword in TYPE_2:
        if keyword not in src:
            setattr(src, keyword, "")
    seed = [str(src.SOPInstanceUID), engine_hash]
    graph = manifest.record.graph
    device = ObserverContext(codes.DCM.Device, DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[engine_hash, "device"]), name="dcube-edge", manufacturer_name="dcube-edge",
        model_name=f"D-Cube {graph.preset or ''} {manifest.backend} {manifest.precision}".replace("  ", " ")[:64]))
    algorithm = AlgorithmIdentification(
        name=f"dcube-edge {graph.model}", version=__version__,
        parameters=[f"backend={manifest.backend}", f"precision={manifest.precision}", f"engine-sha256={engine_hash}",
                    f"operating-point={decision.describe()}"[:64], f"temperature={decision.temperature:.6g}"])
    source = [SourceImageForMeasurementGroup(src.SOPClassUID, src.SOPInstanceUID)]

    def group(name: str, **content):
        return MeasurementsAndQualitativeEvaluations(
            TrackingIdentifier(uid=generate_uid(entropy_srcs=[*seed, name]), identifier=name[:64]),
            algorithm_id=algorithm, source_images=source, **content)

    decision = QualitativeEvaluation(codes.SCT.Classification, class_code(manifest, label))
    groups = [group("classification", qualitative_evaluations=[decision])]
    groups += [group(f"probability of {c}", finding_type=class_code(manifest, c),
                     measurements=[Measurement(codes.DCM.Probability, float(p), codes.UCUM.NoUnits)])
               for c, p in probs.items()]
    report = MeasurementReport(ObservationContext(observer_device_context=device), codes.SCT.ImagingProcedure,
                               groups, title=codes.DCM.ImagingMeasurementReport)
    series_uid, instance_uid = sr_uids(str(src.SOPInstanceUID), engine_hash)
    return ComprehensiveSR([src], report[0], series_uid, 990, instance_uid, 1, manufacturer="dcube-edge",
                           is_complete=True, series_description="dcube-edge AI result")

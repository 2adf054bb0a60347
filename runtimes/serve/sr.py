"""The result as a DICOM Structured Report: TID 1500 (Measurement Report) built with ``highdicom``, so viewers,
PACS and the IHE AI Results profile read it without knowing dcube-edge. Built once, when the result is recorded
(:mod:`.reports` keeps it); never again from the source.

- Observation context: a device observer (TID 1004) whose UID derives from the engine's hash, with the
  manufacturer and the model (preset, backend, precision).
- One measurement group (TID 1501) with the decision: the qualitative evaluation *Classification* (SCT 278201002)
  coded as the engine's class code — the decision at the engine's operating point — the explanation of that
  decision in full as a TEXT *Comment* (DCM 121106; a TEXT value has no 64-character limit), the threshold where
  the rule is one, the algorithm (TID 4019: name, version, backend, precision, engine sha256, operating point,
  calibration temperature) and the source image.
- One measurement group per class: its *Finding* (DCM 121071) is the class code, its measurement *Probability*
  (DCM 122157, UCUM unit "1": the calibrated probability) and, where the operating point compares other
  probabilities (per-class biases), that one too, its Measurement Method naming it.
- An object read as several views (the frames of a cine loop, the tissue regions of an ultrasound screen): the
  decision above is the instance's, by the engine's instance policy; a second *Comment* says what was read and
  combined, and one group per view references its frame (Referenced Frame Number) and, for a tissue region, its
  box as an Image Region (:mod:`.views`).
- The source image in the Image Library (TID 1600: modality, rows, columns), where highdicom can describe its SOP
  class.

Class codes the export left unmapped and the method above are in the private scheme ``99DCUBE``, declared in the
Coding Scheme Identification Sequence (PS3.3 C.12.1). The SR is in the source's study; its series is one per
study and engine. Patient and study attributes are copied from the source in its Specific Character Set (PS3.3
C.12.1.1.2; UTF-8 where the source's cannot carry the report's own text); missing type-2 ones are sent empty, as
PS3.3 allows. A corrected SR (the source's demographics were corrected) names the SR it corrects in its
Predecessor Documents Sequence (PS3.3 C.17.2.3)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcube_edge import __version__

from .views import MAX_VIEW_GROUPS

if TYPE_CHECKING:
    from ..manifest import Manifest

PRIVATE_SCHEME = "99DCUBE"  # as export/codes.py writes it
SERIES_NUMBER = 990  # the results series: numbered after what modalities number theirs, so viewers list it last
# What the report holds, for the conformance statement: (content, concept name, value).
CONCEPTS = (
    ("document title", "(126000, DCM, \"Imaging Measurement Report\")", "TID 1500, mapping resource DCMR"),
    ("observer", "(121005, DCM, \"Observer Type\")", "(121007, DCM, \"Device\"); device UID derived from the engine's "
                                                      "hash, name, manufacturer, model"),
    ("procedure", "(121058, DCM, \"Procedure reported\")", "(363679005, SCT, \"Imaging procedure\")"),
    ("algorithm (TID 4019)", "(111001 / 111003 / 111002, DCM, name / version / parameters)",
     "dcube-edge, its version; backend, precision, engine sha256, operating point (complete), temperature"),
    ("decision", "(278201002, SCT, \"Classification\")", "the code (export --class-codes) of the class decided at the "
                                                          "engine's operating point"),
    ("why", "(121106, DCM, \"Comment\")", "TEXT: the rule, the probabilities it compared and the calibrated ones"),
    ("threshold (two-class rules)", "(122411, DCM, \"Threshold Value\")", "the operating point's threshold on "
                                                                          "P(positive class), UCUM unit \"1\""),
    ("per class", "(121071, DCM, \"Finding\") and (122157, DCM, \"Probability\")", "the class's code; the calibrated "
                                                                                       "probability, UCUM unit \"1\""),
    ("per class (per-class biases)", "(122157, DCM, \"Probability\") with (370129005, SCT, \"Measurement Method\") "
     f"(OPPOINT, {PRIVATE_SCHEME})", "the prior-corrected probability the operating point compares"),
    ("source", "(121112, DCM, \"Source of Measurement\")", "the classified image's SOP Class and Instance UIDs (of a "
                                                          "multi-frame image: all its frames, no frame number)"),
    ("image library (TID 1600)", "(111028, DCM, \"Image Library\")", "the classified image: modality, pixel data rows "
                                                                     "and columns"),
    ("several views: what was read", "(121106, DCM, \"Comment\")", "TEXT, in the decision's group: how many views of "
                                                                    "how many frames, the instance policy, which "
                                                                    "frames and regions were called which class"),
    (f"several views: per view (up to {MAX_VIEW_GROUPS})", "(121071, DCM, \"Finding\"), (122157, DCM, \"Probability\"), "
     "(278201002, SCT, \"Classification\")", "a group per view, tracking identifier \"frame 12, tissue region 2\": the "
                                              "instance's class, the view's probability of it, the view's own class; "
                                              "the frame as Referenced Frame Number (0008,1160) of its source image, "
                                              "a tissue region as an Image Region (111030, DCM; TID 1410), a closed "
                                              "POLYLINE of its box"),
)
# Type-2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1) the SR copies from its source.
TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")
# What the SR copies from its source: a change of any of these under the same SOP Instance UID is a correction.
DEMOGRAPHICS = (*TYPE_2, "StudyInstanceUID", "IssuerOfPatientID", "PatientAge", "PatientSize", "PatientWeight")


@dataclass(frozen=True)
class Placement:
    """Where an SR goes: its series, its place in it and its own UID."""

    series_uid: str
    series_number: int
    instance_uid: str
    instance_number: int


def class_code(manifest: Manifest, name: str):
    """The coded concept of a class: the export's mapping, else the private scheme."""
    from highdicom.sr import CodedConcept

    code = manifest.record.graph.class_codes.get(name)
    if code:
        return CodedConcept(code.value, code.scheme, code.meaning)
    return CodedConcept(name[:16], PRIVATE_SCHEME, name)


def series_uid(study_uid: str, engine_hash: str) -> str:
    """The results series of one study and engine: derived, so every result of that study joins it."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(study_uid), engine_hash, "results series"])


def sr_uids(source_uid: str, engine_hash: str, revision: int = 0) -> tuple[str, str]:
    """(series, SOP Instance UID) an earlier version derived per source instance: the SOP Instance UID of a
    first result (revision 0) is still this one; the series only for SRs of results those versions classified."""
    from pydicom.uid import generate_uid

    seed = [str(source_uid), engine_hash]
    return (generate_uid(entropy_srcs=[*seed, "series"]),
            generate_uid(entropy_srcs=[*seed, "sr", *([f"revision {revision}"] if revision else [])]))


def demographics(ds) -> str:
    """sha256 of what the SR copies from its source (patient and study), as pydicom decodes it."""
    import hashlib

    return hashlib.sha256("\x1e".join(str(ds.get(k, "")) for k in DEMOGRAPHICS).encode()).hexdigest()


def character_set(src, own: list[str]):
    """The SR's Specific Character Set: the source's (its empty first value being the default repertoire, ISO 2022
    IR 6), unless the report's own text needs more than it or highdicom cannot take it; then UTF-8."""
    from highdicom.enum import SpecificCharacterSetValues
    from pydicom.charset import convert_encodings

    given = src.get("SpecificCharacterSet")
    values = [given] if isinstance(given, str) else list(given or [])
    if not values or (len(values) == 1 and values[0] in ("", "ISO_IR 6")):
        return None if all(t.isascii() for t in own) else "ISO_IR 192"
    values = ["ISO 2022 IR 6" if not v and len(values) > 1 else v for v in values]
    known = {e.value for e in SpecificCharacterSetValues}
    if not set(values) <= known or not all(t.isascii() for t in own):
        return "ISO_IR 192"
    try:
        convert_encodings(values)
    except LookupError:
        return "ISO_IR 192"
    return values if len(values) > 1 else values[0]


def structured_report(src, result: dict, manifest: Manifest, engine_hash: str, place: Placement, predecessor=None,
                      listed: bool = True):
    """A Comprehensive SR holding a TID 1500 Measurement Report of one classified instance: ``src`` is the source
    dataset (pixels not needed), ``result`` its label, calibrated probabilities, the decision's explanation
    (:meth:`..decision.Decision.explain`) and what was read (``views``: :data:`.records.READING`), ``predecessor``
    the SR dataset this one corrects; ``listed``: the source in the Image Library (not in the SR of a version that
    kept none, made again under the UID it sent)."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem
    from highdicom.sr import ComprehensiveSR, MeasurementReport, ObservationContext
    from pydicom.sr.codedict import codes

    for _ in src.iterall():  # every value decoded in the source's character set before any is copied
        pass
    for keyword in TYPE_2:
        if keyword not in src:
            setattr(src, keyword, "")
    groups = measurement_groups(src, result, manifest, engine_hash)
    report = MeasurementReport(ObservationContext(observer_device_context=observer(manifest, engine_hash)),
                               codes.SCT.ImagingProcedure, groups, title=codes.DCM.ImagingMeasurementReport,
                               referenced_images=library(src) if listed else None)
    own = [result["decision"]["explanation"], *(str(class_code(manifest, c).meaning) for c in manifest.classes)]
    private = any(str(c.CodingSchemeDesignator) == PRIVATE_SCHEME for c in codes_in(report[0]))
    schemes = [CodingSchemeIdentificationItem(PRIVATE_SCHEME, name="dcube-edge private codes", version=__version__,
                                              responsible_organization="dcube-edge")] if private else None
    return ComprehensiveSR([src], report[0], place.series_uid, place.series_number, place.instance_uid,
                           place.instance_number, manufacturer="dcube-edge", is_complete=True,
                           series_description="dcube-edge AI results", coding_schemes=schemes,
                           specific_character_set=character_set(src, own),
                           previous_versions=[predecessor] if predecessor is not None else None)


def library(src) -> list | None:
    """The source for the Image Library (TID 1600), or None where highdicom cannot describe its SOP class."""
    from highdicom.sr import ImageLibraryEntryDescriptors

    try:
        ImageLibraryEntryDescriptors(src)
    except (ValueError, KeyError):
        return None
    return [src]


def codes_in(item) -> list:
    """Every coded entry (concept names, coded values, units) of a content tree."""
    found = []
    for keyword in ("ConceptNameCodeSequence", "ConceptCodeSequence", "MeasurementUnitsCodeSequence"):
        found += list(item.get(keyword, []))
    for child in item.get("ContentSequence", []):
        found += codes_in(child)
    for child in item.get("MeasuredValueSequence", []):
        found += codes_in(child)
    return found


def observer(manifest: Manifest, engine_hash: str):
    from highdicom.sr import DeviceObserverIdentifyingAttributes, ObserverContext
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    return ObserverContext(codes.DCM.Device, DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[engine_hash, "device"]), name="dcube-edge", manufacturer_name="dcube-edge",
        model_name=f"D-Cube {manifest.record.graph.preset or ''} {manifest.backend} {manifest.precision}"
        .replace("  ", " ")[:64]))


OOD_TEXT = ("input out-of-distribution score {:.2f}: Mahalanobis distance of the image's intensity statistics from "
            "those of the engine's reference images (docs/monitoring.md)")


def measurement_groups(src, result: dict, manifest: Manifest, engine_hash: str) -> list:
    """TID 1501 groups: the decision with its explanation (and, for an object of several views, what was read and
    combined), then one per class with its probabilities, then one per view where there are several
    (:mod:`.views`)."""
    from highdicom.sr import (
        AlgorithmIdentification,
        CodedConcept,
        Measurement,
        MeasurementsAndQualitativeEvaluations,
        PlanarROIMeasurementsAndQualitativeEvaluations,
        QualitativeEvaluation,
        RelationshipTypeValues,
        SourceImageForMeasurementGroup,
        TextContentItem,
        TrackingIdentifier,
    )
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from ..decision import Decision
    from .views import region, summary, view_groups

    rule = Decision.of_record(manifest.record)
    explained = result["decision"]
    algorithm = AlgorithmIdentification(
        name=f"dcube-edge {manifest.record.graph.model}", version=__version__,
        parameters=[f"backend={manifest.backend}", f"precision={manifest.precision}", f"engine-sha256={engine_hash}",
                    f"operating-point={rule.describe()}", f"temperature={rule.temperature:.6g}"])
    seed = [str(src.SOPInstanceUID), engine_hash]

    def group(name: str, box=None, frame: int | None = None, **content):
        """A TID 1501 group on the image (``frame``: that frame of it), or with ``box`` a TID 1410 one on that
        region of it (:mod:`.views`)."""
        tracking = TrackingIdentifier(uid=generate_uid(entropy_srcs=[*seed, name]), identifier=name[:64])
        if box is not None:
            return PlanarROIMeasurementsAndQualitativeEvaluations(tracking, region(src, box, frame),
                                                                  algorithm_id=algorithm, **content)
        source = SourceImageForMeasurementGroup(src.SOPClassUID, src.SOPInstanceUID,
                                                referenced_frame_numbers=[frame] if frame is not None else None)
        return MeasurementsAndQualitativeEvaluations(tracking, algorithm_id=algorithm, source_images=[source],
                                                     **content)

    threshold = ([Measurement(codes.DCM.ThresholdValue, float(explained["threshold"]), codes.UCUM.NoUnits)]
                 if explained.get("threshold") is not None else None)
    decision = group("classification", measurements=threshold, qualitative_evaluations=[
        QualitativeEvaluation(codes.SCT.Classification, class_code(manifest, result["label"]))])
    reading = result.get("views") or {}
    for text in (explained["explanation"], summary(reading, result["label"], str(src.SOPInstanceUID))):
        if text:
            decision[0].ContentSequence.append(TextContentItem(codes.DCM.Comment, text, RelationshipTypeValues.CONTAINS))
    if result.get("ood") is not None:  # the node's monitor (docs/monitoring.md): how unlike the reference the input is
        decision[0].ContentSequence.append(TextContentItem(codes.DCM.Comment, OOD_TEXT.format(result["ood"]),
                                                           RelationshipTypeValues.CONTAINS))
    adjusted = explained["compared"] if rule.bias is not None and explained.get("threshold") is None else {}
    method = CodedConcept("OPPOINT", PRIVATE_SCHEME, "Prior-corrected at the operating point")
    return [decision] + [
        group(f"probability of {c}", finding_type=class_code(manifest, c), measurements=[
            Measurement(codes.DCM.Probability, float(p), codes.UCUM.NoUnits),
            *([Measurement(codes.DCM.Probability, float(adjusted[c]), codes.UCUM.NoUnits, method=method)]
              if c in adjusted else [])])
        for c, p in result["probs"].items()] + view_groups(reading, result["label"], group,
                                                      lambda c: class_code(manifest, c))

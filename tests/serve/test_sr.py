"""The result as DICOM: TID 1500 Structured Reports that dicom3tools' dciodvfy accepts, with standard concept
names, the class codes given at export bound into the engine, and SRs built from sources that lack type-2
attributes."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="the SR needs the `serve` extra (pydicom, highdicom)")
pytest.importorskip("highdicom", reason="the SR needs the `serve` extra (highdicom)")

from commands import EXE  # noqa: E402
from dicom_forms import concept_names, dciodvfy  # noqa: E402
from serving import groups_of  # noqa: E402

from dcube_edge import runtimes  # noqa: E402

CODES = "benign=SCT:30807003,malignant=SCT:21594007,normal=SCT:17621005"


@pytest.fixture(scope="module")
def coded_engine(tiny_run, tmp_path_factory) -> Path:
    """The tiny run exported with every class mapped to SNOMED CT."""
    out = tmp_path_factory.mktemp("coded") / "engine"
    res = subprocess.run([str(EXE), "export", str(tiny_run), "--out", str(out), "--class-codes", CODES, "--max-batch", "8"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return out


def source(tmp_path: Path, complete: bool = True) -> Path:
    from dcube_edge.runtimes.dicom import write_secondary_capture

    path = write_secondary_capture(np.full((32, 32), 90, np.uint8), tmp_path / "src.dcm", modality="US")
    if not complete:  # what the demo's DICOM used to be: no type-2 patient or study attributes at all
        ds = pydicom.dcmread(path)
        for keyword in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                        "AccessionNumber", "PatientName"):
            delattr(ds, keyword)
        ds.save_as(path, enforce_file_format=True)
    return path


def report(engine: Path, src: Path, out: Path, manifest=None, shares=(0.2, 0.7, 0.1)):
    from dcube_edge.runtimes.decision import Decision
    from dcube_edge.runtimes.serve.sr import Placement, structured_report

    manifest = manifest or runtimes.read(engine)
    probs = dict(zip(manifest.classes, shares))
    decision = Decision.of_record(manifest.record)
    label = manifest.classes[int(decision.decide(np.array([list(probs.values())]))[0])]
    place = Placement("1.2.3.4", 990, "1.2.3.5", 1)
    sr = structured_report(pydicom.dcmread(src), {"label": label, "probs": probs, "decision": decision.explain(probs)},
                           manifest, "ab" * 32, place)
    sr.save_as(out, enforce_file_format=True)
    return pydicom.dcmread(out)


def test_the_sr_is_a_valid_tid_1500_report_with_standard_codes(coded_engine, tmp_path):
    sr = report(coded_engine, source(tmp_path), tmp_path / "sr.dcm")
    errors, warnings = dciodvfy(tmp_path / "sr.dcm")
    assert errors == [] and warnings == [], errors + warnings
    template = sr.ContentTemplateSequence[0]
    assert (template.MappingResource, template.TemplateIdentifier) == ("DCMR", "1500")
    names = concept_names(sr.ContentSequence)
    assert not [n for n in names if n[0].startswith("99")]  # no private concept name anywhere
    assert ("DCM", "121012") in names and ("DCM", "111001") in names  # device observer UID, algorithm name
    groups = groups_of(sr)
    decision = [c for c in groups[0].ContentSequence if c.ValueType == "CODE"][0]
    assert decision.ConceptCodeSequence[0].CodeValue == "21594007"  # malignant, SNOMED CT
    probabilities = {}
    for group in groups[1:]:  # one per class: its Finding (the class code) and its Probability
        items = {c.ValueType: c for c in group.ContentSequence if c.ValueType in ("CODE", "NUM")}
        probabilities[str(items["CODE"].ConceptCodeSequence[0].CodeValue)] = float(items["NUM"].MeasuredValueSequence[0].NumericValue)
    assert probabilities == {"30807003": 0.2, "21594007": 0.7, "17621005": 0.1}
    images = [c for g in groups for c in g.ContentSequence if c.ValueType == "IMAGE"]
    src = pydicom.dcmread(tmp_path / "src.dcm")
    assert {str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for i in images} == {str(src.SOPInstanceUID)}
    assert sr.StudyInstanceUID == src.StudyInstanceUID and sr.PatientID == src.PatientID


def test_a_source_without_type_2_attributes_still_gets_its_sr(coded_engine, tmp_path):
    sr = report(coded_engine, source(tmp_path, complete=False), tmp_path / "sr.dcm")
    errors, _ = dciodvfy(tmp_path / "sr.dcm")
    assert errors == [] and sr.PatientName == "" and sr.StudyDate == ""


def test_unmapped_classes_fall_back_to_the_private_scheme_and_say_so(ort_engine, tmp_path):
    report(ort_engine, source(tmp_path), tmp_path / "sr.dcm")
    errors, warnings = dciodvfy(tmp_path / "sr.dcm")
    assert errors == [] and warnings and all("99DCUBE" in w for w in warnings)


def test_the_decision_is_explained_in_full_beside_the_probabilities_it_compared(coded_engine, tmp_path):
    """Issue 38 item 12: a three-class engine with per-class biases called "malignant" at P(malignant) 0.24, the
    lowest of three, and its SR's explanation was cut at 64 characters before the biases. Now the whole rule and
    the reason are one TEXT item, and each class's group holds the probability the rule compared beside the
    calibrated one; the class called is the one whose compared probability is highest."""
    import dataclasses

    from dcube_edge.runtimes.sections import OperatingPoint

    read = runtimes.read(coded_engine)
    point = OperatingPoint(rule="balanced", bias=(0.0, 0.6, 0.0))
    manifest = dataclasses.replace(read, record=dataclasses.replace(read.record, decision=point))
    sr = report(coded_engine, source(tmp_path), tmp_path / "sr.dcm", manifest, shares=(0.38, 0.24, 0.38))
    errors, warnings = dciodvfy(tmp_path / "sr.dcm")
    assert errors == [] and all("99DCUBE" in w for w in warnings), errors + warnings
    assert [i.CodingSchemeDesignator for i in sr.CodingSchemeIdentificationSequence] == ["99DCUBE"]
    groups = groups_of(sr)
    items = {str(c.ConceptNameCodeSequence[0].CodeValue): c for c in groups[0].ContentSequence}
    assert items["278201002"].ConceptCodeSequence[0].CodeValue == "21594007"  # Classification: malignant
    text = items["121106"].TextValue  # Comment: why
    assert len(text) > 64 and "+0.6" in text and "benign +0" in text and "0.240" in text and "0.380" in text
    parameters = [c.TextValue for c in groups[0].ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == "111002"]
    assert any(p.endswith("normal +0)") for p in parameters)  # the operating point complete among the parameters
    compared, calibrated = {}, {}
    for group in groups[1:]:
        code = next(c for c in group.ContentSequence if c.ValueType == "CODE").ConceptCodeSequence[0].CodeValue
        for num in (c for c in group.ContentSequence if c.ValueType == "NUM"):
            value = float(num.MeasuredValueSequence[0].NumericValue)
            (compared if "ContentSequence" in num else calibrated)[str(code)] = value
    assert calibrated == {"30807003": 0.38, "21594007": 0.24, "17621005": 0.38}
    assert max(compared, key=compared.get) == "21594007" and abs(sum(compared.values()) - 1) < 1e-6


def test_class_codes_are_bound_into_the_engine(coded_engine, tmp_path):
    manifest = json.loads((coded_engine / "manifest.json").read_text())
    assert manifest["class_codes"]["malignant"] == {"scheme": "SCT", "value": "21594007", "meaning": "Malignant"}
    edited = tmp_path / "edited"
    shutil.copytree(coded_engine, edited)
    manifest["class_codes"]["malignant"]["value"] = "30807003"  # swapped with benign's
    (edited / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(runtimes.EngineError, match="class_codes"):
        runtimes.read(edited)


@pytest.mark.parametrize("codes, message", [
    ("cancer=SCT:21594007", "does not have"), ("malignant=21594007", "SCHEME:VALUE"),
    ("malignant=SCT:99999999", "give its meaning"), ("malignant", "NAME=SCHEME:VALUE")])
def test_bad_class_codes_are_refused_before_any_work(tiny_run, tmp_path, codes, message):
    res = subprocess.run([str(EXE), "export", str(tiny_run), "--out", str(tmp_path / "e"), "--class-codes", codes],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and message in res.stderr and not (tmp_path / "e").exists()


def test_the_conformance_statement_is_what_the_code_says():
    """docs/conformance.md is generated from the SCP's, intake's, SR's and DICOMweb tables; regenerate it with
    `python -m dcube_edge.runtimes.serve.conformance > docs/conformance.md` when they change."""
    pytest.importorskip("pynetdicom")
    from dcube_edge.runtimes.serve.conformance import statement

    filed = (Path(__file__).resolve().parents[2] / "docs" / "conformance.md").read_text()
    assert filed == statement()
    assert "TID 1500" in filed and "1.2.840.10008.1.2.4.80" in filed  # JPEG-LS accepted with the serve extra


def multiview(coded_engine, tmp_path: Path, frames: int) -> tuple[Path, dict]:
    """A dual-view loop of ``frames`` frames (demo screens) and a result of it: every view called benign but frame 2's
    first region, malignant."""
    from dcube_edge.runtimes.decision import Decision
    from dcube_edge.scanner import layout, screen, write_us

    boxes = layout(32, 2)
    tissue = np.full((32, 32), 90, np.uint8)
    src = write_us(tmp_path / "loop.dcm", [screen([tissue, tissue], t, 0) for t in range(frames)], boxes)
    manifest = runtimes.read(coded_engine)
    benign, malignant = ({"benign": 0.7, "malignant": 0.2, "normal": 0.1}, {"benign": 0.2, "malignant": 0.7, "normal": 0.1})
    views = [{"frame": t, "region": r, "box": list(boxes[r - 1]), "label": "malignant" if (t, r) == (2, 1) else "benign",
              "probs": malignant if (t, r) == (2, 1) else benign, "argmax": "benign"}
             for t in range(1, frames + 1) for r in (1, 2)]
    probs = dict(benign)
    reading = {"number_of_frames": frames, "regions": "ultrasound tissue regions", "instance_policy": "median",
               "frames": views, "notes": [], "warnings": []}
    return src, {"label": "benign", "probs": probs, "views": reading,
                 "decision": Decision.of_record(manifest.record).explain(probs)}


def test_an_object_of_several_views_has_its_frames_and_regions_referenced(coded_engine, tmp_path):
    """A three-frame dual view: the decision references the whole loop (no frame number: PS3.3 C.10.3), says what
    was read and combined; one group per view, on its frame (Referenced Frame Number) and its tissue region (an
    Image Region, a closed polyline around the box), holding the view's class; the source in the Image Library."""
    from dcube_edge.runtimes.serve.sr import Placement, structured_report

    src, result = multiview(coded_engine, tmp_path, 3)
    sr = structured_report(pydicom.dcmread(src), result, runtimes.read(coded_engine), "ab" * 32,
                           Placement("1.2.3.4", 990, "1.2.3.5", 1))
    sr.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    errors, warnings = dciodvfy(tmp_path / "sr.dcm")
    assert errors == [] and warnings == [], errors + warnings
    groups = groups_of(pydicom.dcmread(tmp_path / "sr.dcm"))
    assert len(groups) == 1 + 3 + 6  # the decision, one per class, one per view
    texts = [c.TextValue for c in groups[0].ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == "121106"]
    assert "6 views of 3 frames" in texts[1] and "called benign in frames 1-3 in tissue region 1" not in texts[1]
    assert "called benign in frames 1, 3 in tissue region 1; frames 1-3 in tissue region 2" in texts[1]
    assert "called malignant in frame 2 in tissue region 1" in texts[1]
    decision_image = next(c for c in groups[0].ContentSequence if c.ValueType == "IMAGE")
    assert "ReferencedFrameNumber" not in decision_image.ReferencedSOPSequence[0]
    seen = []
    for group in groups[4:]:
        items = {str(c.ConceptNameCodeSequence[0].CodeValue): c for c in group.ContentSequence}
        region = items["111030"]  # Image Region
        ref = region.ContentSequence[0].ReferencedSOPSequence[0]
        x = np.asarray(region.GraphicData, float).reshape(-1, 2)
        seen.append((int(ref.ReferencedFrameNumber), str(items["278201002"].ConceptCodeSequence[0].CodeValue),
                     (x[:, 0].min(), x[:, 1].min(), x[:, 0].max(), x[:, 1].max())))
        assert items["121071"].ConceptCodeSequence[0].CodeValue == "30807003"  # the instance's finding: benign
    boxes = result["views"]["frames"]
    assert [s[0] for s in seen] == [1, 1, 2, 2, 3, 3]
    assert [s[1] for s in seen] == ["30807003", "30807003", "21594007", "30807003", "30807003", "30807003"]
    assert [s[2] for s in seen] == [(b["box"][0], b["box"][1], b["box"][2] + 1, b["box"][3] + 1) for b in boxes]
    library = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "111028"]
    assert len(library) == 1  # the Image Library holds the source


def test_a_long_loop_is_summarised_and_its_views_left_to_the_ledger(coded_engine, tmp_path):
    from dcube_edge.runtimes.serve.sr import Placement, structured_report
    from dcube_edge.runtimes.serve.views import MAX_VIEW_GROUPS

    src, result = multiview(coded_engine, tmp_path, MAX_VIEW_GROUPS // 2 + 1)
    sr = structured_report(pydicom.dcmread(src), result, runtimes.read(coded_engine), "ab" * 32,
                           Placement("1.2.3.4", 990, "1.2.3.5", 1))
    groups = groups_of(sr)
    assert len(groups) == 1 + 3
    texts = [c.TextValue for c in groups[0].ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == "121106"]
    assert f"{MAX_VIEW_GROUPS + 2} views of {MAX_VIEW_GROUPS // 2 + 1} frames" in texts[1]
    assert "GET /v1/results/" in texts[1] and "frames 1, 3-51 in tissue region 1" in texts[1]

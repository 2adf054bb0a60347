"""The engine record (runtimes/record.py): the manifest as one typed value, written as the flat JSON it always was,
and every format-2 manifest written before read into it (docs/engine-format.md, "Migrations")."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dcube_edge import runtimes
from dcube_edge.runtimes import facts
from dcube_edge.runtimes.files import sha256
from dcube_edge.runtimes.record import EngineError, EngineRecord, facts_of
from dcube_edge.runtimes.sections import CalibrationSet


def test_a_record_reads_back_as_written(ort_engine, engines):
    for engine in [ort_engine, *engines.values()]:
        written = json.loads((engine / "manifest.json").read_text())
        assert EngineRecord.from_dict(written).to_dict() == written, engine.name


def older(manifest: dict) -> dict:
    """A manifest as an export of 2026-11 wrote it: no operating point, calibration, class codes, input modalities,
    model name, training data, intended use or near-tie figures, and the int8 calibration set under `calibration`."""
    old = {k: v for k, v in manifest.items() if k not in (
        "decision", "calibration", "class_codes", "input", "model", "training_data", "intended_use", "calibration_set")}
    old["calibration"] = manifest["calibration_set"]
    old["parity"] = {k: v for k, v in manifest["parity"].items()
                     if k not in ("top1_agreement_beyond_ties", "near_tie_flips", "tie_margin")}
    return old


def test_an_engine_exported_before_the_record_loads_and_classifies(engines, tmp_path):
    """An int8 engine of 2026-11 (its `calibration` the calibration set, which was not a fact then) loads: before
    the record it was refused as an edited manifest."""
    engine = tmp_path / "old"
    shutil.copytree(engines[("onnxruntime", "int8")], engine)
    manifest = older(json.loads((engine / "manifest.json").read_text()))
    # as that export bound them: before operating points, the facts had no decision or calibration
    facts.bind(engine, {k: v for k, v in facts_of(manifest).items() if k not in ("decision", "calibration")})
    manifest["files"]["model.onnx"] = sha256(engine / "model.onnx")
    (engine / "manifest.json").write_text(json.dumps(manifest))
    record = runtimes.read(engine).record
    assert record.decision is None
    assert record.calibration is None
    assert record.graph.model == "dcube"
    assert record.graph.class_codes == {}
    assert record.input.modalities == ()
    assert record.parity.top1_agreement_beyond_ties is None
    assert isinstance(record.precision.calibration_set, CalibrationSet)
    assert record.precision.calibration_set.size == 48
    with runtimes.load(engine) as clf:
        assert clf.decision.describe() == "argmax"
        assert clf.decision.temperature == 1.0
        assert clf.logits(np.zeros((2, 1, 32, 32), np.float32)).shape == (2, 3)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("classes"), "not a readable engine manifest .KeyError: 'classes'"),
    (lambda m: m.update(parity=[1, 2]), "not a readable engine manifest"),
    (lambda m: m.update(format="something-else"), "not a dcube-edge engine manifest")])
def test_a_malformed_manifest_is_refused_in_one_line(ort_engine, tmp_path, edit, message):
    engine = tmp_path / "bad"
    shutil.copytree(ort_engine, engine)
    manifest = json.loads((engine / "manifest.json").read_text())
    edit(manifest)
    (engine / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EngineError, match=message):
        runtimes.read(engine, verify=False)


def test_keys_a_newer_writer_added_are_ignored(ort_engine):
    written = json.loads((ort_engine / "manifest.json").read_text())
    newer = {**written, "parity": {**written["parity"], "a_future_figure": 1.0}, "a_future_section": {"x": 1}}
    assert EngineRecord.from_dict(newer) == EngineRecord.from_dict(written)


def test_only_the_record_module_reads_or_writes_the_manifests_keys():
    """No code outside runtimes/record.py parses manifest.json or subscripts a record's dict form: readers get an
    EngineRecord (Manifest has no raw dict to reach into) and read attributes."""
    import ast

    from test_layout import project_modules

    assert not hasattr(runtimes.Manifest, "data")
    found = []
    for name, path in project_modules().items():
        if name == "dcube_edge.runtimes.record":
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            call = node.value if isinstance(node, ast.Subscript) else node.func.value \
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" else None
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "to_dict" \
                    and "record" in ast.unparse(call.func.value):
                found.append(f"{name}:{node.lineno} reads the record's dict form")
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("json.loads", "json.load") \
                    and "manifest" in ast.unparse(node.args[0]).lower():
                found.append(f"{name}:{node.lineno} parses a manifest itself")
    assert found == []

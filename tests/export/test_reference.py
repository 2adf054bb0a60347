"""The engine's reference (export/reference.py, runtimes.sections.Reference): what the engine saw on its operating
split, recorded at export, bound into the facts, and absent ("no reference") in engines exported before it."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dcube_edge import runtimes
from dcube_edge.data import discover
from dcube_edge.export.reference import distances
from dcube_edge.runtimes import facts
from dcube_edge.runtimes.files import sha256
from dcube_edge.runtimes.observed import FEATURES
from dcube_edge.runtimes.record import EngineError, facts_of


def test_the_reference_is_what_the_engine_said_of_its_operating_split(ort_engine, demo_data):
    record = runtimes.read(ort_engine).record
    ref = record.reference
    val = discover(demo_data).val
    assert ref is not None and ref.instances == ref.n == len(val) == 24
    assert set(ref.scores) == set(record.classes) and all(len(s) == 24 for s in ref.scores.values())
    assert all(list(s) == sorted(s) for s in ref.scores.values())
    assert sum(ref.decision_rates.values()) == pytest.approx(1.0, abs=1e-5)
    assert sum(sum(c) for c in ref.confusion.values()) == 24 * len(record.classes)
    assert set(ref.inputs) == set(FEATURES)
    # the engine's own probabilities for those images, as classify gives them, are the recorded scores
    with runtimes.load(ort_engine) as clf:
        preds = list(clf.classify(val.paths))
    for c in record.classes:
        assert np.allclose(sorted(p.probs[c] for p in preds), ref.scores[c], atol=1e-5)
    called = [p.label for p in preds]
    assert {c: called.count(c) / 24 for c in record.classes} == pytest.approx(ref.decision_rates, abs=1e-6)
    # the OOD score of the reference's own images is a Mahalanobis distance of a few units
    assert 0 < np.median(ref.ood) < 5
    assert distances(np.asarray([ref.ood_mean]), np.asarray(ref.ood_mean), np.asarray(ref.ood_precision))[0] == 0


def test_an_edited_reference_is_refused_at_load(ort_engine, tmp_path):
    engine = tmp_path / "edited"
    shutil.copytree(ort_engine, engine)
    manifest = json.loads((engine / "manifest.json").read_text())
    first = next(iter(manifest["reference"]["decision_rates"]))
    manifest["reference"]["decision_rates"][first] = 0.5
    (engine / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EngineError, match="reference"):
        runtimes.read(engine)


def test_an_engine_exported_before_the_reference_loads_with_none(ort_engine, tmp_path):
    engine = tmp_path / "old"
    shutil.copytree(ort_engine, engine)
    manifest = json.loads((engine / "manifest.json").read_text())
    del manifest["reference"]
    facts.bind(engine, {k: v for k, v in facts_of(manifest).items() if k != "reference"})
    manifest["files"]["model.onnx"] = sha256(engine / "model.onnx")
    (engine / "manifest.json").write_text(json.dumps(manifest))
    assert runtimes.read(engine).record.reference is None
    with runtimes.load(engine) as clf:
        assert clf.classify([]) is not None

"""A ResNet-18 `baseline` run deploys like a D-Cube run (issue 31): the same ONNX → precision → backend → parity
path, manifest, bound facts, operating point and calibration; `classify` and `serve` run the engine."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from commands import EXE  # noqa: E402


@pytest.fixture(scope="module")
def r18(tmp_path_factory) -> tuple[Path, Path]:
    """ResNet-18 on phantoms with 12 validation images a class (enough to choose an operating point). 16 epochs:
    before that its BatchNorm running statistics have seen too few steps and eval-mode logits are near constant."""
    from dcube_edge.baseline import train_baseline
    from dcube_edge.config import Config
    from dcube_edge.phantoms import write_demo

    root = tmp_path_factory.mktemp("r18")
    write_demo(root / "data", per_class=24, size=32, seed=3, val_per_class=12)
    cfg = Config.from_preset("tiny", model="resnet18", epochs_classifier=16)
    train_baseline(root / "data", root / "run", cfg, log=lambda *_: None)
    return root / "data", root / "run"


def export(run: Path, out: Path, *args: str):
    """`dcube-edge export` as a user runs it; the engine's record, read back as a workstation reads it."""
    from dcube_edge import runtimes

    res = subprocess.run([str(EXE), "export", str(run), "--out", str(out), *args], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return runtimes.read(out).record


@pytest.mark.backends
@pytest.mark.parametrize("backend,precision", [("onnxruntime", "fp32"), ("onnxruntime", "int8"),
                                               ("openvino", "fp32"), ("openvino", "int8")])
def test_resnet18_exports_with_parity_an_operating_point_and_bound_facts(r18, tmp_path, backend, precision):
    from dcube_edge import runtimes

    data, run = r18
    m = export(run, tmp_path / "e", "--backend", backend, "--precision", precision, "--intended-use", "test only")
    assert m.graph.model == "resnet18"
    assert m.graph.timesteps == ()
    assert m.graph.trunk_layers is None
    assert m.parity.data == "validation split"
    assert m.parity.within_tolerance, m.parity
    assert m.decision.rule == "balanced"
    assert len(m.decision.bias) == 3  # three classes: prior correction
    # what the temperature minimises; ECE on 36 images is bin noise (the BreastMNIST figures: docs/evaluation.md)
    assert m.calibration.nll_after < m.calibration.nll_before
    assert m.calibration.temperature != 1
    if precision == "int8":  # the policy's parts: convolutions int8, the logits' linear layer float
        parts = m.precision.parts
        assert parts["convolutions"].startswith("int8"), parts
        assert parts["classifier_layer"] in ("fp32", "bf16"), parts
        assert getattr(m.choices, "guide_branch", None) is None  # D-Cube's int8 trial is not a baseline's
    if backend == "openvino" and precision == "int8":
        assert m.choices.quantization.model_type == "default (CNN)"
    # the engine classifies torch-free, at its operating point, as the manifest says it was chosen
    with runtimes.load(tmp_path / "e") as clf:
        by_class = {c: list(clf.classify(sorted((data / "val" / c).iterdir()))) for c in m.classes}
    recalls = {c: np.mean([p.label == c for p in preds]) for c, preds in by_class.items()}
    assert min(recalls.values()) >= 0.75, recalls
    preds = [p for ps in by_class.values() for p in ps]
    assert all(abs(sum(p.probs.values()) - 1) < 1e-5 for p in preds)


def test_resnet18_engine_classifies_and_serves_like_a_dcube_engine(r18, tmp_path):
    from serving import Server, dicom_of, send

    data, run = r18
    export(run, tmp_path / "e", "--backend", "onnxruntime", "--precision", "fp32")
    png = sorted((data / "val" / "malignant").iterdir())[0]
    res = subprocess.run([str(EXE), "classify", str(tmp_path / "e"), str(png), "--json", "-"], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)["predictions"][0]
    server = Server(tmp_path / "e", tmp_path / "spool")
    try:
        scan = dicom_of(png, tmp_path / "scan.dcm")
        assert send(server.dicom, [scan]) == [0]
        from pydicom import dcmread

        result = server.result(dcmread(scan).SOPInstanceUID)
        assert result["status"] == "done"
        assert result["label"] == row["label"]
        assert result["probs"] == pytest.approx(row["probs"], abs=1e-6)
    finally:
        server.stop()


def test_evaluate_reports_both_rules_with_intervals_and_the_card_repeats_its_figures(r18, tmp_path):
    data, run = r18
    engine = tmp_path / "e"
    m = export(run, engine, "--backend", "onnxruntime", "--precision", "fp32", "--intended-use", "phantom triage test")
    res = subprocess.run([str(EXE), "evaluate", str(engine), str(data / "val"), "--bootstrap", "200", "--json",
                          str(tmp_path / "eval.json"), "--plot", str(tmp_path / "plots")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ev = json.loads((tmp_path / "eval.json").read_text())
    op, argmax = ev["operating_point"], ev["argmax"]
    assert op["rule"].startswith("balanced")
    assert op["temperature"] == m.calibration.temperature
    for c in m.classes:
        row = op["per_class"][c]
        assert row["n"] == 12
        assert all(0 <= row[k] <= 1 for k in ("sensitivity", "specificity", "ppv", "npv"))
        for k in ("sensitivity", "specificity", "ppv", "npv"):
            lo, hi = op["ci95"][f"{c}.{k}"]
            assert lo <= row[k] <= hi
    cm = np.array(op["confusion_matrix"])
    assert cm.sum() == 36
    assert op["balanced_accuracy"] == pytest.approx(np.mean(np.diag(cm) / cm.sum(1)))
    assert op["lowest_recall"] == pytest.approx(min(op["per_class"][c]["sensitivity"] for c in m.classes))
    assert set(argmax) >= {"accuracy", "macro_f1", "per_class_recall", "confusion_matrix"}
    assert 0 <= op["ece"] <= 1
    assert 0 <= op["brier"] <= 2
    for png in ("roc.png", "reliability.png"):
        assert (tmp_path / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    res = subprocess.run([str(EXE), "card", str(engine), "--eval", str(tmp_path / "eval.json")], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    card = json.loads((engine / "model-card.json").read_text())
    for key in ("balanced_accuracy", "macro_f1", "lowest_recall", "ece", "brier", "per_class", "ci95"):
        assert card["evaluation"][key] == op[key], key  # the card repeats evaluate's figures, never recomputes them
    assert card["intended_use"] == "phantom triage test"
    assert card["operating_point"]["rule"] == "balanced"
    text = (engine / "model-card.md").read_text()
    assert "phantom triage test" in text
    assert f"{op['balanced_accuracy']:.3f}" in text
    # evaluated on the images the point was chosen on: evaluate warns and the card says so; on others, neither
    assert ev["data_images_sha256"] == m.decision.images_sha256
    assert any("operating point and temperature were chosen on" in w for w in ev["warnings"])
    assert any("very images the operating point" in x for x in card["limitations"])
    # chosen on the run's own validation split, which also kept the checkpoint: the card says that too
    assert any("which also chose the checkpoint" in x for x in card["limitations"])
    res = subprocess.run([str(EXE), "evaluate", str(engine), str(data / "train"), "--bootstrap", "50", "--json",
                          str(tmp_path / "train.json")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    other = json.loads((tmp_path / "train.json").read_text())
    assert other["data_images_sha256"] != m.decision.images_sha256
    assert not other.get("warnings")
    from dcube_edge.card import build

    assert not any("very images" in x for x in build(engine, other)["limitations"])
    from dcube_edge import runtimes

    assert set(runtimes.read(engine).record.files) >= {"model-card.json", "model-card.md"}  # hashed, still loads
    (engine / "model-card.md").write_text(text.replace("phantom", "chest"))
    with pytest.raises(runtimes.EngineError, match="model-card.md"):
        runtimes.read(engine)

"""What `classify` returns for what scanners send (runtimes/classifier.py, predictions.py): one result per frame and
per tissue region, the object's decision by the engine's bound instance policy, the screen outside the tissue
region ignored, and one bad object being that object's error."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcube_edge import runtimes
from dcube_edge.phantoms import loop, phantom
from dcube_edge.runtimes.decision import Decision

pydicom = pytest.importorskip("pydicom", reason="DICOM needs the `dicom` extra (pydicom)")

from commands import EXE  # noqa: E402
from dicom_forms import write_image  # noqa: E402
from test_reader import US_MULTIFRAME, malformed  # noqa: E402

from dcube_edge.scanner import layout, screen, write_us  # noqa: E402


def classify(engine: Path, *inputs: Path, check: bool = True) -> tuple[list[dict], subprocess.CompletedProcess]:
    res = subprocess.run([str(EXE), "classify", str(engine), *map(str, inputs), "--json", "-"], capture_output=True,
                         text=True)
    if check:
        assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["predictions"], res


def test_one_entry_per_frame_and_the_object_decided_by_the_bound_policy(ort_engine, tmp_path):
    frames = loop("malignant", 32, 6, np.random.default_rng(4))
    rgb = np.repeat(frames[..., None], 3, axis=3)
    path = write_image(tmp_path / "loop.dcm", rgb, "RGB", frames=True, sop_class=US_MULTIFRAME)
    firsts = [write_image(tmp_path / f"frame{t}.dcm", rgb[t], "RGB") for t in (0, 3)]
    Image.fromarray(frames[0]).save(tmp_path / "frame0.png")
    [p, f0, f3, png], _ = classify(ort_engine, path, *firsts, tmp_path / "frame0.png")
    assert p["error"] is None and p["number_of_frames"] == 6 and p["instance_policy"] == "median"
    assert [f["frame"] for f in p["frames"]] == [1, 2, 3, 4, 5, 6] and p["regions"] == "whole frame"
    assert p["frames"][0]["probs"] == f0["probs"] == png["probs"] and p["frames"][3]["probs"] == f3["probs"]
    classes = list(p["probs"])
    median = np.median([[f["probs"][c] for c in classes] for f in p["frames"]], axis=0)
    np.testing.assert_allclose([p["probs"][c] for c in classes], median / median.sum(), rtol=0, atol=1e-12)
    decision = Decision.of_record(runtimes.read(ort_engine).record)
    assert p["label"] == classes[int(decision.decide((median / median.sum())[None])[0])]
    assert [f0["frames"][0][k] for k in ("frame", "region", "box")] == [None, None, None]


def test_the_median_policy_per_class_renormalised():
    from dcube_edge.runtimes import instance

    probs = np.array([[0.9, 0.1, 0.0], [0.45, 0.35, 0.2], [0.2, 0.3, 0.5], [0.5, 0.2, 0.3]])
    want = np.median(probs, 0) / np.median(probs, 0).sum()
    assert np.allclose(instance.combine(probs), want) and np.isclose(instance.combine(probs).sum(), 1)
    assert instance.combine(probs[:1]).tolist() == probs[0].tolist()
    assert np.allclose(instance.combine(probs[:2]), probs[:2].mean(0))  # a dual view: the two views' mean


def _screens(tmp_path: Path, tissue: list[np.ndarray], name: str, seed: int, noise: bool = False, regions: bool = True) -> Path:
    """A scanner-like RGB screen holding ``tissue`` in its region(s); ``noise`` paints noise and colour bars
    everywhere outside the tissue regions."""
    rgb = screen(tissue, 0, seed)
    boxes = layout(tissue[0].shape[0], len(tissue))
    if noise:
        rng = np.random.default_rng(seed)
        outside = np.ones(rgb.shape[:2], bool)
        for x0, y0, x1, y1 in boxes:
            outside[y0:y1 + 1, x0:x1 + 1] = False
        rgb[outside] = rng.integers(0, 256, (int(outside.sum()), 3))
        rgb[:, :40][outside[:, :40]] = (255, 0, 0)
    path = write_us(tmp_path / f"{name}.dcm", [rgb], boxes, "rgb")
    if not regions:
        ds = pydicom.dcmread(path)
        del ds.SequenceOfUltrasoundRegions
        ds.save_as(path)
    return path


def test_pixels_outside_the_tissue_region_do_not_change_the_answer(ort_engine, tmp_path):
    tissue = phantom("malignant", 32, np.random.default_rng(9))
    Image.fromarray(tissue).save(tmp_path / "tissue.png")
    clean, noisy = _screens(tmp_path, [tissue], "clean", 1), _screens(tmp_path, [tissue], "noisy", 2, noise=True)
    screen_only = _screens(tmp_path, [tissue], "screen", 1, regions=False)
    [a, b, png, whole], _ = classify(ort_engine, clean, noisy, tmp_path / "tissue.png", screen_only)
    for p in (a, b):
        assert p["regions"] == "ultrasound tissue regions" and p["frames"][0]["region"] == 1
    assert all(abs(a["probs"][c] - b["probs"][c]) <= 1e-6 for c in a["probs"])
    assert a["probs"] == png["probs"] and a["label"] == png["label"]  # the tissue region as a PNG: the same answer
    assert whole["regions"] == "whole frame" and whole["probs"] != a["probs"]  # the screen would have changed it


def test_a_dual_view_gives_one_result_per_view(ort_engine, tmp_path):
    views = [phantom("benign", 32, np.random.default_rng(11)), phantom("normal", 32, np.random.default_rng(12))]
    for i, v in enumerate(views):
        Image.fromarray(v).save(tmp_path / f"view{i}.png")
    [p, v0, v1], _ = classify(ort_engine, _screens(tmp_path, views, "dual", 3), tmp_path / "view0.png", tmp_path / "view1.png")
    assert [f["region"] for f in p["frames"]] == [1, 2] and p["frames"][0]["box"] != p["frames"][1]["box"]
    assert p["frames"][0]["probs"] == v0["probs"] and p["frames"][1]["probs"] == v1["probs"]


def test_a_folder_with_one_malformed_object_classifies_the_rest(ort_engine, demo_data, tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    for png in sorted((demo_data / "val" / "benign").iterdir())[:2]:
        shutil.copy(png, folder / png.name)
    rgb = np.repeat(phantom("normal", 32, np.random.default_rng(1))[..., None], 3, 2)
    write_image(folder / "IM000001", rgb, "RGB")
    bad = write_image(folder / "IM000002", rgb, "RGB", NumberOfFrames=11)
    malformed(bad, b"\x28\x00\x08\x00", b"IS", b"11", b"1A")
    cut = write_image(folder / "IM000003", np.stack([rgb] * 3), "RGB", frames=True, sop_class=US_MULTIFRAME)
    cut.write_bytes(cut.read_bytes()[:-5000])
    res = subprocess.run([str(EXE), "classify", str(ort_engine), str(folder)], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 1, res.stdout + res.stderr
    for noise in ("Traceback", "UserWarning", "warn_and_log"):
        assert noise not in res.stdout + res.stderr
    assert "2 of 5 file(s) could not be classified" in res.stderr
    preds, res = classify(ort_engine, folder, check=False)
    assert res.returncode == 1 and "UserWarning" not in res.stderr
    by_name = {Path(p["path"]).name: p for p in preds}
    assert {n for n, p in by_name.items() if p["error"] is None} == {p.name for p in folder.glob("*.png")} | {"IM000001"}
    assert "NumberOfFrames is '1A'" in by_name["IM000002"]["error"] and "\n" not in by_name["IM000002"]["error"]
    assert "DICOM" in by_name["IM000003"]["error"] and "\n" not in by_name["IM000003"]["error"]


def test_evaluate_on_cine_loops_reports_per_object_and_per_frame(ort_engine, tmp_path):
    from dcube_edge.phantoms import write_demo

    write_demo(tmp_path / "loops", per_class=2, size=32, seed=5, dicom=True, screen="jpeg", frames=4)
    res = subprocess.run([str(EXE), "evaluate", str(ort_engine), str(tmp_path / "loops"), "--json", "-", "--bootstrap",
                          "0"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["n"] == 6 and report["per_frame"]["n"] == 24 and report["per_frame"]["objects"] == 6
    assert report["instance_policy"] == "median" and "operating_point" in report["per_frame"]


def test_the_reading_rules_are_bound_into_the_engine_and_older_engines_read_as_before(ort_engine, tmp_path):
    from dcube_edge.runtimes import facts
    from dcube_edge.runtimes.files import sha256
    from dcube_edge.runtimes.manifest import EngineError

    manifest = json.loads((ort_engine / "manifest.json").read_text())
    assert {k: manifest["preprocess"][k] for k in ("colour", "regions", "instance")} == {
        "colour": "bt601", "regions": "us-tissue", "instance": "median"}
    edited = tmp_path / "edited"
    shutil.copytree(ort_engine, edited)
    manifest["preprocess"]["regions"] = "whole-frame"
    (edited / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EngineError, match="preprocess"):
        runtimes.load(edited)
    older = tmp_path / "older"  # as exported before the rules were recorded: no colour, regions or instance
    shutil.copytree(ort_engine, older)
    for key in ("colour", "regions", "instance"):
        del manifest["preprocess"][key]
    facts.bind(older, manifest)
    manifest["files"] = {name: sha256(older / name) for name in manifest["files"]}
    (older / "manifest.json").write_text(json.dumps(manifest))
    path = _screens(tmp_path, [phantom("malignant", 32, np.random.default_rng(9))], "s", 1)
    [new], _ = classify(ort_engine, path)
    [old], _ = classify(older, path)
    assert new["regions"] == "ultrasound tissue regions" and old["regions"] == "whole frame"


def test_batches_span_files_and_workers_decode_ahead_without_changing_results(ort_engine, tmp_path):
    """Views of several files share engine batches (a batch of 4 cuts a 6-frame loop); threads decoding files ahead
    keep the input order; the Python API gives what --json gives."""
    paths = []
    for i, kind in enumerate(("benign", "malignant", "normal")):
        rgb = np.repeat(loop(kind, 32, 6, np.random.default_rng(i))[..., None], 3, axis=3)
        paths.append(write_image(tmp_path / f"loop{i}.dcm", rgb, "RGB", frames=True, sop_class=US_MULTIFRAME))
        Image.fromarray(phantom(kind, 32, np.random.default_rng(i))).save(tmp_path / f"still{i}.png")
        paths.append(tmp_path / f"still{i}.png")
    with runtimes.load(ort_engine) as clf:
        one = [p.to_dict() for p in clf.classify(paths)]
        split = [p.to_dict() for p in clf.classify(paths, batch_size=4, workers=2)]
    assert [p["path"] for p in split] == list(map(str, paths)) and [len(p["frames"]) for p in split] == [6, 1] * 3
    for a, b in zip(one, split):
        assert a["label"] == b["label"] and all(abs(a["probs"][c] - b["probs"][c]) < 1e-6 for c in a["probs"])
    cli, _ = classify(ort_engine, *paths)
    assert [p["probs"] for p in cli] == [p["probs"] for p in one]

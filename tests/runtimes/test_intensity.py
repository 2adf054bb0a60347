"""The intensity contract: the same pixels as PNG and as DICOM, in the forms a modality writes, give identical
model inputs (to the bit) and identical results through `classify` and `evaluate` (serve: tests/serve/test_serve.py)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcube_edge.runtimes.images import is_dicom
from dcube_edge.runtimes.inputs import scan
from dcube_edge.runtimes.preprocess import PreprocessSpec, load, read_image

pydicom = pytest.importorskip("pydicom", reason="DICOM needs the `dicom` extra (pydicom)")

from commands import EXE  # noqa: E402
from dicom_forms import dicom_forms, write_dicom  # noqa: E402


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list[Path]:
    """8-bit pictures that use part of the range (a per-image stretch would change them) and all of it."""
    root = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    arrays = [rng.integers(40, 120, (40, 36)), rng.integers(0, 256, (40, 36)), np.tile(np.arange(0, 256, 8), (8, 1))]
    paths = []
    for i, a in enumerate(arrays):
        paths.append(root / f"p{i}.png")
        Image.fromarray(a.astype(np.uint8)).save(paths[-1])
    return paths


def test_every_dicom_form_reads_as_its_png_to_the_bit(pictures, tmp_path):
    spec = PreprocessSpec(32)
    for name, files in dicom_forms(pictures, tmp_path).items():
        for png, dcm in zip(pictures, files):
            assert np.array_equal(read_image(dcm), read_image(png)), (name, png.name)
            assert np.array_equal(load(dcm, spec), load(png, spec)), (name, png.name)


def test_16bit_png_and_16bit_dicom_agree_and_keep_the_stored_range(tmp_path):
    values = np.array([[0, 1000, 32768, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "a.png")
    dcm = write_dicom(tmp_path / "a.dcm", values, bits=16)
    assert np.array_equal(read_image(tmp_path / "a.png"), read_image(dcm))
    assert read_image(dcm).tolist() == [[0.0, np.float32(1000 / 65535), np.float32(32768 / 65535), 1.0]]
    twelve = write_dicom(tmp_path / "b.dcm", np.array([[0, 2048, 4095]]), bits=12)
    assert read_image(twelve).tolist() == [[0.0, np.float32(2048 / 4095), 1.0]]


def test_windows_follow_ps3_3(tmp_path):
    """A CT-like window (values below black, above white, linear between) and its LINEAR_EXACT and SIGMOID forms."""
    stored = np.array([[0, 900, 1000, 1024, 1100, 1200, 4095]])
    ct = dict(bits=12, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400)
    got = read_image(write_dicom(tmp_path / "ct.dcm", stored, **ct))[0]
    hu = stored[0] - 1024
    want = np.clip((hu - (40 - 0.5 - 399 / 2)) / 399, 0, 1)
    np.testing.assert_allclose(got, want, atol=1e-7)
    assert got[0] == 0 and got[-1] == 1
    exact = read_image(write_dicom(tmp_path / "e.dcm", stored, **ct, VOILUTFunction="LINEAR_EXACT"))[0]
    np.testing.assert_allclose(exact, np.clip((hu - (40 - 200)) / 400, 0, 1), atol=1e-7)
    sigmoid = read_image(write_dicom(tmp_path / "s.dcm", stored, **ct, VOILUTFunction="SIGMOID"))[0]
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-4 * (hu - 40) / 400)), atol=1e-6)


def test_float_and_wide_integer_images_are_refused_not_stretched(tmp_path):
    from dcube_edge.runtimes.images import ImageError

    Image.fromarray(np.array([[0.0, 2.0]], np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ImageError, match=r"outside \[0, 1\]"):
        read_image(tmp_path / "f.tif")
    Image.fromarray(np.array([[0.25, 0.5]], np.float32)).save(tmp_path / "g.tif")
    assert read_image(tmp_path / "g.tif").tolist() == [[0.25, 0.5]]


def test_dicom_is_recognised_by_content(pictures, tmp_path):
    """Scanners write IM000001: no suffix, the DICM prefix says what it is; a stray file is still skipped."""
    folder = tmp_path / "study"
    folder.mkdir()
    write_dicom(folder / "IM000001", np.asarray(Image.open(pictures[0])))
    (folder / "README").write_text("not an image")
    images, skipped, _ = scan(folder)
    assert [p.name for p in images] == ["IM000001"] and is_dicom(images[0])
    assert [p.name for p, _ in skipped] == ["README"]
    assert np.array_equal(read_image(folder / "IM000001"), read_image(pictures[0]))


def test_classify_and_evaluate_give_the_png_results_for_every_dicom_form(ort_engine, demo_data, tmp_path):
    """Through the CLI, as a user runs it: the phantoms' validation split as PNG and in every DICOM form."""
    classes = sorted(p.name for p in (demo_data / "val").iterdir())
    pngs = {c: sorted((demo_data / "val" / c).iterdir())[:4] for c in classes}
    forms = {}
    for c in classes:
        for name, files in dicom_forms(pngs[c], tmp_path / "dicom" / c).items():
            forms.setdefault(name, {})[c] = files

    def classify(folders: list[Path]) -> list[dict]:
        out = subprocess.run([str(EXE), "classify", str(ort_engine), *map(str, folders), "--json", "-"],
                             capture_output=True, text=True, check=True).stdout
        return [{k: p[k] for k in ("label", "probs")} for p in json.loads(out)["predictions"]]

    def evaluate(root: Path) -> dict:
        out = subprocess.run([str(EXE), "evaluate", str(ort_engine), str(root), "--json", "-", "--bootstrap", "0"],
                             capture_output=True, text=True, check=True).stdout
        m = json.loads(out)
        return {k: m[k] for k in ("accuracy", "auc", "confusion_matrix")}

    png_root = tmp_path / "png"
    for c in classes:
        (png_root / c).mkdir(parents=True)
        for p in pngs[c]:
            (png_root / c / p.name).write_bytes(p.read_bytes())
    reference = classify([png_root / c for c in classes])
    reference_metrics = evaluate(png_root)
    # every form is compared bit for bit above; through the CLI, the windowed, rescaled and inverted ones
    for i, name in enumerate(["8-bit, full-range window 128/256", "16-bit stored x257, slope 1/257", "8-bit MONOCHROME1"]):
        root = tmp_path / f"eval{i}"
        for c in classes:
            (root / c).mkdir(parents=True)
            for f in forms[name][c]:
                (root / c / f.name).write_bytes(f.read_bytes())
        assert classify([root / c for c in classes]) == reference, name
        assert evaluate(root) == reference_metrics, name

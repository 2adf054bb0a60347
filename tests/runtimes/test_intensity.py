"""The intensity contract: the same pixels as PNG and as DICOM, in the forms a modality writes, give identical
model inputs (to the bit) and identical results through `classify` and `evaluate` (serve: tests/serve/test_serve.py)."""
from __future__ import annotations

import json
import shutil
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


# ---- colour: one rule for a colour PNG and every colour DICOM form (runtimes/colour.py) -----------------------------

def _colour_picture(seed: int, shape=(40, 36)) -> np.ndarray:
    """An 8-bit RGB picture of at most 250 colours (so a palette can hold it), with a grey block as B-mode is."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (200, 3))
    rgb = colours[rng.integers(0, 200, shape)].astype(np.uint8)
    rgb[:8, :8] = 130
    return rgb


def test_every_colour_dicom_form_reads_as_its_colour_png_to_the_bit(tmp_path):
    """RGB (interleaved, planar, 16-bit, RLE, JPEG-LS), YBR_FULL, YBR_FULL_422 (JPEG baseline and uncompressed), YBR_RCT
    and YBR_ICT JPEG 2000, PALETTE COLOR (8-bit, 16-bit, segmented): each gives the array of a colour PNG of the pixels it
    decodes to. For the lossless forms those pixels are the picture itself; for the lossy ones (and YBR_FULL, whose
    8-bit YCbCr cannot hold every RGB value) they are what pydicom decodes, which is all a reader can compare."""
    from dicom_forms import colour_forms

    spec = PreprocessSpec(32)
    for seed in range(2):
        rgb = _colour_picture(seed)
        forms = colour_forms(rgb, tmp_path / f"p{seed}")
        assert len(forms) == 13
        for name, (dcm, pixels) in forms.items():
            png = tmp_path / f"p{seed}" / f"{dcm.stem}.png"
            Image.fromarray(pixels).save(png)
            assert np.array_equal(read_image(dcm), read_image(png)), name
            assert np.array_equal(load(dcm, spec), load(png, spec)), name
            if not name.startswith(("YBR_FULL", "YBR_ICT")):
                assert np.array_equal(pixels, rgb), name  # lossless: the very picture
        jpeg = read_image(forms["YBR_FULL_422 JPEG baseline"][0])
        assert np.abs(jpeg - read_image(forms["RGB interleaved"][0]))[:8, :8].max() < 0.03  # decoded, not garbled


def test_the_colour_rule_is_bt601_luma_exactly_and_grey_stored_as_colour_is_the_grey_picture(tmp_path):
    from dicom_forms import write_image

    rgb = np.random.default_rng(3).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    weighted = 299 * r + 587 * g + 114 * b
    assert np.array_equal(read_image(tmp_path / "c.png"), (weighted / 255000).astype(np.float32))
    # every 8-bit and every 16-bit grey level, stored as R = G = B, reads as the grey picture (scanners store B-mode so)
    grey8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(grey8).save(tmp_path / "g.png")
    Image.fromarray(np.repeat(grey8[..., None], 3, 2)).save(tmp_path / "g-rgb.png")
    dcm = write_image(tmp_path / "g.dcm", np.repeat(grey8[..., None], 3, 2), "RGB")
    assert np.array_equal(read_image(tmp_path / "g-rgb.png"), read_image(tmp_path / "g.png"))
    assert np.array_equal(read_image(dcm), read_image(tmp_path / "g.png"))
    grey16 = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    dcm16 = write_image(tmp_path / "g16.dcm", np.repeat(grey16[..., None], 3, 2), "RGB", bits=16)
    mono16 = write_dicom(tmp_path / "m16.dcm", grey16, bits=16)
    assert np.array_equal(read_image(dcm16), read_image(mono16))


def test_engines_exported_before_the_colour_rule_read_colour_as_they_did(tmp_path):
    """No `colour` in an engine's preprocess: Pillow's 8-bit "L" conversion, as their training read colour PNGs."""
    from dicom_forms import write_image

    from dcube_edge.runtimes.images import ImageError

    legacy = PreprocessSpec.from_dict({"size": 32})
    assert (legacy.colour, legacy.regions) == ("pillow-l", "whole-frame")
    rgb = _colour_picture(5)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    want = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64) / 255
    assert np.array_equal(read_image(tmp_path / "c.png", legacy), want.astype(np.float32))
    assert np.array_equal(read_image(write_image(tmp_path / "c.dcm", rgb, "RGB"), legacy), want.astype(np.float32))
    assert not np.array_equal(read_image(tmp_path / "c.png"), read_image(tmp_path / "c.png", legacy))  # rounding
    with pytest.raises(ImageError, match="re-export the engine"):
        read_image(write_image(tmp_path / "c16.dcm", rgb.astype(np.uint16) * 257, "RGB", bits=16), legacy)


CLI_COLOUR_FORMS = ("RGB interleaved", "RGB planar", "YBR_FULL", "YBR_FULL_422 JPEG baseline", "PALETTE COLOR 8-bit",
                    "PALETTE COLOR 16-bit")


def test_classify_and_evaluate_give_the_colour_png_results_for_every_colour_form(ort_engine, demo_data, tmp_path):
    """Through the CLI: the validation phantoms, tinted, as colour PNGs and in the colour DICOM forms; each form's
    files give the labels and probabilities of PNGs of the pixels they decode to, and `evaluate` the same metrics."""
    from dicom_forms import colour_forms, tinted

    classes = sorted(p.name for p in (demo_data / "val").iterdir())
    roots = {name: tmp_path / f"form{i}" for i, name in enumerate(CLI_COLOUR_FORMS)}
    twins = {name: tmp_path / f"twin{i}" for i, name in enumerate(CLI_COLOUR_FORMS)}
    for c in classes:
        for png in sorted((demo_data / "val" / c).iterdir())[:4]:
            picture = tinted(png)
            forms = colour_forms(picture, tmp_path / "all" / c / png.stem)
            for name in CLI_COLOUR_FORMS:
                dcm, pixels = forms[name]
                (roots[name] / c).mkdir(parents=True, exist_ok=True)
                (twins[name] / c).mkdir(parents=True, exist_ok=True)
                shutil.copy(dcm, roots[name] / c / f"{png.stem}.dcm")
                Image.fromarray(pixels).save(twins[name] / c / f"{png.stem}.png")

    def classify(folders: list[Path]) -> dict[str, dict]:
        out = subprocess.run([str(EXE), "classify", str(ort_engine), *map(str, folders), "--json", "-"],
                             capture_output=True, text=True, check=True).stdout
        return {str(Path(p["path"]).relative_to(tmp_path).with_suffix("")): {k: p[k] for k in ("label", "probs")}
                for p in json.loads(out)["predictions"]}

    def evaluate(root: Path) -> dict:
        out = subprocess.run([str(EXE), "evaluate", str(ort_engine), str(root), "--json", "-", "--bootstrap", "0"],
                             capture_output=True, text=True, check=True).stdout
        return {k: json.loads(out)[k] for k in ("accuracy", "auc", "confusion_matrix")}

    got = classify([roots[n] / c for n in CLI_COLOUR_FORMS for c in classes])
    want = classify([twins[n] / c for n in CLI_COLOUR_FORMS for c in classes])
    assert len(got) == len(want) == len(CLI_COLOUR_FORMS) * len(classes) * 4
    for key, result in got.items():
        assert result == want[key.replace("form", "twin", 1)], key
    for name in ("RGB planar", "YBR_FULL_422 JPEG baseline", "PALETTE COLOR 16-bit"):
        assert evaluate(roots[name]) == evaluate(twins[name]), name

"""Bad input, untrusted files, interrupted work (issue: reliability and security)."""
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from commands import EXE, cli
from PIL import Image
from safetensors.torch import load_file

from dcube_edge import rundir, runtimes
from dcube_edge.errors import UserError
from dcube_edge.runtimes.manifest import EngineError
from dcube_edge.runtimes.preprocess import ImageError, read_image


class Trap:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_checkpoint_is_refused_not_executed(tiny_run, demo_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    marker = tmp_path / "pwned"
    (run / "state").mkdir(exist_ok=True)
    (run / "state" / "diffusion.pt").write_bytes(pickle.dumps({"model": Trap(marker)}))
    res = cli("train", demo_data, "--out", run, "--resume", "--epochs-diffusion", "3", check=2)
    assert "refusing to load it" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists()


def test_pickle_in_place_of_safetensors_is_refused(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    marker = tmp_path / "pwned"
    (run / "classifier.safetensors").write_bytes(pickle.dumps(Trap(marker)))
    with pytest.raises(rundir.RunError, match="not a valid safetensors"):
        rundir.load_model(run)
    assert not marker.exists()


def test_malicious_resnet_weights_are_refused(tmp_path):
    from dcube_edge.resnet import ResNet

    marker = tmp_path / "pwned"
    (tmp_path / "w.pth").write_bytes(pickle.dumps({"conv1.weight": Trap(marker)}))
    with pytest.raises(UserError, match="more than plain tensors"):
        ResNet(8, (1, 1, 1, 1), "small").load_local_weights(tmp_path / "w.pth")
    assert not marker.exists()


def test_manifest_paths_outside_engine_dir_are_refused(ort_engine, tmp_path):
    bad = tmp_path / "e"
    shutil.copytree(ort_engine, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["files"]["../../etc/passwd"] = "0" * 64
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EngineError, match="outside the engine dir"):
        runtimes.load(bad)


def test_failed_export_leaves_nothing_that_looks_complete(tmp_path):
    cli("init", tmp_path / "rand", "--preset", "tiny", check=0)
    res = cli("export", tmp_path / "rand", "--out", tmp_path / "eng", "--precision", "int8", check=2)
    assert "calibration" in res.stderr
    assert not (tmp_path / "eng").exists() and not list(tmp_path.glob(".eng*"))


def _weights(run: Path) -> dict:
    return {**load_file(str(run / "diffusion.safetensors")), **load_file(str(run / "classifier.safetensors"))}


def test_kill_and_resume_matches_uninterrupted(demo_data, tmp_path):
    args = ["--preset", "tiny", "--epochs-diffusion", "4", "--epochs-classifier", "3", "--batch-size", "16", "--seed", "5"]
    cli("train", demo_data, "--out", tmp_path / "whole", *args, check=0)
    run = tmp_path / "killed"
    proc = subprocess.Popen([str(EXE), "train", str(demo_data), "--out", str(run), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (run / "state" / "diffusion.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 2.0))  # somewhere after the first checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "metrics.json").exists(), "training finished before the kill; the test proved nothing"
    assert not list(run.rglob("*.partial"))
    cli("train", demo_data, "--out", run, *args, "--resume", check=0)
    a, b = _weights(tmp_path / "whole"), _weights(run)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=0, atol=1e-6, err_msg=k)
    assert json.loads((run / "selection.json").read_text()) == json.loads((tmp_path / "whole" / "selection.json").read_text())


# ---- a corpus of malformed files through `classify` -------------------------------------------------

def _png(size=(16, 16), mode="L") -> bytes:
    from io import BytesIO

    buf = BytesIO()
    Image.new(mode, size, 128).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    data = bytearray(_png())
    ihdr = bytearray(data[16:29])
    ihdr[0:4], ihdr[4:8] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    data[16:29] = ihdr
    data[29:33] = zlib.crc32(b"IHDR" + bytes(ihdr)).to_bytes(4, "big")
    return bytes(data)


def make_corpus(root: Path) -> dict[str, str]:
    """{file name: expected message fragment}; more than 200 malformed files plus valid odd ones."""
    rng = random.Random(0)
    expect: dict[str, str] = {}

    def put(name: str, data: bytes, message: str | None) -> None:
        (root / name).write_bytes(data)
        expect[name] = message

    from io import BytesIO

    jpg = BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(jpg, format="JPEG")
    jpg = jpg.getvalue()
    big_png = BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)).save(big_png, format="PNG")
    big_png = big_png.getvalue()
    for i in range(10):
        put(f"empty_{i}.png", b"", "file is empty")
    for i in range(40):
        put(f"random_{i}.png", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4000))), "not a readable image")
    for i in range(20):
        put(f"text_{i}.{'png' if i % 2 else 'jpg'}", f"patient notes {i}\n".encode() * 20, "not a readable image")
    for i in range(60):
        cut = rng.randint(len(big_png) // 10, len(big_png) * 8 // 10)
        put(f"truncated_{i}.png", big_png[:cut], "not a readable image")
    for i in range(30):
        cut = rng.randint(len(jpg) // 10, len(jpg) * 7 // 10)
        put(f"truncated_{i}.jpg", jpg[:cut], "not a readable image")
    for i in range(20):
        data = bytearray(big_png)
        for _ in range(8):
            pos = rng.randint(60, len(data) - 20)
            data[pos] ^= 0xFF
        put(f"corrupt_{i}.png", bytes(data), "not a readable image")
    for i, (w, h) in enumerate([(100_000, 100_000), (70_000, 1_000), (20_000, 20_000), (1 << 20, 64), (9_000, 9_000)]):
        put(f"bomb_{i}.png", _bomb_png(w, h), "decompression bomb")
    for i in range(5):
        frames = [Image.new("L", (8, 8), v) for v in (0, 255)]
        buf = BytesIO()
        frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
        put(f"multiframe_{i}.tif", buf.getvalue(), "multi-frame")
    for i in range(10):
        put(f"garbage_{i}.dcm", b"DICM" + bytes(rng.getrandbits(8) for _ in range(300)), "DICOM")
    # valid but unusual: must be classified
    put("one_pixel.png", _png((1, 1)), None)
    put("rgba.png", _png((20, 10), "RGBA"), None)
    put("palette.png", _png((12, 12), "P"), None)
    buf = BytesIO()
    Image.fromarray(np.full((10, 10), 40000, np.uint16)).save(buf, format="PNG")
    put("sixteen_bit.png", buf.getvalue(), None)
    put("wide.bmp", (lambda b: (Image.new("L", (300, 7), 9).save(b, format="BMP"), b.getvalue())[1])(BytesIO()), None)
    return expect


def test_malformed_corpus_through_classify(ort_engine, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    expect = make_corpus(corpus)
    odd = os.fsencode(corpus) + b"/scan_\xff\xfe.png"  # a file name that is not UTF-8
    with open(odd, "wb") as f:
        f.write(_png())
    assert sum(m is not None for m in expect.values()) >= 200
    res = cli("classify", ort_engine, corpus, "--json", tmp_path / "out.json")
    assert res.returncode == 1, res.stderr  # some failed, the rest classified
    assert "Traceback" not in res.stdout + res.stderr
    preds = {Path(p["path"]).name: p for p in json.loads((tmp_path / "out.json").read_text())["predictions"]}
    assert len(preds) == len(expect) + 1
    for name, message in expect.items():
        p = preds[name]
        if message is None:
            assert p["error"] is None and p["label"] in ("benign", "malignant", "normal"), (name, p)
        else:
            assert p["error"] and message in p["error"], (name, p["error"])
    assert [p for n, p in preds.items() if n.startswith("scan_")][0]["error"] is None


def test_read_image_rejects_unreadable_file(tmp_path):
    path = tmp_path / "locked.png"
    path.write_bytes(_png())
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as root: permissions do not stop reads")
    with pytest.raises(ImageError, match="permission denied"):
        read_image(path)


# ---- DICOM ----------------------------------------------------------------------------------------

def _dicom(path: Path, pixels: np.ndarray, photometric="MONOCHROME2", frames=1, **tags) -> Path:
    pytest.importorskip("pydicom", reason="pydicom not installed: pip install 'dcube-edge[dicom]'")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for k, v in tags.items():
        setattr(ds, k, v)
    if pixels.size:
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def test_dicom_monochrome1_is_inverted_and_rescaled(tmp_path):
    ramp = np.tile(np.arange(0, 1000, 10, dtype=np.uint16), (4, 1))
    m2 = read_image(_dicom(tmp_path / "m2.dcm", ramp))
    m1 = read_image(_dicom(tmp_path / "m1.dcm", ramp, "MONOCHROME1"))
    # the stored range (16 bits), never the image's own min-max: a ramp to 990 stays dark
    assert m2[0, 0] == 0.0 and m2[0, -1] == np.float32(990 / 65535)
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    windowed = read_image(_dicom(tmp_path / "w.dcm", ramp, RescaleSlope=1, RescaleIntercept=-500,
                                 WindowCenter=0, WindowWidth=200))
    assert windowed[0, 0] == 0.0 and windowed[0, -1] == 1.0
    assert 0.0 < windowed[0, 50] < 1.0 and (windowed[0, :35] == 0).all()  # below the window: black


def test_dicom_refusals(tmp_path):
    with pytest.raises(ImageError, match="no pixel data"):
        read_image(_dicom(tmp_path / "empty.dcm", np.zeros((4, 4))[:0]))
    loop = _dicom(tmp_path / "mf.dcm", np.zeros((2, 4, 4)), frames=2)
    with pytest.raises(ImageError, match="holds 2 views"):  # one picture asked of a loop: never its first frame silently
        read_image(loop)
    from dcube_edge.runtimes.preprocess import PreprocessSpec, load_views

    assert [v.frame for v, _ in load_views(loop, PreprocessSpec(4))] == [1, 2]


def test_nan_logits_are_reported_not_argmaxed(tmp_path, demo_data):
    """A real ONNX graph whose logits are NaN (0/0), run by ONNX Runtime through the normal runtime path."""
    import onnx
    from onnx import TensorProto, helper

    from dcube_edge.runtimes import facts
    from dcube_edge.runtimes.files import sha256
    from dcube_edge.runtimes.record import FORMAT, FORMAT_VERSION, facts_of

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 1, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
    nodes = [helper.make_node("ReduceMean", ["images", "axes"], ["m"], keepdims=1),
             helper.make_node("Reshape", ["m", "shape"], ["m2"]),
             helper.make_node("Mul", ["m2", "zero"], ["z"]),
             helper.make_node("Div", ["z", "zero"], ["nan"]),
             helper.make_node("Concat", ["nan", "nan"], ["logits"], axis=1)]
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1])
    graph = helper.make_graph(nodes, "nan", [x], [y], initializer=[zero, axes, shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "model.onnx"))
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "backend": "onnxruntime", "precision": "fp32",
                "model_file": "model.onnx", "classes": ["a", "b"], "preprocess": {"size": 32},
                "graph": {"inputs": [{"name": "images", "shape": ["batch", 1, 32, 32]}],
                          "outputs": [{"name": "logits", "shape": ["batch", 2]}], "batch": {"min": 1, "max": 8}},
                "timesteps": [10]}
    facts.bind(tmp_path, facts_of(manifest))
    manifest["files"] = {"model.onnx": sha256(tmp_path / "model.onnx")}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    files = sorted((demo_data / "val" / "benign").iterdir())[:3]
    with runtimes.load(tmp_path) as clf:
        preds = list(clf.classify(files))
        with pytest.raises(runtimes.NonFiniteOutput, match="NaN/Inf"):
            clf.logits(np.zeros((2, 1, 32, 32), np.float32))
    assert [p.label for p in preds] == [None] * 3
    assert all("NaN/Inf" in p.error for p in preds)


@pytest.mark.parametrize("names", ["../up,b", "a/b,c", "a,a", "a,"])
def test_init_refuses_unsafe_or_duplicate_class_names(tmp_path, names):
    res = cli("init", tmp_path / "r", "--preset", "tiny", "--classes", names, check=2)
    assert "class" in res.stderr and not (tmp_path / "r").exists()


def test_nan_loss_stops_training_and_keeps_last_checkpoint(tmp_path):
    import torch

    from dcube_edge.config import Config
    from dcube_edge.step1 import train_diffusion

    cfg = Config.from_preset("tiny", steps_diffusion=4, batch_size=8, classes=("a", "b"))  # 4 steps = 1 epoch
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (16, 1, 32, 32)).astype(np.float32)
    labels = np.array([0, 1] * 8)
    state = tmp_path / "diffusion.pt"
    quiet = lambda *a: None  # noqa: E731
    train_diffusion(cfg, images, labels, state, quiet, resume=False)
    good = torch.load(state, weights_only=True)
    poisoned = images.copy()
    poisoned[:] = np.nan
    with pytest.raises(FloatingPointError, match="last good checkpoint is kept"):
        train_diffusion(cfg.replace(steps_diffusion=8), poisoned, labels, state, quiet, resume=True)
    kept = torch.load(state, weights_only=True)
    assert kept["step"] == good["step"] == 4
    for k, v in good["model"].items():
        assert torch.equal(v, kept["model"][k])


def test_export_and_init_never_replace_what_is_not_theirs(tiny_run, tmp_path):
    before = {p.name: p.read_bytes() for p in tiny_run.iterdir() if p.is_file()}
    res = cli("export", tiny_run, "--out", tiny_run, check=2)
    assert "refusing to replace it" in res.stderr or "run directory itself" in res.stderr
    res = cli("init", tiny_run, "--preset", "tiny", check=2)
    assert "already holds a run" in res.stderr
    assert {p.name: p.read_bytes() for p in tiny_run.iterdir() if p.is_file()} == before
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("clinical notes")
    res = cli("export", tiny_run, "--out", notes, check=2)
    assert "not an engine directory" in res.stderr and (notes / "keep.txt").read_text() == "clinical notes"


@pytest.mark.parametrize("edit", [
    ("classes", lambda m: m["classes"].reverse(), "classes"),
    ("preprocess", lambda m: m["preprocess"].update(size=64), "preprocess"),
    ("backend", lambda m: m.update(backend="openvino"), "backend"),
    ("precision", lambda m: m.update(precision="int8"), "precision"),
    ("timesteps", lambda m: m.update(timesteps=[1]), "timesteps"),
    ("output name", lambda m: m["graph"]["outputs"][0].update(name="probs"), "graph"),
    ("threshold", lambda m: m["decision"].update(rule="youden", positive_class=m["classes"][1], threshold=0.05),
     "decision"),
    ("temperature", lambda m: m["calibration"].update(temperature=1.0), "calibration")])
def test_an_edited_manifest_cannot_relabel_an_engine(ort_engine, tmp_path, edit):
    """Every file hash still matches: only the facts bound into model.onnx can tell the manifest was edited."""
    _, change, field = edit
    copy = tmp_path / "engine"
    shutil.copytree(ort_engine, copy)
    m = json.loads((copy / "manifest.json").read_text())
    change(m)
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(runtimes.EngineError, match=f"manifest.json says {field} = .*re-export"):
        runtimes.read(copy)


def test_an_engine_without_bound_facts_is_refused(ort_engine, tmp_path):
    import onnx

    from dcube_edge.runtimes.files import sha256

    copy = tmp_path / "engine"
    shutil.copytree(ort_engine, copy)
    model = onnx.load(str(copy / "model.onnx"))
    del model.metadata_props[:]
    onnx.save(model, str(copy / "model.onnx"))
    m = json.loads((copy / "manifest.json").read_text())
    m["files"]["model.onnx"] = sha256(copy / "model.onnx")
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(runtimes.EngineError, match="carries no bound engine facts"):
        runtimes.read(copy)


def test_ctrl_c_during_training_says_how_to_resume(demo_data, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([str(EXE), "train", str(demo_data), "--out", str(run), "--preset", "tiny",
                             "--steps-diffusion", "5000", "--batch-size", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run / "state" / "diffusion.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and f"--out {run} --resume" in err and "Traceback" not in err
    assert (run / "state" / "diffusion.pt").is_file() and not (run / "metrics.json").exists()


def test_ctrl_c_is_taken_at_the_next_step_and_a_second_one_at_once():
    """The first SIGINT only sets a flag (so no library cleanup can swallow it); the training loop's progress
    check raises it; a second SIGINT raises where it lands; the previous handler comes back afterwards."""
    import os

    from dcube_edge.cli.common import interrupt_between_steps as _interrupt_between_steps

    before = signal.getsignal(signal.SIGINT)
    with _interrupt_between_steps() as check:
        check()  # nothing pending
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler has run by now, and raised nothing
        with pytest.raises(KeyboardInterrupt):
            check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before

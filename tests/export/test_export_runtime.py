import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch
from commands import WITHOUT_TORCH
from safetensors.torch import load_file

from dcube_edge import rundir, runtimes
from dcube_edge.data import discover
from dcube_edge.export.to_onnx import used_modules
from dcube_edge.runtimes.manifest import EngineError
from dcube_edge.runtimes.preprocess import PreprocessSpec


def test_run_dir_contract(tiny_run):
    for name in ("config.json", "diffusion.safetensors", "classifier.safetensors", "selection.json",
                 "selection.png", "metrics.json"):
        assert (tiny_run / name).is_file(), name
    cfg = rundir.load_config(tiny_run)
    sel = json.loads((tiny_run / "selection.json").read_text())
    assert len(sel["p_values"]) == cfg.num_layers
    assert tuple(sel["selected_layers"]) == cfg.selected_layers
    assert cfg.classes == ("benign", "malignant", "normal")
    assert cfg.val_source == "val/"
    assert "torch" in json.loads((tiny_run / "config.json").read_text())["versions"]
    assert load_file(str(tiny_run / "diffusion.safetensors"))  # plain tensors, no pickle
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["validation"]["n"] == 24
    assert 0 <= metrics["validation"]["auc"] <= 1
    assert oct((tiny_run / "config.json").stat().st_mode & 0o777) != "0o600"
    assert not list(tiny_run.glob("*.partial"))


def test_onnx_graph_is_truncated_after_deepest_layer(ort_engine):
    graph = runtimes.read(ort_engine).record.graph
    cut = graph.truncated_after_layer
    assert cut == max(graph.selected_layers)
    model = onnx.load(str(ort_engine / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    attention = [n for n in model.graph.node if n.op_type == "Softmax"]
    assert len(attention) == cut + 1  # one attention softmax per block that runs
    mods = used_modules(ort_engine / "model.onnx")
    depth = graph.trunk_layers // 2
    blocks = [f"trunk.in_blocks.{i}" for i in range(depth)] + ["trunk.mid_block"] + \
             [f"trunk.out_blocks.{i}" for i in range(depth)]
    for i, block in enumerate(blocks):
        assert (block in mods) == (i <= cut), block
    for unused in ("trunk.decoder_pred", "trunk.final_conv", "trunk.class_embed", "trunk.norm"):
        assert unused not in mods
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param
    assert [d.dim_value for d in dims[1:]] == [1, 32, 32]


@pytest.mark.backends
def test_engine_matches_torch_on_real_files(tiny_run, ort_engine, demo_data):
    from agreement import decisions_agree_beyond_ties

    cfg, model = rundir.load_model(tiny_run)
    split = discover(demo_data).val
    with torch.no_grad():
        ref = model(torch.from_numpy(split.load(PreprocessSpec(cfg.image_size)))).numpy()
    with runtimes.load(ort_engine) as clf:
        preds = list(clf.classify(split.paths, batch_size=5))
        got = clf.logits(split.load(clf.spec))
    assert np.abs(got - ref).max() < 1e-3
    decided = clf.decision.decide(clf.decision.probabilities(got))  # the engine's own logits, at its point
    assert [p.label for p in preds] == [cfg.classes[i] for i in decided]
    agree, why = decisions_agree_beyond_ties(ref, got)  # and agree with PyTorch's up to near-ties
    assert agree, why
    probs = np.array([[p.probs[c] for c in cfg.classes] for p in preds])
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    parity = runtimes.read(ort_engine).record.parity
    assert parity.within_tolerance
    assert parity.top1_agreement_beyond_ties == 1.0
    assert parity.n == 24


@pytest.mark.parametrize("batch", [1, 7, 16])
def test_dynamic_batch(ort_engine, batch):
    with runtimes.load(ort_engine) as clf:
        x = np.random.default_rng(batch).uniform(-1, 1, (batch, 1, 32, 32)).astype(np.float32)
        assert clf.logits(x).shape == (batch, 3)


def test_engine_timings_are_bounded_for_a_long_running_server(ort_engine, monkeypatch):
    from dcube_edge.runtimes import classifier

    monkeypatch.setattr(classifier, "RECENT_CALLS", 3)
    x = np.zeros((2, 1, 32, 32), np.float32)
    with runtimes.load(ort_engine) as clf:
        for _ in range(5):
            clf.logits(x)
    assert clf.engine_time()["2"]["calls"] == 5
    assert len(clf.engine_ms[2]) == 3


def test_manifest_records_contract(ort_engine, tiny_run):
    """The on-disk layout docs/engine-format.md describes (what engines exported before and after the typed record
    share), read as plain JSON."""
    m = json.loads((ort_engine / "manifest.json").read_text())
    cfg = rundir.load_config(tiny_run)
    assert m["format_version"] == 2
    assert m["backend"] == "onnxruntime"
    assert m["precision"] == "fp32"
    assert m["timesteps"] == list(cfg.timesteps)
    assert m["classes"] == list(cfg.classes)
    assert m["graph"]["inputs"][0]["shape"] == ["batch", 1, 32, 32]
    assert m["preprocess"]["size"] == 32
    assert set(m["files"]) == {"model.onnx"}
    assert len(m["run"]["diffusion.safetensors"]) == 64
    assert "onnxruntime" in m["tools"]


def test_tampered_engine_is_refused(ort_engine, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(ort_engine, bad)
    with open(bad / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(EngineError, match="does not match its sha256"):
        runtimes.load(bad)


def test_wrong_format_version_is_refused(ort_engine, tmp_path):
    bad = tmp_path / "old"
    shutil.copytree(ort_engine, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["format_version"] = 99
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EngineError, match="format version 99"):
        runtimes.load(bad)


def test_missing_engine_dir(tmp_path):
    with pytest.raises(EngineError, match="not an engine directory"):
        runtimes.load(tmp_path)


def test_runtime_classifies_without_torch(ort_engine, demo_data):
    """The workstation path: importing torch fails, classification still works."""
    image = next((demo_data / "val" / "malignant").iterdir())
    code = WITHOUT_TORCH + textwrap.dedent(f"""
        from dcube_edge import runtimes
        with runtimes.load({str(ort_engine)!r}) as clf:
            [p] = clf.classify([{str(image)!r}])
        assert "torch" not in sys.modules
        print(p.label, sum(p.probs.values()))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    label, total = res.stdout.split()
    assert label in ("benign", "malignant", "normal")
    assert abs(float(total) - 1) < 1e-5


def test_runtime_sources_never_import_torch():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "runtimes")
    for name in os.listdir(root):
        if name.endswith(".py"):
            text = open(os.path.join(root, name)).read()
            assert "import torch" not in text and "from torch" not in text, name


@pytest.mark.parametrize("command", ["classify", "evaluate", "bench"])
def test_workstation_commands_run_without_torch(ort_engine, demo_data, command):
    """classify / evaluate / bench of an engine, through the CLI, with `import torch` failing."""
    args = {"classify": [str(ort_engine), str(demo_data / "val" / "normal")],
            "evaluate": [str(ort_engine), str(demo_data / "val"), "--bootstrap", "50"],
            "bench": [str(ort_engine), "--batch-sizes", "1", "--iterations", "2", "--warmup", "1"]}[command]
    code = WITHOUT_TORCH + textwrap.dedent(f"""
        sys.argv = ["dcube-edge", {command!r}, *{args!r}]
        from dcube_edge.cli import main
        try:
            main()
        finally:
            assert "torch" not in sys.modules
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]

"""The backend registry, the runner contract, the graph spec both ways, export by wrapping, and the torch
backend that was added through the registry alone."""
from __future__ import annotations

import gc
import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from dcube_edge import rundir, runtimes
from dcube_edge.export.build import ExportError, ExportOptions, export
from dcube_edge.head import FixedGraph
from dcube_edge.runtimes import backends, precisions, spec
from dcube_edge.runtimes.base import Runner
from dcube_edge.runtimes.sections import Parity, decode

pytestmark = pytest.mark.backends  # make test-isa runs this module as the other CPU classes

QUIET = {"log": lambda *_: None}


@pytest.mark.parametrize("name", backends.names())
def test_every_registered_backend_is_complete(name):
    b = backends.get(name)
    assert b.precisions
    assert set(b.precisions) <= set(precisions.names())
    assert b.model_files
    assert "pip install" in b.install
    if b.missing():
        pytest.skip(f"{name}: {b.missing()} (the registration itself is checked above)")
    cls = b.runner_class()
    assert issubclass(cls, Runner)
    assert "from_manifest" in vars(cls)
    if b.missing(build=True) is None:
        from dcube_edge.export.builder import Builder

        assert isinstance(b.make_builder(), Builder)


def test_unknown_backend_and_unoffered_precision_are_refused_before_any_work(tiny_run, tmp_path):
    with pytest.raises(ExportError, match="unknown backend 'nope'; choose one of onnxruntime, openvino, tensorrt, torch"):
        export(tiny_run, tmp_path / "a", ExportOptions(backend="nope"), **QUIET)
    with pytest.raises(ExportError, match="torch does not build int8 engines"):
        export(tiny_run, tmp_path / "b", ExportOptions(backend="torch", precision="int8"), **QUIET)
    with pytest.raises(ExportError, match="Triton has no platform for torch"):
        export(tiny_run, tmp_path / "c", ExportOptions(backend="torch", triton_repo=str(tmp_path / "repo")), **QUIET)
    assert not any(tmp_path.iterdir())


def test_manifest_with_an_unregistered_backend_is_refused(ort_engine, tmp_path):
    import shutil

    copy = tmp_path / "engine"
    shutil.copytree(ort_engine, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["backend"] = "tensorrt-rtx"
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(runtimes.EngineError, match="unknown backend 'tensorrt-rtx'.*knows onnxruntime"):
        runtimes.read(copy)


def test_graph_spec_round_trips_and_checks_tensors():
    s = spec.GraphSpec.for_classifier(32, 3, max_batch=16).with_trunk_output(3, 65, 64)
    assert spec.GraphSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert s.outputs[1].dims(4) == (12, 65, 64)
    ok = {"images": np.zeros((4, 1, 32, 32), np.float32)}
    assert s.check_inputs(ok) == 4
    for bad, message in [({"x": ok["images"]}, "takes inputs"), ({"images": np.zeros((4, 1, 32, 32))}, "float64"),
                         ({"images": np.zeros((4, 1, 28, 28), np.float32)}, "shape"),
                         ({"images": np.zeros((17, 1, 32, 32), np.float32)}, "outside this engine's range")]:
        with pytest.raises(spec.SpecMismatch, match=message):
            s.check_inputs(bad)
    good = {"logits": np.zeros((4, 3), np.float32), "trunk_tokens": np.zeros((12, 65, 64), np.float32)}
    s.check_outputs(good, 4)
    with pytest.raises(spec.SpecMismatch, match="did not return"):
        s.check_outputs({"logits": good["logits"]}, 4)
    with pytest.raises(spec.SpecMismatch, match="trunk_tokens"):
        s.check_outputs({**good, "trunk_tokens": np.zeros((4, 65, 64), np.float32)}, 4)


def test_tolerances_are_per_precision():
    parity = Parity(top1_agreement=1.0, top1_agreement_beyond_ties=1.0, auc_delta=0.0, max_abs_logit_diff=0.01)
    assert not precisions.get("fp32").tolerance.holds(parity)  # fp32 must also match logits to 1e-3
    assert precisions.get("int8").tolerance.holds(parity)
    assert not precisions.get("bf16").tolerance.holds(replace(parity, top1_agreement=0.98, top1_agreement_beyond_ties=0.98))
    assert not precisions.get("fp16").tolerance.holds(replace(parity, auc_delta=-0.006))


def test_runner_lifecycle_is_checked(ort_engine):
    manifest = runtimes.read(ort_engine)
    runner = runtimes.make_runner(manifest)
    feed = {"images": np.zeros((2, 1, manifest.preprocess.size, manifest.preprocess.size), np.float32)}
    with pytest.raises(runtimes.RunnerNotActive):
        runner.infer(feed)
    with runner:
        with pytest.raises(runtimes.SpecMismatch, match="takes inputs"):
            runner.infer({"pixels": feed["images"]})
        assert runner.infer(feed)["logits"].shape == (2, len(manifest.classes))
    assert not runner.active
    runner.activate()
    with pytest.warns(ResourceWarning, match="left active"):
        del runner
        gc.collect()


def test_export_wraps_and_never_modifies_the_model(tiny_run):
    cfg, model = rundir.load_model(tiny_run)
    x = torch.randn(3, 1, cfg.image_size, cfg.image_size)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        eager = model(x)
        graph = FixedGraph(model)
        baked = graph(x)
        full = FixedGraph(model, upto=cfg.num_layers - 1, last_layer=True)(x)
    torch.testing.assert_close(baked, eager, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full[0], eager, atol=1e-5, rtol=1e-5)
    assert full[1].shape[0] == 3 * len(cfg.timesteps)
    assert model.truncate_after == max(model.layers_used)
    assert not hasattr(model, "expose_last_layer")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="the head reads layer"):
        FixedGraph(model, upto=max(model.layers_used) - 1)


def test_torch_backend_engine_classifies_like_the_onnx_engine(tiny_run, ort_engine, demo_data, tmp_path):
    out = tmp_path / "torch-fp32"
    record = export(tiny_run, out, ExportOptions(backend="torch"), **QUIET)
    assert record.backend == "torch"
    assert {"model.safetensors", "config.json"} <= set(record.files)
    assert record.parity.within_tolerance
    assert record.parity.max_abs_logit_diff == 0.0
    files = sorted((demo_data / "val" / "malignant").iterdir())[:4]
    with runtimes.load(out) as clf_torch, runtimes.load(ort_engine) as clf_ort:
        a = [p.probs for p in clf_torch.classify(files)]
        b = [p.probs for p in clf_ort.classify(files)]
    for pa, pb in zip(a, b):
        assert all(abs(pa[c] - pb[c]) < 1e-4 for c in pa)


def test_evaluate_a_run_dir_goes_through_the_torch_runner(tiny_run, ort_engine, demo_data):
    from dcube_edge.torch_backend import TorchRunner

    runner, manifest = TorchRunner.from_run(tiny_run)
    assert manifest.backend == "torch"
    assert manifest.input_name == "images"
    split = demo_data / "val"
    with runtimes.Classifier(manifest, runner) as clf:
        files = sorted((split / "benign").iterdir())[:3]
        probs = [p.probs for p in clf.classify(files)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        gc.collect()
    with runtimes.load(ort_engine) as ort:
        ref = [p.probs for p in ort.classify(files)]
        t = ort.decision.temperature
    # the run has no operating point (T = 1); the engine's probabilities are tempered by its own T: p_T ∝ p^(1/T)
    assert t > 0
    for p, r in zip(probs, ref):
        tempered = {c: np.exp(np.log(max(v, 1e-30)) / t) for c, v in p.items()}
        total = sum(tempered.values())
        assert all(abs(tempered[c] / total - r[c]) < 1e-4 for c in p), (p, r, t)


def test_near_tie_flips_are_excused_only_when_both_sides_are_near_tied():
    from dcube_edge.export import parity

    # 24 images, the reference decisive on 23; image 0 is the AVX512-BF16 EPYC case: classes 0 and 1 within
    # 4e-4 logits, a 6.5e-4 rounding error flips it
    ref = np.tile(np.array([[2.0, 0.0, -1.0]]), (24, 1))
    ref[0] = [0.1004, 0.1000, -1.0]
    eng = ref.copy()
    eng[0] = [0.1000, 0.1006, -1.0]
    p = parity.compare(ref, eng, tie_margin=precisions.get("bf16").tolerance.tie_margin)
    assert p.top1_agreement < 0.99
    assert p.near_tie_flips == 1
    assert p.top1_agreement_beyond_ties == 1.0
    assert precisions.get("bf16").tolerance.holds(p)
    # the same flip with the engine decisive the other way is a different answer, not rounding
    eng[0] = [0.1000, 0.9000, -1.0]
    p = parity.compare(ref, eng, tie_margin=precisions.get("bf16").tolerance.tie_margin)
    assert p.near_tie_flips == 0
    assert not precisions.get("bf16").tolerance.holds(p)
    # a decisive reference flipped is never excused, whatever the engine's margin
    eng = ref.copy()
    eng[5] = [0.0, 0.01, -1.0]
    assert parity.compare(ref, eng, tie_margin=0.05).near_tie_flips == 0
    # a manifest from before near-ties were counted is judged on its raw agreement
    old = decode(Parity, {"top1_agreement": 0.958, "max_abs_logit_diff": 6.5e-4})
    assert old.top1_agreement_beyond_ties is None
    assert not precisions.get("bf16").tolerance.holds(old)

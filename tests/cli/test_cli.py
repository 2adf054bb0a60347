"""The console script as users run it: exit codes, one-line errors, --json output."""
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from commands import cli

from dcube_edge.rundir import Run


def test_help_lists_commands():
    res = cli("--help", check=0)
    for cmd in ("train", "init", "export", "classify", "evaluate", "bench", "demo-data", "calibrate"):
        assert cmd in res.stdout


def test_classify_json_and_bad_file(ort_engine, demo_data, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_text("this is text, not a PNG")
    good = sorted((demo_data / "val" / "benign").iterdir())[:2]
    res = cli("classify", ort_engine, *good, bad, "--json", "-", check=1)
    out = json.loads(res.stdout)
    assert [p["error"] is None for p in out["predictions"]] == [True, True, False]
    for p in out["predictions"][:2]:  # each decision explained by what the operating point compared (issue 38)
        assert p["decision"]["explanation"].startswith(p["label"] + ":") and p["decision"]["rule"] == out["operating_point"]
        assert max(p["decision"]["compared"], key=p["decision"]["compared"].get) == p["label"]
    assert "not a readable image" in out["predictions"][2]["error"]
    assert out["classes"] == ["benign", "malignant", "normal"] and "Traceback" not in res.stderr
    # the two readable images went through the engine in one call, and that call's time is reported
    assert list(out["engine_time"]) == ["2"] and out["engine_time"]["2"]["calls"] == 1
    assert out["engine_time"]["2"]["p50_ms"] > 0


def test_classify_says_what_the_engine_computes_in(ort_engine, demo_data, tmp_path):
    files = sorted((demo_data / "val" / "normal").iterdir())[:2]
    res = cli("classify", ort_engine, *files, "--json", tmp_path / "p.json", check=0)
    recorded = json.loads((ort_engine / "manifest.json").read_text())["effective_precision"]
    assert json.loads((tmp_path / "p.json").read_text())["effective_precision"] == recorded
    assert "computes in: all fp32" in res.stderr and "built on" not in res.stderr


def test_foreign_build_names_the_cpu_that_chose_the_precision_parts(ort_engine):
    from dcube_edge import runtimes
    from dcube_edge.runtimes.choices import AttentionChoice, OpenVINOChoices

    m = runtimes.read(ort_engine)
    here = m.record.provenance.built_on.isa_class
    assert m.foreign_build("some-other-cpu") is None  # ONNX Runtime engines measure no choices at export
    timed = OpenVINOChoices(attention=AttentionChoice("float"))  # what its builder records
    m = replace(m, record=replace(m.record, backend="openvino", choices=timed))
    assert m.foreign_build(here) is None
    assert f"built on a CPU of class {here}" in m.foreign_build("some-other-cpu")


def test_bench_rebuilds_engines_of_other_export_code_or_cpu_class(tiny_run, ort_engine, tmp_path, monkeypatch):
    import shutil

    from dcube_edge.bench import matrix as benchmark
    from dcube_edge.export import build

    out = tmp_path / "engine"
    shutil.copytree(ort_engine, out)
    log: list[str] = []
    built = []
    monkeypatch.setattr(build, "export", lambda run, dest, opts, log: built.append(dest))  # the decision, not the build
    benchmark.build_or_reuse(Run.load(tiny_run), out, log.append, max_batch=16)
    assert "reusing" in log[-1] and not built
    manifest = json.loads((out / "manifest.json").read_text())
    for section, key in (("tools", "export_code"), ("built_on", "isa_class")):
        changed = {**manifest, section: {**manifest[section], key: "something else"}}
        (out / "manifest.json").write_text(json.dumps(changed))
        benchmark.build_or_reuse(Run.load(tiny_run), out, log.append, max_batch=16)
        assert log[-1] == "building engine" and built[-1] == out, (section, key)
    assert len(built) == 2


def test_bench_run_is_rewritten_when_the_preset_has_moved_on(tmp_path):
    from dcube_edge.bench import bench_run

    run = tmp_path / "tiny"
    assert "written" in bench_run(run, "tiny", (1,))
    weights = (run / "diffusion.safetensors").stat().st_mtime_ns
    assert "kept" in bench_run(run, "tiny", (1,)) and (run / "diffusion.safetensors").stat().st_mtime_ns == weights
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "width": config["width"] * 2}))  # an older preset's size
    assert "written" in bench_run(run, "tiny", (1,))
    assert json.loads((run / "config.json").read_text())["width"] == config["width"]
    assert "written" in bench_run(run, "tiny", (0, 1))  # other layers: another run


def test_classify_reports_engine_time_per_batch(ort_engine, demo_data, tmp_path):
    files = sorted((demo_data / "val" / "normal").iterdir())[:7]
    res = cli("classify", ort_engine, *files, "--batch-size", "3", "--json", tmp_path / "p.json", check=0)
    timing = json.loads((tmp_path / "p.json").read_text())["engine_time"]
    assert {b: t["calls"] for b, t in timing.items()} == {"1": 1, "3": 2}
    assert "ms at batch 3 (2 calls)" in res.stderr


def test_classify_folder_table(ort_engine, demo_data):
    res = cli("classify", ort_engine, demo_data / "val" / "normal", check=0)
    assert res.stdout.count("normal_00") == 8


def test_evaluate_json(ort_engine, demo_data, tmp_path):
    cli("evaluate", ort_engine, demo_data / "val", "--json", tmp_path / "m.json", check=0)
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n"] == 24 and len(m["confusion_matrix"]) == 3 and sum(map(sum, m["confusion_matrix"])) == 24
    assert set(m["per_class_recall"]) == {"benign", "malignant", "normal"} and 0 <= m["auc"] <= 1


def test_bench_structure(ort_engine, tiny_run, tmp_path):
    cli("bench", ort_engine, "--torch", tiny_run, "--batch-sizes", "1,2", "--iterations", "2", "--warmup", "1",
        "--json", tmp_path / "b.json", "--csv", tmp_path / "b.csv", "--plot", tmp_path / "b.png", check=0)
    b = json.loads((tmp_path / "b.json").read_text())
    from dcube_edge.runtimes import isa

    rows = b["results"]
    autocast = {("torch-autocast", 1), ("torch-autocast", 2)} if isa.has_bf16() else set()
    assert {(r["backend"], r["batch"]) for r in rows} == {("torch-eager", 1), ("torch-eager", 2),
                                                         ("onnxruntime", 1), ("onnxruntime", 2)} | autocast
    rows = [r for r in rows if r["backend"] != "torch-autocast"]
    for r in rows:
        assert r["p50_ms"] > 0 and r["p50_ms"] <= r["p99_ms"] and r["images_per_s"] > 0
        assert r["speedup_vs_torch"] is not None
    ort = [r for r in rows if r["backend"] == "onnxruntime"]
    assert ort[1]["gflops"] == pytest.approx(2 * ort[0]["gflops"], rel=1e-6)  # FLOPs scale with batch
    assert all(0 < r["fraction_of_gemm_peak"] and r["peak_precision"] == "fp32" for r in ort)
    parity = json.loads((ort_engine / "manifest.json").read_text())["parity"]  # what it gave up, beside its speed
    assert all(r["top1_agreement"] == parity["top1_agreement"] and r["auc"] == parity["auc_engine"] for r in ort)
    assert b["gemm_peaks"]["fp32"]["gflops_per_s"] > 0 and all(r["speedup_vs_fastest_torch"] for r in ort)
    assert b["machine"]["cpu_count"] >= 1 and "isa" in b["machine"]
    assert b["model"]["preset"] == "tiny" and b["model"]["gflop_per_image"] == pytest.approx(ort[0]["gflops"], abs=1e-3)
    from dcube_edge.bench.report import model_line, report_markdown

    assert "tiny preset" in model_line(b) and "GFLOP per image" in model_line({**b, "model": None})
    table = report_markdown({"t": b})
    assert "| onnxruntime | fp32 | 2 |" in table and "passes" not in table and f"{parity['auc_engine']:.3f} (" in table  # a 2-call bench times each row once
    csv_lines = (tmp_path / "b.csv").read_text().splitlines()
    assert csv_lines[0].startswith("backend,precision,batch,p50_ms") and len(csv_lines) == 1 + 4 + len(autocast) + 1
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_compile_rows_cover_every_torch_precision(tiny_run, monkeypatch):
    """--compile adds one torch.compile row per precision the eager rows run (the wiring only: torch.compile
    is replaced by a recorder here, since compiling takes a minute; `make bench` compiles for real)."""
    import torch

    from dcube_edge.bench.torch_rows import torch_rows
    from dcube_edge.runtimes import isa

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model, **_: compiled.append(model) or model)
    rows = torch_rows(Run.load(tiny_run), (1,), 2, 1, None, compile=True)
    eager = {r["precision"] for r in rows if r["backend"] != "torch-compile"}
    assert eager == ({"fp32", "bf16"} if isa.has_bf16() else {"fp32"})
    assert {r["precision"] for r in rows if r["backend"] == "torch-compile"} == eager
    assert len(compiled) == len(eager) and all(r["p50_ms"] > 0 for r in rows)


def test_bench_figures_truncation_and_timesteps(tiny_run, tmp_path):
    import shutil

    from dcube_edge.bench.matrix import timestep_figure, truncation_figure
    from dcube_edge.config import Config

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    log = []
    t = truncation_figure(Run.load(run), run / "engines", 1, 2, 1, None, log.append)
    layers = Config.from_preset("tiny").num_layers
    assert t["gflops_full"] >= t["gflops_truncated"] > 0
    assert (t["flop_ratio"] > 1.0) == (t["truncated_after_layer"] < layers - 1)
    ts = timestep_figure(Run.load(run), run / "engines", 1, 2, 1, None, log.append)
    assert len(ts["timesteps"]) == 3 and ts["p50_ms_one_call"] > 0 and ts["speedup"] > 0
    assert any("reusing" in m for m in log)  # the truncated fp32 engine is built once, then reused by hash


@pytest.mark.parametrize("args, message", [
    (("classify", "/nonexistent-engine", "x.png"), "not an engine directory"),
    (("train", "/nonexistent-data", "--out", "/tmp/dcube-never"), "does not exist"),
    (("export", "/nonexistent-run", "--out", "/tmp/dcube-never"), "not a run directory"),
    (("init", "/tmp/dcube-never", "--classes", "one"), "at least two"),
])
def test_user_errors_are_one_line_exit_2(args, message):
    res = cli(*args, check=2)
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# Wrong invocations a user makes (issue 13): each must be refused before any work with exit 2, one line on
# stderr naming what is wrong, no traceback, and nothing written. {E} engine, {R} run, {D} data, {T} scratch.
WRONG = [
    "classify {E} {D}/val/benign --batch-size 0", "classify {E} {D}/val/benign --batch-size -3",
    "classify {E} {D}/val/benign --workers 0", "classify {E} {D}/val/benign --threads 0",
    "classify {E}", "classify {T}/nowhere {D}/val/benign", "classify {R} {D}/val/benign",
    "classify {E} {D}/val/benign --batch-size many", "classify {E} {D}/val/benign --no-such-option",
    "evaluate {E} {D}/val --batch-size 0", "evaluate {E} {D}/val --bootstrap -1", "evaluate {E} {T}/nowhere",
    "evaluate {E} {D}/val --threads 0",
    "bench {E} --batch-sizes 0", "bench {E} --batch-sizes 1,x", "bench {E} --batch-sizes 1000",
    "bench {E} --iterations 0", "bench {E} --warmup -1", "bench {E} --threads 0",
    "bench {E} {E} --matrix", "bench {E} --figures", "bench {E} --device cuda", "bench {E} --device tpu",
    "export {R} --out {T}/e --backend coreml", "export {R} --out {T}/e --precision fp8",
    "export {R} --out {T}/e --backend onnxruntime --precision bf16", "export {R} --out {T}/e --max-batch 0",
    "export {R} --out {T}/e --calibration-size 0", "export {R} --out {T}/e --backend torch --precision int8",
    "export {R} --out {T}/e --backend torch --triton-repo {T}/repo", "export {R} --out {R}",
    "export {T}/nowhere --out {T}/e", "export {E} --out {T}/e",
    "train {D} --out {T}/r --batch-size 0", "train {D} --out {T}/r --timesteps 0,5000",
    "train {D} --out {T}/r --timesteps a,b", "train {D} --out {T}/r --steps-diffusion 0",
    "train {D} --out {T}/r --epochs-classifier 0", "train {D} --out {T}/r --ema-decay 1.5",
    "train {D} --out {T}/r --amp fp64", "train {D} --out {T}/r --grad-accum 0", "train {D} --out {T}/r --preset huge",
    "train {D} --out {T}/r --lr-schedule step", "train {D} --out {T}/r --class-weights median",
    "train {D} --out {T}/r --guide-branch vgg",
    "train {D} --out {T}/r --layers 99", "train {D} --out {R}", "train {T}/nowhere --out {T}/r",
    "baseline {D} --out {T}/b --model vgg", "baseline {D} --out {T}/b --steps 0",
    "demo-data {T}/p --per-class 0", "demo-data {T}/p --size 2", "init {T}/i --classes a,a",
    "init {T}/i --preset huge", "calibrate {R} {D} --out {T}/c.npz --size 0",
    "augment {R} --out {T}/s --steps 0", "augment {R} --out {T}/s --num-synthetic 0", "nonsense-command",
    "classify {E} {D}/val", "classify {E} {D}/val/benign --json /proc/dcube.json", "classify {E} {D}/val/benign --json {T}",
    "evaluate {E} {D}/val --json {T}/missing/metrics.json", "bench {E} --csv {T}", "bench {E} --plot /proc/p.png",
    "serve {E} --spool {T}/s --host 0.0.0.0", "serve {E} --spool {T}/s --forward PACS-no-port", "bench {E} --serve 0",
]


@pytest.mark.parametrize("invocation", WRONG)
def test_wrong_invocations_are_refused_in_one_line(invocation, ort_engine, tiny_run, demo_data, tmp_path, capsys,
                                                    monkeypatch):
    """Run through the console entry point in this process (the same `main()` the script calls; a subprocess per
    invocation cost about 1.5 s of interpreter start each)."""
    from dcube_edge import cli as entry

    args = invocation.format(E=ort_engine, R=tiny_run, D=demo_data, T=tmp_path).split()
    monkeypatch.setattr(sys, "argv", ["dcube-edge", *args])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        entry.main()
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert exit_.value.code == 2, out + err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err + out, err
    assert not any(tmp_path.iterdir()), f"{invocation} wrote {list(tmp_path.iterdir())}"


def test_wrong_invocation_corpus_is_large_enough():
    assert len(WRONG) >= 40


@pytest.mark.parametrize("raised, code, prefix", [("user", 2, "error: "), ("value", 3, "internal error: ValueError"),
                                                 ("os", 2, "error: ")])
def test_only_user_errors_exit_2(raised, code, prefix, tmp_path, capsys, monkeypatch):
    """A UserError (and the OS refusing a file) is the user's to fix: exit 2; a plain ValueError from deep
    inside (numpy, a bug) is internal: exit 3 with the --debug hint."""
    from dcube_edge import cli as entry
    from dcube_edge import phantoms
    from dcube_edge.errors import UserError

    error = {"user": UserError("bad data"), "value": ValueError("operands could not be broadcast"),
             "os": PermissionError(13, "Permission denied")}[raised]

    def write_demo(*a, **k):
        raise error

    monkeypatch.setattr(phantoms, "write_demo", write_demo)
    monkeypatch.setattr(sys, "argv", ["dcube-edge", "demo-data", str(tmp_path / "p")])
    with pytest.raises(SystemExit) as exit_:
        entry.main()
    err = capsys.readouterr().err
    assert exit_.value.code == code and err.startswith(prefix) and "Traceback" not in err
    assert ("--debug" in err) == (code == 3)


def test_export_unknown_backend_and_missing_tensorrt(tiny_run, tmp_path):
    res = cli("export", tiny_run, "--out", tmp_path / "e", "--backend", "coreml", check=2)
    assert "unknown backend" in res.stderr
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        res = cli("export", tiny_run, "--out", tmp_path / "t", "--backend", "tensorrt", check=2)
        assert "pip install 'dcube-edge[tensorrt]'" in res.stderr
        assert not (tmp_path / "t").exists()


def test_train_refuses_to_overwrite_a_run(tiny_run):
    res = cli("train", "/tmp", "--out", tiny_run, check=2)
    assert "--resume" in res.stderr


@pytest.mark.backends
def test_evaluate_run_dir_matches_engine_with_intervals(ort_engine, tiny_run, demo_data, tmp_path):
    """A run's PyTorch model and its fp32 engine score alike, up to what the precision can promise: the engine
    reports probabilities at its fitted temperature and a run at 1, which moves a three-class one-vs-rest AUC (it
    did, by 0.0026, on an EPYC), so the AUCs are compared at the same temperature; decisions and ranks agree up to
    near-ties of the measured deviation (tests/agreement.py)."""
    from agreement import auc_flip_bound, decisions_agree_beyond_ties

    from dcube_edge.data import read_split
    from dcube_edge.evaluation import load_target
    from dcube_edge.metrics import auc

    cli("evaluate", tiny_run, demo_data / "val", "--bootstrap", "200", "--json", tmp_path / "t.json", check=0)
    cli("evaluate", ort_engine, demo_data / "val", "--bootstrap", "200", "--json", tmp_path / "e.json", check=0)
    t, e = (json.loads((tmp_path / f).read_text()) for f in ("t.json", "e.json"))
    assert t["backend"] == "torch"
    assert e["backend"] == "onnxruntime"
    logits, temperature = {}, 1.0
    for name, target in (("torch", tiny_run), ("engine", ort_engine)):
        with load_target(target, 64, None, None) as clf:
            split = read_split(demo_data / "val", clf.classes)[1]
            labels, logits[name] = split.labels, clf.logits(split.load(clf.spec))
            if name == "engine":
                temperature = clf.decision.temperature
    delta = float(np.abs(logits["torch"] - logits["engine"]).max())
    assert delta < 1e-3  # the fp32 tolerance (runtimes/precisions.py)
    agree, why = decisions_agree_beyond_ties(logits["torch"], logits["engine"])
    assert agree, why
    flips = int((logits["torch"].argmax(1) != logits["engine"].argmax(1)).sum())
    assert np.abs(np.array(t["confusion_matrix"]) - np.array(e["confusion_matrix"])).sum() <= 2 * flips
    if not flips:
        assert t["ci95"]["accuracy"] == e["ci95"]["accuracy"]  # same seed, same labels, same decisions

    def tempered(z: np.ndarray, t: float) -> np.ndarray:
        z = z / t - (z / t).max(1, keepdims=True)
        return np.exp(z) / np.exp(z).sum(1, keepdims=True)

    assert t["auc"] == pytest.approx(auc(labels, tempered(logits["torch"], 1.0)), abs=1e-9)  # a run: T = 1
    engine_probs, torch_probs = tempered(logits["engine"], temperature), tempered(logits["torch"], temperature)
    assert e["auc"] == pytest.approx(auc(labels, engine_probs), abs=1e-9)
    bound = auc_flip_bound(labels, torch_probs, float(np.abs(torch_probs - engine_probs).max()))
    assert abs(e["auc"] - auc(labels, torch_probs)) <= bound + 1e-9
    for key in ("accuracy", "macro_f1"):
        lo, hi = t["ci95"][key]
        assert 0 <= lo <= t[key] <= hi <= 1
    assert t["ci95"]["resamples"] == 200


def test_baseline_trains_in_the_same_harness_and_evaluates(demo_data, tmp_path):
    run = tmp_path / "r18"
    cli("baseline", demo_data, "--out", run, "--model", "resnet18", "--preset", "tiny", "--epochs", "1", check=0)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"] == "resnet18" and cfg["val_source"] == "val/" and (run / "baseline.safetensors").is_file()
    m = json.loads((run / "metrics.json").read_text())
    assert m["validation"]["n"] == 24 and m["model"] == "resnet18"
    assert m["history"]["baseline"][0]["val_macro_f1"] == pytest.approx(m["validation"]["macro_f1"], abs=1e-6)
    cli("evaluate", run, demo_data / "val", "--bootstrap", "0", "--json", tmp_path / "e.json", check=0)
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["confusion_matrix"] == m["validation"]["confusion_matrix"]
    res = cli("export", run, "--out", tmp_path / "x", "--full-trunk", check=2)  # it exports (test_baseline_export)
    assert "baseline run" in res.stderr and "no diffusion trunk" in res.stderr
    res = cli("baseline", demo_data, "--out", tmp_path / "y", "--model", "vgg", check=2)
    assert "unknown baseline" in res.stderr


def test_bf16_autocast_and_gradient_accumulation(demo_data, tmp_path):
    import torch

    run = tmp_path / "amp"
    cli("train", demo_data, "--out", run, "--epochs-diffusion", "2", "--epochs-classifier", "1", "--batch-size", "16",
        "--amp", "bf16", "--grad-accum", "2", check=0)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["amp"] == "bf16" and cfg["grad_accum"] == 2
    state = torch.load(run / "state" / "diffusion.pt", weights_only=True)
    steps_per_epoch = 72 // 8  # 72 training images, 8 pairs per batch
    assert int(state["opt"]["state"][0]["step"]) == 2 * -(-steps_per_epoch // 2)  # one optimizer step per 2 batches
    assert all(np.isfinite(h["eps"]) for h in state["history"])
    res = cli("train", demo_data, "--out", tmp_path / "bad", "--amp", "fp8", check=2)
    assert "unknown --amp" in res.stderr and not (tmp_path / "bad").exists()


def test_classify_reports_every_file_it_passes_over(ort_engine, demo_data, tmp_path):
    """Unsupported types, dangling links and a name the OS refuses are per-file errors (exit 1); the rest
    is classified; --recursive enters sub-folders."""
    import shutil

    good = sorted((demo_data / "val" / "benign").iterdir())[0]
    shutil.copy(good, tmp_path / "scan.png")
    shutil.copy(good, tmp_path / "scan.gif")
    (tmp_path / "notes.txt").write_text("not a scan")
    (tmp_path / "gone.png").symlink_to(tmp_path / "missing.png")
    (tmp_path / "sub").mkdir()
    shutil.copy(good, tmp_path / "sub" / "nested.png")
    res = cli("classify", ort_engine, tmp_path, tmp_path / ("x" * 300 + ".png"), "--json", "-", check=1)
    out = {Path(p["path"]).name[:12]: p for p in json.loads(res.stdout)["predictions"]}
    assert out["scan.png"]["error"] is None and out["scan.png"]["label"] in ("benign", "malignant", "normal")
    assert "not a supported image type (.gif" in out["scan.gif"]["error"] and ".txt" in out["notes.txt"]["error"]
    assert "dangling symbolic link" in out["gone.png"]["error"] and "File name too long" in out["x" * 12]["error"]
    assert "nested.png" not in out and "pass --recursive" in res.stderr
    res = cli("classify", ort_engine, tmp_path / "sub", tmp_path, "--recursive", "--json", "-", check=1)
    assert sum(Path(p["path"]).name == "nested.png" and p["error"] is None for p in json.loads(res.stdout)["predictions"]) == 2


def test_engine_dirs_are_readable_by_others_per_the_umask(ort_engine):
    umask = os.umask(0)
    os.umask(umask)
    assert ort_engine.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    assert all(f.stat().st_mode & 0o777 == 0o666 & ~umask for f in ort_engine.iterdir() if f.is_file())


def test_resume_of_a_finished_run_changes_nothing_and_conflicts_are_refused(tiny_run, demo_data, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {f.name: f.read_bytes() for f in run.glob("*.*")}
    res = cli("train", demo_data, "--out", run, "--resume", check=0)
    assert "already finished" in res.stdout
    res = cli("train", demo_data, "--out", run, "--resume", "--preset", "small", "--seed", "3", check=2)
    assert "--preset 'small' (saved 'tiny')" in res.stderr and "--seed 3 (saved 0)" in res.stderr
    assert {f.name: f.read_bytes() for f in run.glob("*.*")} == before


@pytest.mark.backends
def test_export_output_is_quiet_and_parity_printed_once(tiny_run, tmp_path):
    pytest.importorskip("nncf")
    res = cli("export", tiny_run, "--out", tmp_path / "ov-int8", "--backend", "openvino", "--precision", "int8",
              "--calibration-size", "16", check=0)
    assert "INFO" not in res.stderr and res.stdout.count("top-1 agreement") == 1
    assert len(res.stderr.strip().splitlines()) < 15, res.stderr


def test_evaluate_json_is_strict_when_a_class_is_absent(ort_engine, demo_data, tmp_path):
    import shutil

    split = tmp_path / "split"
    for c in ("benign", "malignant"):
        shutil.copytree(demo_data / "val" / c, split / c)
    cli("evaluate", ort_engine, split, "--bootstrap", "20", "--json", tmp_path / "m.json", check=0)

    def refuse(name):
        raise AssertionError(f"{name} in JSON")

    m = json.loads((tmp_path / "m.json").read_text(), parse_constant=refuse)
    assert m["auc"] is None and "normal" in m["undefined"]["auc"] and m["per_class_recall"]["normal"] is None


def test_bench_reads_a_run_once_and_hands_it_down(ort_engine, tiny_run, monkeypatch):
    """`bench --torch RUN` used to re-read RUN's config in every function it passed through (six times in one
    call); the run is loaded once into a Run and handed down."""
    from dcube_edge import rundir
    from dcube_edge.bench import BenchOptions, run_bench

    reads = []
    original = rundir.load_config
    monkeypatch.setattr(rundir, "load_config", lambda run: reads.append(run) or original(run))
    result = run_bench([ort_engine], BenchOptions(batch_sizes=(1,), iterations=2, warmup=1), torch_run=tiny_run)
    assert len(reads) == 1 and result["model"]["preset"] == "tiny"
    assert any(r.get("reference") for r in result["results"]) and any(not r.get("reference") for r in result["results"])


def test_bench_loop_times_each_stage_of_a_cine_loop(ort_engine):
    """`bench --loop`'s measurement on a short loop: every stage timed, decoding cumulative, the dominant part named."""
    pytest.importorskip("pydicom", reason="a loop is a DICOM object (the `dicom` extra)")
    from dcube_edge.bench import loop_throughput

    r = loop_throughput(ort_engine, frames=6, batch=4, repeats=1, tissue=64)
    stages = [row["stage"] for row in r["rows"]]
    assert len(stages) == 6 and stages[0].startswith("decode JPEG only") and stages[-1].startswith("classify, end to end")
    assert all(row["frames_per_s"] > 0 for row in r["rows"]) and r["frames"] == 6
    assert r["dominant"] in ("reading (decode, colour, crop, resize)", "the engine") and 0 < r["reading_share"] < 1
    assert len(r["load_average_1_5_15"]) == 3

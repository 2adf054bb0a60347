"""``dcube-edge bench``: backends × precisions × batch sizes timed in one process, with PyTorch eager
FP32 of the same run as the baseline, a GEMM peak, the truncation figure (FLOP ratio from the graphs
vs latency ratio) and the timestep-batching figure. Engine timing itself is torch-free
(:mod:`dcube_edge.runtimes.bench`); torch is imported only for the baseline and for building engines."""
from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dcube_edge import runtimes
from dcube_edge.errors import UserError
from dcube_edge.runtimes import flops as graph_flops
from dcube_edge.runtimes import isa
from dcube_edge.runtimes.bench import machine_info, peak_rss_mb, time_fn
from dcube_edge.runtimes.files import sha256, write_bytes, write_json

Log = Callable[[str], None]


def _inputs(batch: int, size: int) -> np.ndarray:
    return np.random.default_rng(batch).uniform(-1, 1, (batch, 1, size, size)).astype(np.float32)


def engine_rows(engine: Path, batch_sizes: tuple[int, ...], iterations: int, warmup: int,
                threads: int | None) -> list[dict]:
    manifest = runtimes.read(engine)
    runner = runtimes.make_runner(manifest, threads=threads)
    size = manifest.preprocess.size
    model_files = [f for f in runtimes.backends.get(manifest.backend).model_files if f in manifest.data["files"]]
    engine_mb = sum((manifest.dir / f).stat().st_size for f in model_files) / 2**20
    onnx_file = manifest.dir / "model.onnx"
    gflops = ({b: c["gflops"] for b, c in graph_flops.count_batches(onnx_file, list(batch_sizes)).items()}
              if onnx_file.is_file() else {})
    rows = []
    with runner:
        runtime = runner.compiled_precision()
        for b in batch_sizes:
            if b > manifest.max_batch:
                continue
            feed = {manifest.input_name: _inputs(b, size)}
            stats = time_fn(lambda feed=feed: runner.infer(feed), iterations, warmup)
            rows.append({"engine": str(engine), "backend": manifest.backend, "precision": manifest.precision,
                         "batch": b, "engine_mb": round(engine_mb, 2), "gflops": gflops.get(b),
                         "truncated_after_layer": manifest.data.get("truncated_after_layer"),
                         "timesteps": len(manifest.data.get("timesteps", [])),
                         "effective_precision": manifest.precision_parts()
                         + (f"; runtime hint {runtime}" if runtime else ""), **stats})
    return rows


def torch_rows(run: Path, batch_sizes: tuple[int, ...], iterations: int, warmup: int,
               threads: int | None, compile: bool = False, device: str = "cpu") -> list[dict]:
    """The run's PyTorch model through the torch backend's runner: eager fp32, bf16 autocast on CPUs with
    bf16 units, fp16 autocast and a CUDA graph on GPUs; on request torch.compile of each of those precisions
    (on the AMX Xeon's paper preset, compiled bf16 autocast ran about 1.5× eager bf16 autocast: the fastest
    PyTorch row, and so the one engines are measured against)."""
    from dcube_edge import rundir
    from dcube_edge.torch_backend import TorchRunner

    cfg = rundir.load_config(run)
    variants = [("torch-eager", "fp32", {})]
    if device == "cpu" and isa.has_bf16():
        variants.append(("torch-autocast", "bf16", {}))
    if device == "cuda":
        variants.append(("torch-autocast", "fp16", {}))
    if compile:
        variants += [("torch-compile", precision, {"compile": True}) for _, precision, _ in variants]
    rows = []
    for backend, precision, extra in variants:
        runner, _ = TorchRunner.from_run(run, precision=precision, device=device, threads=threads,
                                         max_batch=max(batch_sizes), **extra)
        try:
            with runner:
                for b in batch_sizes:
                    feed = {"images": _inputs(b, cfg.image_size)}

                    def call(feed: dict = feed, runner: TorchRunner = runner) -> None:
                        runner.infer(feed)
                        runner.synchronize()

                    rows.append({"engine": str(run), "backend": backend, "precision": precision, "batch": b,
                                 "timesteps": len(cfg.timesteps), **time_fn(call, iterations, warmup)})
        except Exception as e:  # noqa: BLE001 — torch.compile fails lazily on first call, and by platform
            rows.append({"engine": str(run), "backend": backend, "precision": precision, "batch": batch_sizes[0],
                         "error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"})
    if device == "cuda":
        import torch

        model = rundir.load_model(run)[1].to(device)
        for b in batch_sizes:
            x = torch.from_numpy(_inputs(b, cfg.image_size)).to(device)
            with torch.inference_mode():
                replay = cuda_graph(model, x)

                def call(replay: Callable = replay) -> None:
                    replay()
                    torch.cuda.synchronize()

                rows.append({"engine": str(run), "backend": "torch-cudagraph", "precision": "fp32", "batch": b,
                             "timesteps": len(cfg.timesteps), **time_fn(call, iterations, warmup)})
    return rows


def cuda_graph(model, x) -> Callable[[], object]:
    """Capture one forward pass at this batch shape as a CUDA graph; the returned call replays it."""
    import torch

    static = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm up allocations outside the capture
            model(static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(static)
    return graph.replay


def gemm_peak(threads: int | None = None, n: int = 1024, iterations: int = 10) -> dict:
    """float32 GEMM GFLOP/s on this machine, measured now (ONNX Runtime MatMul, same threads)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    stats = time_fn(lambda: sess.run(None, {"a": x, "b": x}), iterations, 2)
    return {"n": n, "gflops_per_s": 2 * n**3 / (stats["p50_ms"] / 1e3) / 1e9, "tool": "onnxruntime MatMul"}


def openvino_gemm_peak(precision: str, threads: int | None = None, n: int = 1024, chain: int = 8,
                       iterations: int = 10) -> dict:
    """GEMM rate of OpenVINO's CPU plugin at one precision (f32, bf16 hint, or int8 through FakeQuantize
    on both operands, which its low-precision transformations turn into int8 MatMuls): the peak an engine
    of that precision is measured against. ``chain`` n×n MatMuls in one model amortise the per-call
    input/output copies and conversions (one 2048² MatMul measured 3× lower for bf16 on an AMX Xeon);
    the fastest call counts, as a peak should."""
    import openvino as ov
    import openvino.opset13 as ops
    import openvino.properties as props
    import openvino.properties.hint as hints

    rng = np.random.default_rng(0)
    param = ops.parameter([n, n], ov.Type.f32, name="a")
    x, lo, hi = param, ops.constant(np.float32(-1.0)), ops.constant(np.float32(1.0))
    for _ in range(chain):
        w = ops.constant((rng.uniform(-1, 1, (n, n)) / np.sqrt(n)).astype(np.float32))
        if precision == "int8":
            x, w = ops.fake_quantize(x, lo, hi, lo, hi, 256), ops.fake_quantize(w, lo, hi, lo, hi, 255)
        x = ops.matmul(x, w, False, True)
    model = ov.Model([x], [param], f"gemm-{precision}")
    config = {hints.inference_precision(): "bf16" if precision == "bf16" else "f32",
              hints.performance_mode(): hints.PerformanceMode.LATENCY}
    if threads:
        config[props.inference_num_threads()] = threads
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    feed = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    for _ in range(3):
        request.infer([feed])
    best = min(_timed(lambda: request.infer([feed])) for _ in range(iterations))
    return {"n": n, "chain": chain, "gflops_per_s": chain * 2 * n**3 / best / 1e9,
            "tool": f"openvino {chain}× MatMul ({precision})"}


def keep_faster(rows: list[dict], again: list[dict]) -> None:
    """Replace a row's timings by a second pass's where that one is faster, keeping both p50s: on a shared
    host one disturbed minute would otherwise decide a row, and every speedup computed against it."""
    key = lambda r: (r["engine"], r["backend"], r["precision"], r["batch"])  # noqa: E731
    index = {key(r): i for i, r in enumerate(rows)}
    for r in again:
        i = index.get(key(r))
        if i is None or "p50_ms" not in r:
            continue
        old = rows[i]
        samples = old.get("p50_ms_samples", [old["p50_ms"]] if "p50_ms" in old else []) + [r["p50_ms"]]
        rows[i] = {**(r if "p50_ms" not in old or r["p50_ms"] < old["p50_ms"] else old), "p50_ms_samples": samples}


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# (n, chain) shapes of the GEMM peak; the best rate any of them reaches counts. On a 2-core AMX Xeon the int8
# peak came out highest at 1024² and bf16's at 2048², and repeated samples of one shape spread up to 3×
# (a shared host): one sample per precision was not a peak (the int8 engine looked like 50 % of it, 2026-11-26).
PEAK_SHAPES = ((1024, 8), (2048, 4))


def gemm_peaks(threads: int | None = None, rounds: int = 1) -> dict:
    """Peaks per precision, measured in this run: fp32 (and, with OpenVINO, bf16 where the CPU has it,
    and int8), each the best of ``rounds`` × shapes samples taken in turn across precisions, so a noisy
    spell does not decide one precision's peak. Every engine row is compared with the peak of its own
    precision; each peak keeps its samples."""
    if available("openvino") is not None:
        return {"fp32": gemm_peak(threads)}
    precisions = {"fp32": "f32", **({"bf16": "bf16"} if isa.has_bf16() else {}), "int8": "int8"}
    shapes = PEAK_SHAPES if rounds > 1 else PEAK_SHAPES[:1]
    samples: dict[str, list[dict]] = {name: [] for name in precisions}
    for _ in range(rounds):
        for name, precision in precisions.items():
            for n, chain in shapes:
                samples[name].append(openvino_gemm_peak(precision, threads, n=n, chain=chain))
    return {name: _best(got) for name, got in samples.items()}


def _best(samples: list[dict]) -> dict:
    rates = [round(s["gflops_per_s"], 1) for s in samples]
    return {**max(samples, key=lambda s: s["gflops_per_s"]), "samples": rates}


def merge_peaks(*measured: dict) -> dict:
    """Per precision, the higher of several peak measurements (e.g. before and after the timed rows),
    with all their samples."""
    merged: dict = {}
    for peaks in measured:
        for name, p in peaks.items():
            old = merged.get(name)
            samples = (old or {}).get("samples", []) + p.get("samples", [p["gflops_per_s"]])
            best = p if old is None or p["gflops_per_s"] > old["gflops_per_s"] else old
            merged[name] = {**best, "samples": samples}
    return merged


PEAK_OF = {"fp32": "fp32", "bf16": "bf16", "int8": "int8", "fp16": "fp32"}  # CPU fp16 has no peak of its own


def finish_rows(rows: list[dict], peaks: dict) -> None:
    """images/s; speedups vs torch eager fp32 and vs the fastest torch row at the same batch; achieved
    GFLOP/s (engine graph FLOPs, or torch's from the matching fp32 engine) and the fraction of the GEMM
    peak of the row's own precision."""
    for r in rows:
        if "p50_ms" not in r:
            continue
        r["images_per_s"] = r["batch"] / (r["p50_ms"] / 1e3)
        same = [t for t in rows if t["batch"] == r["batch"] and "p50_ms" in t]
        base = next((t for t in same if t["backend"] == "torch-eager" and t["precision"] == "fp32"), None)
        torch_rows_ = [t for t in same if t["backend"].startswith("torch")]
        fastest = min(torch_rows_, key=lambda t: t["p50_ms"]) if torch_rows_ else None
        r["speedup_vs_torch"] = base["p50_ms"] / r["p50_ms"] if base else None
        r["speedup_vs_fastest_torch"] = fastest["p50_ms"] / r["p50_ms"] if fastest else None
        r["fastest_torch"] = f"{fastest['backend']} {fastest['precision']}" if fastest else None
        flops = r.get("gflops") or next((t.get("gflops") for t in same if t.get("gflops")), None)
        peak = peaks.get(PEAK_OF.get(r["precision"], ""))
        if flops:
            r["achieved_gflops_per_s"] = flops / (r["p50_ms"] / 1e3)
            if peak:
                r["peak_precision"] = PEAK_OF[r["precision"]]
                r["fraction_of_gemm_peak"] = r["achieved_gflops_per_s"] / peak["gflops_per_s"]


def matrix() -> list[tuple[str, str]]:
    """Every registered engine backend × its precisions (the torch backend is timed by its own rows)."""
    return [(b.name, p) for b in runtimes.backends.REGISTRY.values() if b.name != "torch" for p in b.precisions]


def available(backend: str, precision: str | None = None) -> str | None:
    """None if the backend (at that precision) can be built here, else the reason."""
    entry = runtimes.backends.get(backend)
    reason = entry.missing(build=True)
    if reason or not precision:
        return reason
    try:
        entry.build_module().check(precision)
    except isa.PrecisionUnavailable as e:
        return str(e).split(";")[0]
    return None


def bench_run(path: str | Path, preset: str, layers: tuple[int, ...] = (4, 5)) -> str:
    """The random-weight run ``make bench`` times: kept while its config has the preset's current values, else
    written afresh (a run left from before a preset changed would be timed under today's preset name)."""
    import shutil

    from dcube_edge import rundir
    from dcube_edge.config import PRESETS, Config
    from dcube_edge.train import init_run

    path = Path(path)
    want = Config.from_preset(preset, classes=("benign", "malignant", "normal"))
    if (path / rundir.CONFIG).is_file():
        have = rundir.load_config(path)
        if all(getattr(have, k) == getattr(want, k) for k in PRESETS[preset]) and have.selected_layers == layers:
            return f"{path}: kept (the {preset} preset's current values)"
        shutil.rmtree(path)
    init_run(path, want, layers)
    return f"{path}: random-weight {preset} run written (layers {list(layers)})"


def build_or_reuse(run: Path, out: Path, log: Log, **options) -> Path:
    """Export unless ``out`` already holds an engine of this run's current weights with these options."""
    from dcube_edge import rundir
    from dcube_edge.export.build import ExportOptions, export, export_code

    opts = ExportOptions(**options)
    manifest = out / "manifest.json"
    if manifest.is_file():
        try:
            m = runtimes.read(out).data
            same_run = all(m["run"].get(f) == sha256(run / f) for f in (rundir.CONFIG, rundir.DIFFUSION, rundir.CLASSIFIER))
            same_build = (m["backend"], m["precision"], m["graph"]["batch"]["max"]) == (opts.backend, opts.precision,
                                                                                       opts.max_batch)
            same_trunk = not opts.full_trunk or m["truncated_after_layer"] == m["trunk_layers"] - 1
            same_steps = opts.timesteps is None or tuple(m["timesteps"]) == tuple(opts.timesteps)
            # the same export code on the same CPU class (an OpenVINO build times its choices on the CPU)
            same_code = m["tools"].get("export_code") == export_code()
            same_cpu = m.get("built_on", {}).get("isa_class") == isa.tag()
            if same_run and same_build and same_trunk and same_steps and same_code and same_cpu:
                log(f"reusing {out} (same run hashes, options, export code and CPU class)")
                return out
        except (runtimes.EngineError, KeyError):
            pass
    log(f"building {out.name}")
    export(run, out, opts, log=lambda *_: None)
    return out


def truncation_figure(run: Path, root: Path, batch: int, iterations: int, warmup: int, threads: int | None,
                      log: Log) -> dict:
    """Same run exported with the full trunk and truncated (ORT fp32): FLOP ratio vs latency ratio."""
    cut = build_or_reuse(run, root / "onnxruntime-fp32", log, max_batch=max(batch, 8))
    full = build_or_reuse(run, root / "onnxruntime-fp32-fulltrunk", log, max_batch=max(batch, 8), full_trunk=True)
    t_cut = engine_rows(cut, (batch,), iterations, warmup, threads)[0]
    t_full = engine_rows(full, (batch,), iterations, warmup, threads)[0]
    flop_ratio = t_full["gflops"] / t_cut["gflops"]
    speedup = t_full["p50_ms"] / t_cut["p50_ms"]
    return {"batch": batch, "truncated_after_layer": t_cut["truncated_after_layer"],
            "gflops_truncated": t_cut["gflops"], "gflops_full": t_full["gflops"], "flop_ratio": flop_ratio,
            "p50_ms_truncated": t_cut["p50_ms"], "p50_ms_full": t_full["p50_ms"], "latency_speedup": speedup,
            "speedup_over_flop_ratio": speedup / flop_ratio}


def timestep_figure(run: Path, root: Path, batch: int, iterations: int, warmup: int, threads: int | None,
                    log: Log) -> dict:
    """T timesteps in one engine call vs T calls of a one-timestep engine (ORT fp32)."""
    from dcube_edge import rundir

    cfg = rundir.load_config(run)
    one = build_or_reuse(run, root / "onnxruntime-fp32", log, max_batch=max(batch, 8))
    singles = [build_or_reuse(run, root / f"onnxruntime-fp32-t{t}", log, max_batch=max(batch, 8), timesteps=(t,))
               for t in cfg.timesteps]
    runners = [runtimes.make_runner(runtimes.read(p), threads=threads) for p in singles]
    batched = runtimes.make_runner(runtimes.read(one), threads=threads)
    x = {runtimes.read(one).input_name: _inputs(batch, cfg.image_size)}
    for r in [batched, *runners]:
        r.activate()
    try:
        t_batched = time_fn(lambda: batched.infer(x), iterations, warmup)
        t_separate = time_fn(lambda: [r.infer(x) for r in runners], iterations, warmup)
    finally:
        for r in [batched, *runners]:
            r.deactivate()
    return {"batch": batch, "timesteps": list(cfg.timesteps), "p50_ms_one_call": t_batched["p50_ms"],
            "p50_ms_separate_calls": t_separate["p50_ms"], "speedup": t_separate["p50_ms"] / t_batched["p50_ms"]}


def paired_rounds(ours: Callable[[], float], theirs: Callable[[], float], rounds: int) -> list[tuple[float, float]]:
    """(ours, theirs) measured back to back ``rounds`` times, the order swapped every round so a drift in
    the host's speed does not always favour the side measured second."""
    pairs = []
    for r in range(rounds):
        if r % 2 == 0:
            a = ours()
            b = theirs()
        else:
            b = theirs()
            a = ours()
        pairs.append((a, b))
    return pairs


def benchmark_app_figure(engine: Path, batch: int = 1, rounds: int = 6, seconds: int = 3,
                         threads: int | None = None) -> dict:
    """Our runner vs OpenVINO's ``benchmark_app`` on the same IR, precision hint and batch, in ``rounds``
    paired rounds: our runner for ``seconds``, then benchmark_app for ``seconds`` (the order swapped every
    round). The overhead is the median of the per-round ratios, as in the export's timing checks: on a
    shared host the speed of both sides drifts by tens of percent within a minute, more than the gap being
    measured, and a ratio of back-to-back medians cancels that drift where a ratio of overall medians does
    not. Both compile the batch's static shape (``-shape``; the runner reshapes per batch size): with
    ``-data_shape`` benchmark_app ran the dynamic-batch IR, a different compiled model (which is why our
    runner once measured 41 % *faster* than benchmark_app on the AMX Xeon's paper int8 engine)."""
    import re
    import shutil
    import subprocess
    import sys

    manifest = runtimes.read(engine)
    if manifest.backend != "openvino":
        raise UserError(f"{engine} is a {manifest.backend} engine; benchmark_app takes OpenVINO IR")
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    hint = manifest.data.get("openvino", {}).get("inference_precision", "f32")
    size = manifest.preprocess.size
    cmd = [tool, "-m", str(manifest.model_file), "-d", "CPU", "-hint", "latency", "-infer_precision", hint,
           "-shape", f"{manifest.input_name}[{batch},1,{size},{size}]", "-t", str(seconds)]
    if threads:
        cmd += ["-nthreads", str(threads)]
    runner = runtimes.make_runner(manifest, threads=threads)
    feed = {manifest.input_name: _inputs(batch, size)}

    def ours() -> float:
        times, start = [], time.perf_counter()
        while time.perf_counter() - start < seconds:
            times.append(_timed(lambda: runner.infer(feed)))
        return float(np.median(times) * 1e3)

    def theirs() -> float:
        text = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
        found = re.search(r"Median:\s+([\d.]+) (ms|us)", text)  # under a millisecond it prints microseconds
        if not found:
            raise RuntimeError(f"benchmark_app printed no median latency: {text[-300:]}")
        return float(found.group(1)) / (1000.0 if found.group(2) == "us" else 1.0)

    with runner:
        for _ in range(5):  # warm: compile, caches, the first calls
            runner.infer(feed)
        pairs = paired_rounds(ours, theirs, rounds)
    ratios = [a / b for a, b in pairs]
    return {"engine": str(engine), "precision": manifest.precision, "hint": hint, "batch": batch, "rounds": rounds,
            "p50_ms_dcube_edge": float(np.median([a for a, _ in pairs])),
            "p50_ms_benchmark_app": float(np.median([b for _, b in pairs])),
            "overhead": float(np.median(ratios)) - 1, "overhead_per_round": [round(x - 1, 4) for x in ratios]}


def vs_app_method(figure: dict) -> str:
    """How a benchmark_app comparison was taken: paired rounds (median ratio) since 2026-11-27 evening;
    files from before compared the two sides' overall medians."""
    if "overhead_per_round" in figure:
        return f"{figure['rounds']} paired rounds, median of the per-round ratios"
    return f"{figure['rounds']} alternated rounds, ratio of the medians"


def add_figures(result: dict, batch: int, iterations: int, threads: int | None, log: Log,
                profile: bool = False, vs_benchmark_app: bool = False) -> None:
    """Per-op profiles of every engine row and/or the benchmark_app comparison of every OpenVINO row."""
    if not (profile or vs_benchmark_app):
        return
    from dcube_edge.runtimes.profile import op_profile

    engines = dict.fromkeys(r["engine"] for r in result["results"] if not r["backend"].startswith("torch"))
    if profile:
        result["profiles"] = []
        for e in engines:
            log(f"profiling {e}")
            result["profiles"].append(op_profile(runtimes.read(e), batch, iterations, threads=threads))
    if vs_benchmark_app:
        result["vs_benchmark_app"] = []
        for e in engines:
            if runtimes.read(e).backend == "openvino":
                log(f"{e} vs benchmark_app")
                result["vs_benchmark_app"].append(benchmark_app_figure(Path(e), batch, threads=threads))


def write_outputs(result: dict, json_path: Path | None, csv_path: Path | None, plot_path: Path | None) -> None:
    if json_path is not None and str(json_path) != "-":
        write_json(json_path, result)
    if csv_path is not None:
        cols = ["backend", "precision", "batch", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "images_per_s",
                "speedup_vs_torch", "speedup_vs_fastest_torch", "engine_mb", "gflops", "achieved_gflops_per_s",
                "peak_precision", "fraction_of_gemm_peak", "effective_precision", "timesteps", "engine", "error"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        machine = result["machine"]
        for r in result["results"]:
            w.writerow(r)
        buf.write(f"# machine: {machine['cpu_model']}, {machine['cpu_count']} cpus, isa {isa.recorded(machine)}, "
                  f"gpu {machine['gpu']}\n")
        write_bytes(csv_path, buf.getvalue().encode())
    if plot_path is not None:
        plot(result, plot_path)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["results"] if "p50_ms" in r]
    batches = sorted({r["batch"] for r in rows})
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    precisions = ["fp32", "fp16", "bf16", "int8"]
    fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 4), dpi=110, squeeze=False)
    for ax, b in zip(axes[0], batches):
        for backend in backends:
            pts = [(precisions.index(r["precision"]), r["p50_ms"]) for r in rows
                   if r["backend"] == backend and r["batch"] == b and r["precision"] in precisions]
            if pts:
                xs, ys = zip(*sorted(pts))
                ax.plot(xs, ys, marker="o", label=backend)
        ax.set_xticks(range(len(precisions)), precisions)
        ax.set_yscale("log")
        ax.set_ylabel("p50 latency, ms (log)")
        ax.set_title(f"batch {b}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(f"dcube-edge bench — {m['cpu_model']}, {m['cpu_count']} cpus" + (f", {m['gpu']}" if m["gpu"] else ""),
                 fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def check(engines: list[Path], opts: BenchOptions, torch_run: Path | None) -> None:
    """Refuse, before any timing, what would give an empty or meaningless table."""
    if min(opts.batch_sizes) < 1 or opts.iterations < 1 or opts.warmup < 0:
        raise UserError("batch sizes and --iterations must be at least 1, --warmup at least 0")
    for e in engines:
        limit = runtimes.read(e).max_batch
        if max(opts.batch_sizes) > limit:
            raise UserError(f"--batch-sizes {max(opts.batch_sizes)} is above {e}'s largest batch {limit}; "
                             "lower it or re-export with a larger --max-batch")
    if opts.device not in ("cpu", "cuda"):
        raise UserError(f"unknown --device {opts.device!r}; choose cpu or cuda")
    if opts.device == "cuda":
        if torch_run is None:
            raise UserError("--device sets where the PyTorch rows run: pass --torch RUN (engines run where they were built for)")
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: PyTorch sees no CUDA GPU here; use --device cpu")


@dataclass(frozen=True)
class BenchOptions:
    """Everything ``bench`` is asked, from the CLI to the JSON it writes."""

    batch_sizes: tuple[int, ...] = (1, 8)
    iterations: int = 30
    warmup: int = 5
    threads: int | None = None
    compile: bool = False  # also time torch.compile
    device: str = "cpu"  # the PyTorch rows' device
    calibration: str | None = None  # --matrix int8 calibration data
    figures: bool = False  # truncation and timestep-batching figures (needs a run)
    profile: bool = False  # per-op profile of every engine at the smallest batch
    vs_benchmark_app: bool = False  # every OpenVINO engine against benchmark_app on the same IR


def run_bench(engines: list[Path], opts: BenchOptions, torch_run: Path | None = None, matrix_run: Path | None = None,
              log: Log = lambda _: None) -> dict:
    """Every engine (and, with ``matrix_run``, every backend × precision built from it) and the run's PyTorch
    rows, timed in this process; speedups and peak fractions computed within the run."""
    started = time.time()
    skipped: list[str] = []
    engines = list(engines)
    check(engines, opts, torch_run or matrix_run)
    batch_sizes, iterations, warmup, threads = opts.batch_sizes, opts.iterations, opts.warmup, opts.threads
    if matrix_run is not None:
        root = matrix_run / "engines"
        for backend, precision in matrix():
            reason = available(backend, precision)
            if reason:
                skipped.append(f"{backend}/{precision}: {reason}")
                continue
            engines.append(build_or_reuse(matrix_run, root / f"{backend}-{precision}", log, backend=backend,
                                          precision=precision, calibration=opts.calibration,
                                          max_batch=max(max(batch_sizes), 8)))
        torch_run = torch_run or matrix_run
    rounds = max(1, min(3, iterations // 5))  # a quick bench (tests) samples each peak once
    log("measuring GEMM peaks")
    peak = gemm_peaks(threads, rounds)

    def timed_rows(again: str = "") -> list[dict]:
        rows = []
        if torch_run is not None:
            log(f"timing PyTorch rows of {torch_run}{again}")
            rows += torch_rows(torch_run, batch_sizes, iterations, warmup, threads, opts.compile, opts.device)
        for e in engines:
            log(f"timing {e}{again}")
            rows += engine_rows(e, batch_sizes, iterations, warmup, threads)
        return rows

    rows = timed_rows()
    if rounds > 1:  # a full bench: every row and the peaks again, the faster kept (the machine may have been busier)
        keep_faster(rows, timed_rows(" again"))
        peak = merge_peaks(peak, gemm_peaks(threads, rounds))
    finish_rows(rows, peak)
    result = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d"), "options": asdict(opts),
              "threads": threads, "iterations": iterations, "warmup": warmup,
              "gemm_peaks": peak, "results": rows, "skipped": skipped}
    if matrix_run or torch_run:
        result["model"] = model_summary(matrix_run or torch_run, rows)
    if opts.figures and (matrix_run or torch_run):
        run = matrix_run or torch_run
        root = run / "engines"
        result["truncation"] = truncation_figure(run, root, 1, iterations, warmup, threads, log)
        result["timestep_batching"] = timestep_figure(run, root, 1, iterations, warmup, threads, log)
    add_figures(result, min(batch_sizes), iterations, threads, log, profile=opts.profile,
                vs_benchmark_app=opts.vs_benchmark_app)
    result["peak_rss_mb"] = peak_rss_mb()
    result["seconds"] = round(time.time() - started, 1)
    return result


def model_summary(run: Path, rows: list[dict]) -> dict:
    """What was timed: the run's sizes (a preset's values change over time; tables of the same preset name
    from different dates may be of different models) and its FLOPs per image."""
    from dcube_edge import rundir

    cfg = rundir.load_config(run)
    per_image = gflop_per_image(rows)
    return {"preset": cfg.preset, "image_size": cfg.image_size, "trunk": f"U-ViT width {cfg.width}, depth {cfg.depth}, "
            f"patch {cfg.patch_size}", "guide_branch": f"ResNet {cfg.resnet_block} blocks {list(cfg.resnet_layers)}, "
            f"width {cfg.resnet_width}, {cfg.resnet_stem} stem", "selected_layers": list(cfg.selected_layers),
            "timesteps": len(cfg.timesteps), "gflop_per_image": round(per_image, 3) if per_image else None}


def gflop_per_image(rows: list[dict]) -> float | None:
    """The model's GFLOP per image, from the first batch-1 row that counted them."""
    return next((r["gflops"] for r in rows if r.get("gflops") and r["batch"] == 1), None)


def peaks_text(peaks: dict) -> str:
    def one(k: str, v: dict) -> str:
        samples = v.get("samples") or []
        spread = f"best of {len(samples)} samples, lowest {min(samples):.0f}; " if len(samples) > 1 else ""
        return f"{k} {v['gflops_per_s']:.0f} GFLOP/s ({spread}{v.get('tool', 'onnxruntime MatMul')}, {v['n']}²)"

    return ", ".join(one(k, v) for k, v in peaks.items())


def write_report(folder: Path) -> str:
    """benchmarks/README.md from every ``<cpu tag>/<preset>.json`` under ``folder`` (one table each)."""
    results = {}
    for path in sorted(folder.glob("*/*.json")):
        results[f"{path.stem} preset (random-weight init run, layers 4,5) — {path.parent.name} CPU"] = \
            json.loads(path.read_text())
    text = report_markdown(results)
    write_bytes(folder / "README.md", text.encode())
    return text


def model_line(result: dict) -> str:
    """What a table timed; files written before the bench recorded it give only the FLOPs of its rows."""
    m = result.get("model")
    if m is None:
        per_image = gflop_per_image(result["results"])
        return (f"Model: {per_image:.2f} GFLOP per image; its sizes were not recorded by this older bench."
                if per_image else "")
    flops = (f"; {m['gflop_per_image']:.2f} GFLOP per image ({m['timesteps']} timesteps)"
             if m.get("gflop_per_image") else "")
    return (f"Model: {m['preset']} preset as of that date, {m['image_size']} px, {m['trunk']}, selected layers "
            f"{m['selected_layers']}, guide branch {m['guide_branch']}{flops}.")


def passes_text(result: dict) -> str:
    """How many passes timed each row (benches before 2026-11-27 timed every row once)."""
    n = max((len(x.get("p50_ms_samples", [])) for x in result["results"]), default=0)
    return f", every row timed in {n} passes and the faster p50 kept" if n > 1 else ""


def report_markdown(results: dict[str, dict]) -> str:
    """benchmarks/README.md from one or more bench JSON results ({title: result})."""
    lines = ["# Benchmarks", "", "Regenerated by `make bench` (figures below are from the machine named with each table; "
             "ratios measured in one run are what transfers between machines, absolute times do not).", ""]
    for title, r in results.items():
        m = r["machine"]
        peaks = r.get("gemm_peaks") or {"fp32": r["gemm_peak"]}  # files written before per-precision peaks
        lines += [f"## {title}", "",
                  f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs, ISA {isa.recorded(m)}, GPU {m['gpu'] or 'none'}; "
                  f"threads {r['threads'] or 'default'}; {r['iterations']} timed calls after {r['warmup']} warm-up"
                  f"{passes_text(r)}; "
                  f"GEMM peaks measured in the same run: {peaks_text(peaks)}; date {r.get('date', '?')}.", "",
                  *([model, ""] if (model := model_line(r)) else []),
                  "| backend | precision | batch | p50 ms | p90 ms | p99 ms | images/s | speedup vs torch eager fp32 | vs fastest torch | engine MB | GFLOP/s (% of own-precision peak) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for x in r["results"]:
            if "p50_ms" not in x:
                lines.append(f"| {x['backend']} | {x['precision']} | {x['batch']} | {x.get('error', '')} | | | | | | | |")
                continue
            sp = f"{x['speedup_vs_torch']:.2f}×" if x.get("speedup_vs_torch") else "–"
            fast = f"{x['speedup_vs_fastest_torch']:.2f}×" if x.get("speedup_vs_fastest_torch") else "–"
            gf = (f"{x['achieved_gflops_per_s']:.0f} ({100 * x['fraction_of_gemm_peak']:.0f} % of {x.get('peak_precision', 'fp32')})"
                  if x.get("fraction_of_gemm_peak") else f"{x['achieved_gflops_per_s']:.0f}" if x.get("achieved_gflops_per_s") else "–")
            lines.append(f"| {x['backend']} | {x['precision']} | {x['batch']} | {x['p50_ms']:.1f} | {x['p90_ms']:.1f} | "
                         f"{x['p99_ms']:.1f} | {x['images_per_s']:.1f} | {sp} | {fast} | {x.get('engine_mb', '–')} | {gf} |")
        if r.get("skipped"):
            lines += ["", "Not built here: " + "; ".join(r["skipped"]) + "."]
        for f in r.get("vs_benchmark_app", []):
            lines += ["", f"`{Path(f['engine']).name}` vs OpenVINO `benchmark_app` on the same IR (hint {f['hint']}, batch "
                          f"{f['batch']}, {vs_app_method(f)}): {f['p50_ms_dcube_edge']:.1f} vs "
                          f"{f['p50_ms_benchmark_app']:.1f} ms ({100 * f['overhead']:+.1f} %)."]
        for prof in r.get("profiles", []):
            top = ", ".join(f"{o['op_type']} {100 * o['share']:.0f} %" for o in prof["ops"][:5])
            lines += ["", f"Where `{Path(prof['engine']).name}` spends its time (batch {prof['batch']}, "
                          f"{prof['op_total_ms']:.1f} ms in ops, median per call): {top}."]
        if "truncation" in r:
            t, ts = r["truncation"], r["timestep_batching"]
            lines += ["", f"Truncation (ONNX Runtime fp32, batch {t['batch']}): trunk cut after layer "
                          f"{t['truncated_after_layer']}: {t['gflops_truncated']:.2f} vs {t['gflops_full']:.2f} GFLOP "
                          f"(FLOP ratio {t['flop_ratio']:.2f}), latency {t['p50_ms_truncated']:.1f} vs {t['p50_ms_full']:.1f} ms "
                          f"(speedup {t['latency_speedup']:.2f}, = {t['speedup_over_flop_ratio']:.2f} × the FLOP ratio).",
                      "", f"Timestep batching (ONNX Runtime fp32, batch {ts['batch']}): {len(ts['timesteps'])} timesteps in one "
                          f"call {ts['p50_ms_one_call']:.1f} ms vs {ts['p50_ms_separate_calls']:.1f} ms in separate calls "
                          f"({ts['speedup']:.2f}×)."]
        lines.append("")
    return "\n".join(lines)


def serve_load(engine: Path, senders: tuple[int, ...] = (1, 4, 16), per_sender: int = 16, log: Log = lambda _: None,
               images: list[Path] | None = None) -> list[dict]:
    """`dcube-edge serve` under load: for each sender count, a fresh server (subprocess, loopback) and that many
    concurrent C-STORE associations of ``per_sender`` instances each. Throughput is instances acknowledged and
    classified per second of wall time; latency is receipt → result from the ledger; batch sizes are the ones the
    batcher formed."""
    import shutil
    import socket
    import sqlite3
    import subprocess
    import sys
    import tempfile
    import threading
    import urllib.request

    from pydicom import dcmread
    from pydicom.uid import generate_uid
    from pynetdicom import AE, StoragePresentationContexts

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    manifest = runtimes.read(engine)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="dcube-serve-load-"))
    try:
        sources = _phantom_dicoms(work / "src", manifest.preprocess.size, per_sender * max(senders), images)
        for n in senders:
            spool, dport, hport = work / f"spool-{n}", port(), port()
            proc = subprocess.Popen([sys.executable, "-m", "dcube_edge.cli", "serve", str(engine), "--spool", str(spool),
                                     "--dicom-port", str(dport), "--http-port", str(hport)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                for _ in range(300):
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{hport}/healthz", timeout=1).read()
                        break
                    except OSError:
                        time.sleep(0.1)
                log(f"serve load: {n} sender(s) × {per_sender}")
                datasets = [dcmread(f) for f in sources[: n * per_sender]]
                for ds in datasets:  # fresh UIDs per round
                    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()

                def sender(chunk: list, dport: int = dport) -> None:
                    ae = AE(ae_title="LOAD")
                    ae.requested_contexts = StoragePresentationContexts[:100]
                    assoc = ae.associate("127.0.0.1", dport, ae_title="DCUBE")
                    for ds in chunk:
                        assoc.send_c_store(ds)
                    assoc.release()

                start = time.perf_counter()
                threads = [threading.Thread(target=sender, args=(datasets[i::n],)) for i in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                db = sqlite3.connect(spool / "ledger.sqlite")
                while db.execute("SELECT COUNT(*) FROM instances WHERE status = 'pending'").fetchone()[0]:
                    time.sleep(0.02)
                wall = time.perf_counter() - start
                got = db.execute("SELECT classified - received, batch FROM instances").fetchall()
                if len(got) != len(datasets):
                    raise RuntimeError(f"serve acknowledged {len(got)} of {len(datasets)} instances under load")
                lat = np.array([g[0] for g in got]) * 1e3
                batches = np.array([g[1] for g in got])
                rows.append({"senders": n, "instances": len(got), "throughput_per_s": len(got) / wall,
                             "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                             "batch_sizes": {int(b): int((batches == b).sum()) for b in np.unique(batches)}})
                db.close()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _phantom_dicoms(folder: Path, size: int, count: int, images: list[Path] | None) -> list[Path]:
    """Secondary-capture instances from the given images (or built-in phantoms) for load tests."""
    from PIL import Image
    from pydicom.uid import generate_uid

    from dcube_edge.phantoms import write_demo
    from dcube_edge.runtimes.dicom import write_secondary_capture

    if not images:
        write_demo(folder / "png", per_class=max(1, count // 3 + 1), size=size, seed=0)
        images = sorted((folder / "png").rglob("*.png"))
    study = generate_uid()
    return [write_secondary_capture(np.asarray(Image.open(images[i % len(images)]).convert("L")),
                                    folder / f"{i:05d}.dcm", study, "LOAD") for i in range(count)]

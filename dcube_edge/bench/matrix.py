"""The engines a bench times: every registered backend × precision built from one run (or reused when
an engine of the same run, options, export code and CPU class is there), the random-weight runs of
`make bench`, and the two figures that need several engines of one run (truncation, timestep batching)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dcube_edge import runtimes
from dcube_edge.runtimes import isa
from dcube_edge.runtimes.timing import time_fn

from .rows import engine_rows, inputs

if TYPE_CHECKING:
    from dcube_edge.export.options import ExportOptions
    from dcube_edge.rundir import Run  # torch: only for type checkers here

Log = Callable[[str], None]



def matrix_pairs() -> list[tuple[str, str]]:
    """Every registered engine backend × its precisions (the torch backend is timed by its own rows)."""
    return [(b.name, p) for b in runtimes.backends.REGISTRY.values() if b.matrix for p in b.precisions]


def available(backend: str, precision: str | None = None, flags: frozenset[str] | None = None) -> str | None:
    """None if the backend (at that precision) can be built on a CPU with ``flags`` (default: this one's), else
    the reason."""
    entry = runtimes.backends.get(backend)
    reason = entry.missing(build=True)
    if reason or not precision:
        return reason
    try:
        entry.make_builder().check(precision, isa.cpu_flags() if flags is None else flags)
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


def build_or_reuse(run: Run, out: Path, log: Log, **options) -> Path:
    """Export unless ``out`` already holds an engine of this run's current weights with these options."""
    from dcube_edge.export.build import export
    from dcube_edge.export.options import ExportOptions
    from dcube_edge.export.provenance import export_code

    opts = ExportOptions(**options)
    if (out / runtimes.manifest.MANIFEST).is_file():
        try:
            r = runtimes.read(out).record
        except runtimes.EngineError:
            r = None
        if r is not None and reusable(r, run, opts, export_code()):
            log(f"reusing {out} (same run hashes, options, export code and CPU class)")
            return out
    log(f"building {out.name}")
    export(run, out, opts, log=lambda *_: None)
    return out


def reusable(r: runtimes.EngineRecord, run: Run, opts: ExportOptions, code: str) -> bool:
    """Whether an engine was built from this run's current weights with these options, by this export code on
    this CPU class (an OpenVINO build times its choices on the CPU)."""
    g, prov = r.graph, r.provenance
    same_run = prov.run is not None and all(prov.run.hashes.get(f) == digest for f, digest in run.hashes().items())
    same_build = (r.backend, r.precision.name, r.spec.batch["max"]) == (opts.backend, opts.precision, opts.max_batch)
    same_trunk = not opts.full_trunk or (g.trunk_layers is not None and g.truncated_after_layer == g.trunk_layers - 1)
    same_steps = opts.timesteps is None or tuple(g.timesteps) == tuple(opts.timesteps)
    same_code = prov.tools.get("export_code") == code
    same_cpu = prov.built_on is not None and prov.built_on.isa_class == isa.tag()
    return all((same_run, same_build, same_trunk, same_steps, same_code, same_cpu))


def truncation_figure(run: Run, root: Path, batch: int, iterations: int, warmup: int, threads: int | None,
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


def timestep_figure(run: Run, root: Path, batch: int, iterations: int, warmup: int, threads: int | None,
                    log: Log) -> dict:
    """T timesteps in one engine call vs T calls of a one-timestep engine (ORT fp32)."""

    cfg = run.config
    one = build_or_reuse(run, root / "onnxruntime-fp32", log, max_batch=max(batch, 8))
    singles = [build_or_reuse(run, root / f"onnxruntime-fp32-t{t}", log, max_batch=max(batch, 8), timesteps=(t,))
               for t in cfg.timesteps]
    runners = [runtimes.make_runner(runtimes.read(p), threads=threads) for p in singles]
    batched = runtimes.make_runner(runtimes.read(one), threads=threads)
    x = {runtimes.read(one).input_name: inputs(batch, cfg.image_size)}
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

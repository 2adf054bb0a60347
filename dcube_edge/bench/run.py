"""``dcube-edge bench``: backends × precisions × batch sizes timed in one process, with the run's PyTorch
rows as the baseline, GEMM peaks measured in the same run, and on request the truncation and
timestep-batching figures, per-op profiles and the vendor-tool comparison."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dcube_edge import runtimes
from dcube_edge.errors import UserError
from dcube_edge.runtimes.timing import machine_info, peak_rss_mb

from .matrix import available, build_or_reuse, matrix_pairs, timestep_figure, truncation_figure
from .peaks import gemm_peaks, merge_peaks
from .report import gflop_per_image
from .rows import engine_rows, finish_rows, keep_faster
from .torch_rows import torch_rows
from .vs_app import benchmark_app_figure

if TYPE_CHECKING:
    from dcube_edge.rundir import Run  # torch: only for type checkers here

Log = Callable[[str], None]



def check(engines: list[Path], opts: BenchOptions, torch_run: Run | None) -> None:
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
              log: Log = lambda _: None, trusted_keys: list[Path] | None = None) -> dict:
    """Every engine (and, with ``matrix_run``, every backend × precision built from it) and the run's PyTorch
    rows, timed in this process; speedups and peak fractions computed within the run. A run is read once here
    and handed down as a :class:`~dcube_edge.rundir.Run`."""
    reference, matrix = _load_runs(torch_run, matrix_run)
    started = time.time()
    skipped: list[str] = []
    engines = list(engines)
    for e in engines if trusted_keys else ():
        runtimes.read(e, trusted_keys=trusted_keys)
    check(engines, opts, reference or matrix)
    batch_sizes, iterations, warmup, threads = opts.batch_sizes, opts.iterations, opts.warmup, opts.threads
    if matrix is not None:
        root = matrix.path / "engines"
        for backend, precision in matrix_pairs():
            reason = available(backend, precision)
            if reason:
                skipped.append(f"{backend}/{precision}: {reason}")
                continue
            engines.append(build_or_reuse(matrix, root / f"{backend}-{precision}", log, backend=backend,
                                          precision=precision, calibration=opts.calibration,
                                          max_batch=max(max(batch_sizes), 8)))
        reference = reference or matrix
    rounds = max(1, min(3, iterations // 5))  # a quick bench (tests) samples each peak once
    log("measuring GEMM peaks")
    peak = gemm_peaks(threads, rounds)

    def timed_rows(again: str = "") -> list[dict]:
        rows = []
        if reference is not None:
            log(f"timing PyTorch rows of {reference.path}{again}")
            rows += torch_rows(reference, batch_sizes, iterations, warmup, threads, opts.compile, opts.device)
        for e in engines:
            log(f"timing {e}{again}")
            rows += engine_rows(e, batch_sizes, iterations, warmup, threads)
        return rows

    rows = timed_rows()
    if rounds > 1:  # a full bench: every row and the peaks again, the faster kept (the machine may have been busier)
        keep_faster(rows, timed_rows(" again"))
        peak = merge_peaks(peak, gemm_peaks(threads, rounds))
    finish_rows(rows, peak)
    result: dict[str, object] = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d"),
                                 "options": asdict(opts), "threads": threads, "iterations": iterations,
                                 "warmup": warmup, "gemm_peaks": peak, "results": rows, "skipped": skipped}
    run = matrix or reference
    if run is not None:
        result["model"] = model_summary(run, rows)
    if opts.figures and run is not None:
        root = run.path / "engines"
        result["truncation"] = truncation_figure(run, root, 1, iterations, warmup, threads, log)
        result["timestep_batching"] = timestep_figure(run, root, 1, iterations, warmup, threads, log)
    add_figures(result, min(batch_sizes), iterations, threads, log, profile=opts.profile,
                vs_benchmark_app=opts.vs_benchmark_app)
    result["peak_rss_mb"] = peak_rss_mb()
    result["seconds"] = round(time.time() - started, 1)
    return result


def _load_runs(torch_run: Path | None, matrix_run: Path | None) -> tuple[Run | None, Run | None]:
    """The runs a bench times (``--torch``, ``--matrix``), each read once; torch is imported only where one is."""
    if torch_run is None and matrix_run is None:
        return None, None
    from dcube_edge.rundir import Run  # noqa: F811

    return (Run.load(torch_run) if torch_run is not None else None,
            Run.load(matrix_run) if matrix_run is not None else None)


def add_figures(result: dict, batch: int, iterations: int, threads: int | None, log: Log,
                profile: bool = False, vs_benchmark_app: bool = False) -> None:
    """Per-op profiles of every engine row and/or the benchmark_app comparison of every OpenVINO row."""
    if not (profile or vs_benchmark_app):
        return
    from dcube_edge.runtimes.profile import op_profile

    engines = dict.fromkeys(r["engine"] for r in result["results"] if not r.get("reference"))
    if profile:
        result["profiles"] = []
        for e in engines:
            log(f"profiling {e}")
            result["profiles"].append(op_profile(runtimes.read(e), batch, iterations, threads=threads))
    if vs_benchmark_app:
        result["vs_benchmark_app"] = []
        for e in engines:
            if runtimes.backends.get(runtimes.read(e).backend).vendor_benchmark:
                log(f"{e} vs benchmark_app")
                result["vs_benchmark_app"].append(benchmark_app_figure(Path(e), batch, threads=threads))


def model_summary(run: Run, rows: list[dict]) -> dict:
    """What was timed: the run's sizes (a preset's values change over time; tables of the same preset name
    from different dates may be of different models) and its FLOPs per image."""

    cfg = run.config
    per_image = gflop_per_image(rows)
    return {"preset": cfg.preset, "image_size": cfg.image_size, "trunk": f"U-ViT width {cfg.width}, depth {cfg.depth}, "
            f"patch {cfg.patch_size}", "guide_branch": f"ResNet {cfg.resnet_block} blocks {list(cfg.resnet_layers)}, "
            f"width {cfg.resnet_width}, {cfg.resnet_stem} stem", "selected_layers": list(cfg.selected_layers),
            "timesteps": len(cfg.timesteps), "gflop_per_image": round(per_image, 3) if per_image else None}

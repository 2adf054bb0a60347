"""A bench result as the terminal shows it: the latency table, effective precisions, the benchmark_app comparison,
per-op profiles and the truncation and timestep-batching figures (rich renderables)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from dcube_edge.runtimes.isa import recorded

from .report import peaks_text, quality_cells
from .vs_app import vs_app_method


def tables(result: dict) -> Iterator[RenderableType]:
    """The latency table, effective precisions, the benchmark_app comparison, per-op profiles and figures."""
    info = result["machine"]
    isa = recorded(info)
    gpu = f"; {info['gpu']}" if info["gpu"] else ""
    table = Table(title=f"latency on {info['cpu_model']} ({info['cpu_count']} cpus; {isa}{gpu})\n"
                        f"GEMM peaks: {peaks_text(result['gemm_peaks'])}")
    for col in ("engine", "backend", "precision", "batch", "p50 ms", "p90 ms", "p99 ms", "images/s", "vs eager",
                "vs best torch", "MB", "% own peak", "top-1 vs fp32", "AUC (Δ)"):
        table.add_column(col, justify="left" if col in ("engine", "backend", "precision") else "right")
    for r in result["results"]:
        name = Path(r["engine"]).name
        if "p50_ms" not in r:
            table.add_row(name, r["backend"], r["precision"], str(r["batch"]), f"[red]{escape(r['error'])}[/]")
            continue
        table.add_row(name, r["backend"], r["precision"], str(r["batch"]), f"{r['p50_ms']:.2f}",
                      f"{r['p90_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['images_per_s']:.1f}",
                      f"{r['speedup_vs_torch']:.2f}x" if r.get("speedup_vs_torch") else "–",
                      f"{r['speedup_vs_fastest_torch']:.2f}x" if r.get("speedup_vs_fastest_torch") else "–",
                      f"{r['engine_mb']:.1f}" if "engine_mb" in r else "–",
                      f"{100 * r['fraction_of_gemm_peak']:.0f}%" if r.get("fraction_of_gemm_peak") else "–",
                      *quality_cells(r))
    yield table
    if any(r.get("top1_agreement") is not None for r in result["results"]):
        yield ("top-1 vs fp32, AUC (Δ): each engine against fp32 PyTorch on the images its export measured parity on "
               "(its manifest's parity), not timed here")
    last_batch = result["results"][-1]["batch"] if result["results"] else None
    for r in result["results"]:
        if r.get("effective_precision") and r["batch"] == last_batch:
            yield f"{Path(r['engine']).name}: {r['effective_precision']}"
    for f in result.get("vs_benchmark_app", []):
        yield (f"{Path(f['engine']).name} batch {f['batch']}: {f['p50_ms_dcube_edge']:.2f} ms here vs "
               f"{f['p50_ms_benchmark_app']:.2f} ms in benchmark_app ({100 * f['overhead']:+.1f} %, hint {f['hint']}, "
               f"{vs_app_method(f)})")
    for prof in result.get("profiles", []):
        ptable = Table(title=f"{Path(prof['engine']).name} ({prof['backend']} {prof['precision']}, batch {prof['batch']}): "
                             f"{prof['op_total_ms']:.2f} ms in ops per call, median of {prof['iterations']} calls")
        for col in ("op type", "ms/call", "fastest", "share", "ops", "kernels"):
            ptable.add_column(col, justify="left" if col in ("op type", "kernels") else "right")
        for op in prof["ops"][:12]:
            ptable.add_row(op["op_type"], f"{op['ms']:.3f}", f"{op.get('min_ms', op['ms']):.3f}",
                           f"{100 * op['share']:.1f}%", str(op["ops_per_call"]),
                           escape(", ".join(op["kernels"])))
        yield ptable
    if "truncation" in result:
        t = result["truncation"]
        yield (f"truncation after layer {t['truncated_after_layer']}: FLOP ratio {t['flop_ratio']:.2f}x, "
               f"latency speedup {t['latency_speedup']:.2f}x ({t['speedup_over_flop_ratio']:.2f} of the FLOP ratio)")
        t = result["timestep_batching"]
        yield (f"{len(t['timesteps'])} timesteps in one call: {t['p50_ms_one_call']:.2f} ms vs "
               f"{t['p50_ms_separate_calls']:.2f} ms in separate calls ({t['speedup']:.2f}x)")

"""A bench result written as files: JSON, a CSV table (with the machine as a comment line), a PNG plot."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from dcube_edge import runtimes
from dcube_edge.runtimes import isa
from dcube_edge.runtimes.files import write_bytes, write_json


def write_outputs(result: dict, json_path: Path | None, csv_path: Path | None, plot_path: Path | None) -> None:
    if json_path is not None and str(json_path) != "-":
        write_json(json_path, result)
    if csv_path is not None:
        cols = ["backend", "precision", "batch", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "images_per_s",
                "speedup_vs_torch", "speedup_vs_fastest_torch", "engine_mb", "gflops", "achieved_gflops_per_s",
                "peak_precision", "fraction_of_gemm_peak", "effective_precision", "timesteps", "model",
                "top1_agreement", "auc", "auc_delta", "parity_data", "engine", "error"]
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
    precisions = list(runtimes.precisions.names())
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

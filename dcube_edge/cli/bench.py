"""`bench`: parse the options, call the library, render."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcube_edge.bench.run import BenchOptions

from .common import TRUSTED_KEY_HELP, app, emit_json, err, fail, ints, out, to_stdout, writable


@app.command()
def bench(targets: Annotated[list[Path], typer.Argument(help="Engine directories, or one run dir with --matrix.")],
          torch_run: Annotated[Path | None, typer.Option("--torch", help="Run dir: time PyTorch eager FP32 as the baseline.")] = None,
          matrix: Annotated[bool, typer.Option(help="Build (or reuse by hash) every available backend x precision of the run and time them all.")] = False,
          figures: Annotated[bool, typer.Option(help="Also measure the truncation and timestep-batching figures (needs a run).")] = BenchOptions.figures,
          calibration: Annotated[str | None, typer.Option(help="--matrix INT8 calibration data (default: the run's training data).")] = None,
          batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = ",".join(map(str, BenchOptions.batch_sizes)),
          iterations: Annotated[int, typer.Option(min=1, help="Timed calls per cell.")] = BenchOptions.iterations,
          warmup: Annotated[int, typer.Option(min=0, help="Untimed calls first.")] = BenchOptions.warmup,
          threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for every backend and torch.")] = None,
          compile: Annotated[bool, typer.Option("--compile", help="Also time torch.compile of each PyTorch precision (where it works; about a minute of compiling per row).")] = BenchOptions.compile,
          device: Annotated[str, typer.Option(help="cpu | cuda (torch baseline device; cuda adds torch fp16).")] = BenchOptions.device,
          profile: Annotated[bool, typer.Option("--profile", help="Also time every engine per op type (OpenVINO PERF_COUNT, ONNX Runtime profiler) at the smallest batch.")] = BenchOptions.profile,
          serve: Annotated[str | None, typer.Option("--serve", help="Instead: load-test `serve` on the engine with these numbers of concurrent DICOM senders, e.g. 1,4,16.")] = None,
          per_sender: Annotated[int, typer.Option(min=1, help="--serve: instances each sender stores.")] = 16,
          loop: Annotated[bool, typer.Option("--loop", help="Instead: frames/s of a 120-frame 640x480 YBR_FULL_422 JPEG cine loop through the engine, decoding, colour, tissue crop and resize timed beside the engine alone.")] = False,
          vs_benchmark_app: Annotated[bool, typer.Option("--vs-benchmark-app", help="Also compare each engine that has a vendor benchmark tool (OpenVINO's benchmark_app) on the same model file: six paired rounds, median of their ratios; smallest batch.")] = BenchOptions.vs_benchmark_app,
          trusted_key: Annotated[list[Path] | None, typer.Option("--trusted-key", help=TRUSTED_KEY_HELP)] = None,
          json_out: Annotated[Path | None, typer.Option("--json", help="Write results JSON here ('-' = stdout).")] = None,
          csv_out: Annotated[Path | None, typer.Option("--csv", help="Write a CSV table here.")] = None,
          plot_out: Annotated[Path | None, typer.Option("--plot", help="Write a PNG plot (latency vs precision, log scale).")] = None) -> None:
    """Latency (p50/p90/p99), images/s, engine size and GFLOP/s per engine and batch size, with the speedup
    over PyTorch eager FP32 measured in the same run."""
    writable(json_out)
    writable(csv_out, "--csv")
    writable(plot_out, "--plot")
    from dcube_edge import report
    from dcube_edge.bench import console, loop_throughput, run_bench, serve_load, write_outputs
    from dcube_edge.runtimes.timing import machine_info

    if serve:
        if len(targets) != 1:
            fail("--serve takes exactly one engine directory")
        counts = ints(serve, option="--serve")
        with err.status("load-testing serve …") as status:
            rows = serve_load(targets[0], counts, per_sender, log=lambda m: status.update(m))
        for item in report.serve_load(targets[0], rows, machine_info()):
            out.print(item)
        emit_json({"machine": machine_info(), "engine": str(targets[0]), "serve_load": rows}, json_out)
        return
    if loop:
        if len(targets) != 1:
            fail("--loop takes exactly one engine directory")
        with err.status("timing a cine loop …") as status:
            result = loop_throughput(targets[0], batch=max(ints(batch_sizes, option="--batch-sizes")), threads=threads,
                                     log=lambda m: status.update(m))
        result["machine"] = machine_info()
        for item in report.loop(result):
            out.print(item)
        emit_json(result, json_out)
        return
    if matrix and len(targets) != 1:
        fail("--matrix takes exactly one run directory")
    matrix_run, targets = (targets[0], []) if matrix else (None, targets)
    if figures and not (matrix_run or torch_run):
        fail("--figures needs a run: pass --matrix RUN or --torch RUN")
    opts = BenchOptions(batch_sizes=ints(batch_sizes, option="--batch-sizes"), iterations=iterations, warmup=warmup,
                        threads=threads, compile=compile, device=device, calibration=calibration, figures=figures,
                        profile=profile, vs_benchmark_app=vs_benchmark_app)
    with err.status("benchmarking …") as status:
        result = run_bench(list(targets), opts, torch_run=torch_run, matrix_run=matrix_run,
                           log=lambda m: status.update(m), trusted_keys=trusted_key)
    for item in console.tables(result):
        out.print(item)
    for s in result["skipped"]:
        err.print(f"skipped {s}")
    write_outputs(result, json_out, csv_out, plot_out)
    emit_json(result, json_out if to_stdout(json_out) else None)
    for path in (json_out, csv_out, plot_out):
        if path is not None and not to_stdout(path):
            err.print(f"wrote {path}")

"""``dcube-edge bench`` and ``make bench``: one module per concern (rows, torch rows, peaks, the engine
matrix, the vendor-tool comparison, outputs, the markdown report, the serve load test, a cine loop's throughput)."""
from .loop import loop_throughput
from .matrix import available, bench_run, matrix_pairs
from .outputs import write_outputs
from .report import write_report
from .run import BenchOptions, run_bench
from .serve_load import serve_load
from .vs_app import benchmark_app_figure, vs_app_method

__all__ = ["BenchOptions", "available", "bench_run", "benchmark_app_figure", "loop_throughput", "matrix_pairs", "run_bench",
           "serve_load", "vs_app_method", "write_outputs", "write_report"]

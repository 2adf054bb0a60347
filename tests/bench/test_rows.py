"""Bench rows (dcube_edge/bench/rows.py): two passes, the faster kept, speedups against the kept figures."""
import pytest


def test_bench_row_keeps_its_faster_pass():
    """A second pass's timing replaces the first only where it is faster, both p50s are kept, and the
    speedups are computed against the kept ones (a disturbed first minute must not inflate them)."""
    from dcube_edge.bench.report import passes_text
    from dcube_edge.bench.rows import finish_rows, keep_faster

    eager = {"engine": "run", "backend": "torch-eager", "precision": "fp32", "batch": 1}
    rows = [{**eager, "p50_ms": 300.0, "p90_ms": 320.0},
            {**eager, "batch": 8, "p50_ms": 1000.0},
            {"engine": "e", "backend": "openvino", "precision": "int8", "batch": 1, "p50_ms": 50.0}]
    keep_faster(rows, [{**eager, "p50_ms": 200.0, "p90_ms": 210.0}, {**eager, "batch": 8, "p50_ms": 1100.0},
                       {**eager, "precision": "bf16", "p50_ms": 1.0}])
    assert rows[0]["p50_ms"] == 200.0
    assert rows[0]["p90_ms"] == 210.0
    assert rows[0]["p50_ms_samples"] == [300.0, 200.0]
    assert rows[1]["p50_ms"] == 1000.0
    assert rows[1]["p50_ms_samples"] == [1000.0, 1100.0]
    assert len(rows) == 3  # a row the first pass did not time is not added
    assert "timed in 2 passes and the faster p50 kept" in passes_text({"results": rows})
    finish_rows(rows, {})
    assert rows[2]["speedup_vs_torch"] == pytest.approx(4.0)

"""GEMM peaks (dcube_edge/bench/peaks.py): the best of every sample seen."""


def test_gemm_peak_is_the_best_sample_of_every_measurement():
    """A peak keeps every sample it saw and reports the highest: one noisy sample must not set it."""
    from dcube_edge.bench.peaks import _best, merge_peaks
    from dcube_edge.bench.report import peaks_text

    before = {"int8": _best([{"gflops_per_s": 1200.0, "n": 2048, "tool": "t"}, {"gflops_per_s": 3300.0, "n": 1024, "tool": "t"}])}
    after = {"int8": _best([{"gflops_per_s": 4000.0, "n": 1024, "tool": "t"}]), "fp32": {"gflops_per_s": 300.0, "n": 1024}}
    merged = merge_peaks(before, after)
    assert merged["int8"]["gflops_per_s"] == 4000.0
    assert sorted(merged["int8"]["samples"]) == [1200.0, 3300.0, 4000.0]
    assert merged["fp32"]["samples"] == [300.0]
    assert merge_peaks(after, before)["int8"]["gflops_per_s"] == 4000.0
    assert "int8 4000 GFLOP/s (best of 3 samples, lowest 1200; t, 1024²)" in peaks_text(merged)

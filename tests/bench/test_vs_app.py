"""The comparison with the vendor benchmark tool (dcube_edge/bench/vs_app.py): the same IR, paired rounds."""
import numpy as np
import pytest

from dcube_edge.errors import UserError


def test_benchmark_app_comparison_runs_the_same_ir(engines):
    from dcube_edge.bench import benchmark_app_figure

    if ("openvino", "fp32") not in engines:
        pytest.skip("openvino not installed")
    fig = benchmark_app_figure(engines[("openvino", "fp32")], batch=1, count=2, seconds=1)
    assert fig["hint"] == "f32"
    assert fig["p50_ms_benchmark_app"] > 0
    assert fig["p50_ms_dcube_edge"] > 0
    # one ratio per paired round (both orders); the overhead is their median, not the ratio of overall medians
    assert len(fig["overhead_per_round"]) == 2
    assert all(np.isfinite(fig["overhead_per_round"]))
    assert fig["overhead"] == pytest.approx(float(np.median(fig["overhead_per_round"])), abs=1e-4)
    with pytest.raises(UserError, match="no vendor benchmark tool"):
        benchmark_app_figure(engines[("onnxruntime", "int8")])


def test_benchmark_app_figures_say_how_they_were_taken():
    """Tables regenerated from older JSON must not describe their ratio-of-medians figures as paired ones."""
    from dcube_edge.bench import vs_app_method

    paired = {"rounds": 6, "overhead": 0.01, "overhead_per_round": [0.0, 0.01, 0.2, -0.1, 0.02, 0.01]}
    assert vs_app_method(paired) == "6 paired rounds, median of the per-round ratios"
    assert vs_app_method({"rounds": 3, "overhead": 0.07}) == "3 alternated rounds, ratio of the medians"

"""TensorRT plans (export/tensorrt.py), on a CUDA workstation with TensorRT installed."""
import pytest

from dcube_edge import runtimes
from dcube_edge.export.build import ExportOptions, export

QUIET = dict(log=lambda *_: None)


def test_tensorrt_engine_builds_and_matches(engines, tiny_run, tmp_path):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs a CUDA workstation)")
    assert int(trt.__version__.split(".")[0]) >= 10
    for precision in ("fp32", "fp16", "int8"):
        out = tmp_path / f"trt-{precision}"
        export(tiny_run, out, ExportOptions(backend="tensorrt", precision=precision, calibration_size=48,
                                            max_batch=16), **QUIET)
        r = runtimes.read(out).record
        assert r.choices.strongly_typed
        assert (out / "timing.cache").is_file()
        assert r.parity.top1_agreement >= (1.0 if precision != "int8" else 0.9)

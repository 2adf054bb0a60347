"""Shared fixtures: one tiny model trained on built-in phantoms, exported once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is absent (tests read ../shared/data in place)")
    return path


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    from dcube_edge.phantoms import write_demo

    root = tmp_path_factory.mktemp("phantoms")
    write_demo(root, per_class=24, size=32, seed=0, val_per_class=8)
    return root


@pytest.fixture(scope="session")
def tiny_run(demo_data, tmp_path_factory) -> Path:
    from dcube_edge.config import Config
    from dcube_edge.train import train

    run = tmp_path_factory.mktemp("runs") / "tiny"
    # A head that has learned something (about 80 % on the phantoms' val split, 8 s more than 2 epochs at 42 %):
    # parity figures on near-tied logits measure rounding, not the engine.
    cfg = Config.from_preset("tiny", epochs_diffusion=2, steps_classifier=80, lr=1e-3, batch_size=16,
                             selection_samples=64)
    train(demo_data, run, cfg, log=lambda *_: None)
    return run


@pytest.fixture(scope="session")
def ort_engine(tiny_run, tmp_path_factory) -> Path:
    from dcube_edge.export.build import ExportOptions, export

    out = tmp_path_factory.mktemp("engines") / "tiny-ort-fp32"
    export(tiny_run, out, ExportOptions(max_batch=16), log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def engines(tiny_run, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Every backend × precision of the precision tests that this machine can build, exported once."""
    from dcube_edge.export.build import ExportOptions, export

    root = tmp_path_factory.mktemp("precision")
    pairs = [("onnxruntime", "fp16"), ("onnxruntime", "int8")]
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401

        from dcube_edge.bench import available

        pairs += [("openvino", p) for p in ("fp32", "fp16", "bf16", "int8") if available("openvino", p) is None]
    except ImportError:
        pass
    built = {}
    for backend, precision in pairs:
        out = root / f"{backend}-{precision}"
        export(tiny_run, out, ExportOptions(backend=backend, precision=precision, calibration_size=48, max_batch=16),
               log=lambda *_: None)
        built[(backend, precision)] = out
    return built


def pytest_itemcollected(item):
    """Under pytest-xdist (`make test` runs two workers), the tests on the session's exported engines share
    one worker, so the engines are built once; every other test goes wherever a worker is free."""
    if "engines" in getattr(item, "fixturenames", ()) and item.config.pluginmanager.hasplugin("xdist"):
        item.add_marker(pytest.mark.xdist_group("engines"))

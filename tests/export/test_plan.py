"""Every export option is checked against the run before any work (export/plan.py): a wrong one fails naming the
option, with nothing built, nothing run through PyTorch and nothing written."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from commands import WITHOUT_TORCH
from situations import EPYC, OLD, CountedReference, context

from dcube_edge.export.build import ExportError, ExportOptions, export


@pytest.mark.parametrize("options, message", [
    ({"operating_point": "sensitivity=1.7"}, "--operating-point 'sensitivity=1.7'"),
    ({"operating_point": "youden"}, "--operating-point youden needs two classes"),
    ({"positive_class": "nope"}, "--positive-class 'nope' is not one of the model's classes"),
    ({"class_codes": "benign=SCT"}, "--class-codes benign='SCT'"),
    ({"class_codes": "cyst=SCT:1"}, "--class-codes names ['cyst']"),
    ({"precision": "int8", "calibration": "/nonexistent/set"}, "--calibration /nonexistent/set: no such file or folder"),
    ({"operating_split": "/nonexistent/split"}, "--operating-split /nonexistent/split: no such folder"),
    ({"data": "/nonexistent/val"}, "--data /nonexistent/val: no such folder"),
    ({"modalities": "US,u/s"}, "--modality 'U/S' is not a DICOM Modality value")])
def test_a_wrong_option_fails_before_any_work_and_leaves_nothing(tiny_run, tmp_path, options, message):
    said, reference = [], CountedReference()
    with pytest.raises(ExportError, match=re.escape(message)):
        export(tiny_run, tmp_path / "engines" / "e", ExportOptions(**options),
               context=context(log=said.append, reference=reference))
    assert said == []  # nothing started, not even the class-codes note
    assert reference.runs == []
    assert not (tmp_path / "engines").exists()


def test_a_calibration_set_for_another_image_size_is_refused_first(tiny_run, demo_data, tmp_path):
    from dcube_edge.calibration import sets
    from dcube_edge.data import discover
    from dcube_edge.runtimes.preprocess import PreprocessSpec

    train = discover(demo_data).train
    other = sets.build(train.paths, train.labels, PreprocessSpec(64), 6, 0, tmp_path / "c64.npz")
    with pytest.raises(ExportError, match="--calibration .*rebuild it"):
        export(tiny_run, tmp_path / "e", ExportOptions(precision="int8", calibration=str(other)), context=context())
    assert not (tmp_path / "e").exists()


def test_export_refuses_what_the_cpu_cannot_run(tiny_run, tmp_path):
    """Given an EPYC's and an AVX2-only CPU's flags: OpenVINO fp16 needs AMX-FP16, bf16 a bf16 unit."""
    pytest.importorskip("openvino")
    with pytest.raises(ExportError, match="AMX-FP16.*use --precision bf16"):
        export(tiny_run, tmp_path / "a", ExportOptions(backend="openvino", precision="fp16"), context=context(flags=EPYC))
    with pytest.raises(ExportError, match="bf16 needs AMX-BF16 or AVX512-BF16"):
        export(tiny_run, tmp_path / "b", ExportOptions(backend="openvino", precision="bf16"), context=context(flags=OLD))
    with pytest.raises(ExportError, match="bf16 engines: --backend openvino"):
        export(tiny_run, tmp_path / "c", ExportOptions(backend="onnxruntime", precision="bf16"), context=context())
    assert not any(tmp_path.iterdir())


def test_the_cli_refuses_a_typo_before_it_imports_pytorch(tiny_run, tmp_path):
    """`export RUN --operating-point sensitivity=1.7` exits 2 with one line naming the option: checked before torch
    is imported (here it cannot be), let alone a model built."""
    argv = ["dcube-edge", "export", str(tiny_run), "--out", str(tmp_path / "e"), "--operating-point", "sensitivity=1.7"]
    code = WITHOUT_TORCH + f"sys.argv = {argv!r}\nfrom dcube_edge.cli import main\nmain()\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "error: --operating-point 'sensitivity=1.7'" in res.stderr
    assert "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []

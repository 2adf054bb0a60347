"""The Triton model repository entry (export/triton.py), from the same graph spec."""
from dcube_edge.export.build import ExportOptions, export

QUIET = dict(log=lambda *_: None)


def test_triton_repository_entry(tiny_run, tmp_path):
    export(tiny_run, tmp_path / "e", ExportOptions(max_batch=16, triton_repo=str(tmp_path / "repo")), **QUIET)
    entry = tmp_path / "repo" / "e"
    cfg = (entry / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in cfg
    assert "max_batch_size: 16" in cfg
    assert 'name: "images"' in cfg
    assert "dims: [ 1, 32, 32 ]" in cfg
    assert "dims: [ 3 ]" in cfg
    assert (entry / "1" / "model.onnx").read_bytes() == (tmp_path / "e" / "model.onnx").read_bytes()

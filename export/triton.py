"""A Triton Inference Server model repository entry for an engine dir, from the same graph spec."""
from __future__ import annotations

import shutil
from pathlib import Path

from dcube_edge.errors import UserError
from dcube_edge.runtimes import backends
from dcube_edge.runtimes.files import write_bytes
from dcube_edge.runtimes.manifest import MANIFEST, read
from dcube_edge.runtimes.record import EngineRecord
from dcube_edge.runtimes.spec import TensorSpec

DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}


def config_pbtxt(name: str, record: EngineRecord) -> str:
    spec = record.spec
    backend = backends.get(record.backend)
    if backend.triton is None:
        raise UserError(f"Triton has no platform for {backend.name} engines")
    platform, filename, gpu = backend.triton, backend.model_files[0], backend.gpu

    def tensor(t: TensorSpec) -> str:
        dims = ", ".join(str(d) for d in t.shape[1:])
        return f'  {{\n    name: "{t.name}"\n    data_type: {DTYPES[t.dtype]}\n    dims: [ {dims} ]\n  }}'

    return "\n".join([
        f'name: "{name}"', platform, f'default_model_filename: "{filename}"',
        f'max_batch_size: {spec.batch["max"]}',
        "input [", ",\n".join(tensor(t) for t in spec.inputs), "]",
        "output [", ",\n".join(tensor(t) for t in spec.outputs), "]",
        f"instance_group [ {{ count: 1\n  kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }} ]",
        f"dynamic_batching {{ preferred_batch_size: [ {spec.batch['opt']} ] }}", ""])


def write_model(engine_dir: Path, repo: Path, name: str | None = None, version: int = 1) -> Path:
    record = read(engine_dir).record
    name = name or engine_dir.name
    target = repo / name
    vdir = target / str(version)
    vdir.mkdir(parents=True, exist_ok=True)
    for f in backends.get(record.backend).model_files:
        shutil.copyfile(engine_dir / f, vdir / f)
    shutil.copyfile(engine_dir / MANIFEST, target / "dcube_manifest.json")
    write_bytes(target / "config.pbtxt", config_pbtxt(name, record).encode())
    return target

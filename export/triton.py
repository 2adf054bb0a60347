"""A Triton Inference Server model repository entry for an engine dir, from the same graph spec."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from dcube_edge.errors import UserError
from dcube_edge.runtimes import backends
from dcube_edge.runtimes.files import write_bytes

DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}


def config_pbtxt(name: str, manifest: dict) -> str:
    graph = manifest["graph"]
    backend = backends.get(manifest["backend"])
    if backend.triton is None:
        raise UserError(f"Triton has no platform for {backend.name} engines")
    platform, filename, gpu = backend.triton, backend.model_files[0], backend.gpu

    def tensor(t: dict) -> str:
        dims = ", ".join(str(d) for d in t["shape"][1:])
        return f'  {{\n    name: "{t["name"]}"\n    data_type: {DTYPES[t["dtype"]]}\n    dims: [ {dims} ]\n  }}'

    return "\n".join([
        f'name: "{name}"', platform, f'default_model_filename: "{filename}"',
        f'max_batch_size: {graph["batch"]["max"]}',
        "input [", ",\n".join(tensor(t) for t in graph["inputs"]), "]",
        "output [", ",\n".join(tensor(t) for t in graph["outputs"]), "]",
        f"instance_group [ {{ count: 1\n  kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }} ]",
        f"dynamic_batching {{ preferred_batch_size: [ {graph['batch']['opt']} ] }}", ""])


def write_model(engine_dir: Path, repo: Path, name: str | None = None, version: int = 1) -> Path:
    manifest = json.loads((engine_dir / "manifest.json").read_text())
    name = name or engine_dir.name
    target = repo / name
    vdir = target / str(version)
    vdir.mkdir(parents=True, exist_ok=True)
    for f in backends.get(manifest["backend"]).model_files:
        shutil.copyfile(engine_dir / f, vdir / f)
    shutil.copyfile(engine_dir / "manifest.json", target / "dcube_manifest.json")
    write_bytes(target / "config.pbtxt",
                config_pbtxt(name, manifest).encode())
    return target

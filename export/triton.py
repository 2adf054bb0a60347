"""A Triton Inference Server model repository entry for an engine dir, from the same graph spec."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from dcube_edge.runtimes.files import write_bytes

PLATFORM = {"onnxruntime": ('platform: "onnxruntime_onnx"', "model.onnx"),
            "tensorrt": ('platform: "tensorrt_plan"', "model.plan"),
            "openvino": ('backend: "openvino"', "model.xml")}
DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}


def config_pbtxt(name: str, manifest: dict, gpu: bool) -> str:
    graph = manifest["graph"]
    platform, filename = PLATFORM[manifest["backend"]]

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
    _, filename = PLATFORM[manifest["backend"]]
    files = [manifest["model_file"]] + (["model.bin"] if manifest["backend"] == "openvino" else [])
    for f in files:
        shutil.copyfile(engine_dir / f, vdir / f)
    shutil.copyfile(engine_dir / "manifest.json", target / "dcube_manifest.json")
    write_bytes(target / "config.pbtxt",
                config_pbtxt(name, manifest, gpu=manifest["backend"] == "tensorrt").encode())
    return target

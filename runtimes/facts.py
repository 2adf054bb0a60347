"""The facts that decide what an engine's output means — class names and their order, their codes, preprocessing, the
fixed timesteps, the graph's tensor names and shapes, backend and precision — written into a hashed model
file at export and compared with ``manifest.json`` at load. Editing the manifest alone (swapping two class
names, changing the image size) is then refused instead of silently mislabelling scans.

Where they live: ``model.onnx``'s ``metadata_props`` (every ONNX-derived engine keeps it: ONNX Runtime runs
it, the TensorRT plan and OpenVINO IR are built from it) or the safetensors header's ``__metadata__``
(the torch backend). Read without onnxruntime, openvino or torch."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from dcube_edge.errors import UserError

KEY = "dcube_edge.facts"  # which facts: the engine record's (record.FACTS)


class FactsMismatch(UserError):
    """The manifest's facts differ from those bound into the model file."""


def _text(facts: object) -> str:
    return json.dumps(facts, sort_keys=True, separators=(",", ":"))


def carrier(engine_dir: Path) -> Path | None:
    """The file that carries the facts in this engine dir, if any."""
    for name in ("model.onnx", "model.safetensors"):
        if (engine_dir / name).is_file():
            return engine_dir / name
    return None


def bind(engine_dir: Path, facts: dict[str, Any]) -> Path:
    """Write an engine's facts (:meth:`~.record.EngineRecord.facts`) into its carrier file, before the files are
    hashed."""
    path = carrier(engine_dir)
    if path is None:
        raise ValueError(f"{engine_dir} has neither model.onnx nor model.safetensors to carry the engine's facts")
    text = _text(facts)
    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path))
        for prop in [p for p in model.metadata_props if p.key == KEY]:
            model.metadata_props.remove(prop)
        model.metadata_props.add(key=KEY, value=text)
        onnx.save(model, str(path))
    else:
        from safetensors.numpy import load_file, save_file

        header = _safetensors_header(path).get("__metadata__", {})
        save_file(load_file(str(path)), str(path), metadata={**header, KEY: text})
    return path


def _safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        if size > 100_000_000:
            raise FactsMismatch(f"{path.name} has an implausible safetensors header ({size} bytes)")
        header: dict[str, Any] = json.loads(f.read(size))
        return header


def read(path: Path) -> dict[str, Any] | None:
    """The facts bound into ``path``, or None when it carries none."""
    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        text = next((p.value for p in model.metadata_props if p.key == KEY), None)
    else:
        text = _safetensors_header(path).get("__metadata__", {}).get(KEY)
    bound: dict[str, Any] | None = json.loads(text) if text else None
    return bound


def check(engine_dir: Path, stated: dict[str, Any]) -> None:
    """Raise :class:`FactsMismatch` naming the first of the manifest's ``stated`` facts the model file disagrees on."""
    path = carrier(engine_dir)
    bound = read(path) if path else None
    if path is None or bound is None:
        raise FactsMismatch(f"{engine_dir} carries no bound engine facts (exported by an older dcube-edge or "
                            "assembled by hand); re-export it")
    for key in stated:
        if _text(stated[key]) != _text(bound.get(key)):
            raise FactsMismatch(f"manifest.json says {key} = {json.dumps(stated[key])[:120]}, but {path.name} was "
                                f"built for {json.dumps(bound.get(key))[:120]}: the manifest was edited; re-export "
                                "the engine instead of editing it")

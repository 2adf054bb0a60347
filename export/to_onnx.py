"""PyTorch → ONNX with the graph spec: dynamic batch, fixed timesteps baked in, checker-clean."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx
import torch

from dcube_edge.runtimes.files import atomic_path

from .spec import GraphSpec


def export_onnx(model: torch.nn.Module, spec: GraphSpec, path: str | Path) -> Path:
    """Export ``model`` (in eval mode) to ``path`` atomically and check the result."""
    path = Path(path)
    model.eval()
    inp = spec.inputs[0]
    example = torch.zeros(spec.shape(inp, 2), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=spec.batch["min"], max=spec.batch["max"])
    with atomic_path(path) as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(model, (example,), str(tmp), input_names=[inp.name],
                          output_names=[o.name for o in spec.outputs], opset_version=spec.opset,
                          dynamic_shapes={"x": {0: batch}}, dynamo=True, external_data=False, verbose=False)
        onnx.checker.check_model(str(tmp), full_check=True)
    return path


def used_modules(path: str | Path) -> set[str]:
    """Module paths whose weights are in the graph (e.g. ``trunk.out_blocks.2``), for truncation checks."""
    model = onnx.load(str(path))
    names = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                names.add(prop.value)
    mods = set()
    for n in names:
        parts = n.replace("[", ".").replace("]", "").replace("'", "").replace(",", ".").replace(" ", "").split(".")
        for k in range(1, len(parts) + 1):
            mods.add(".".join(p for p in parts[:k] if p))
    return mods

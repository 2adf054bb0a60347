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
from dcube_edge.runtimes.spec import GraphSpec


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
        program = torch.onnx.export(model, (example,), input_names=[inp.name],
                                    output_names=[o.name for o in spec.outputs], opset_version=spec.opset,
                                    dynamic_shapes={"x": {0: batch}}, dynamo=True, verbose=False)
        if program is None:  # torch.onnx.export returns the program under dynamo=True
            raise RuntimeError("torch.onnx.export returned no ONNX program")
        proto = program.model_proto
        scope_node_names(proto)
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    return path


def module_scope(node: onnx.NodeProto) -> str:
    """The innermost torch module a node came from (``head.resnet.layer1.0.conv1``), or ''."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            parts = [p.strip(" '") for p in prop.value.strip("[]").split(",")]
            mods = [p for p in parts[:-1] if p]  # the last entry is the op, not a module
            return mods[-1] if mods else ""
    return ""


def scope_node_names(model: onnx.ModelProto) -> None:
    """Prefix node names with their module scope (``head.resnet.layer1.0.conv1/node_conv2d_3``), so
    quantizers (ORT ``nodes_to_exclude``, NNCF ``IgnoredScope`` patterns) can select by module.
    OpenVINO keeps these names as friendly names."""
    for node in model.graph.node:
        scope = module_scope(node)
        if scope and not node.name.startswith(scope + "/"):
            node.name = f"{scope}/{node.name}"


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

"""Where an engine came from, as its record states it: the tools and their versions, the hash of the export code,
the CPU it was built (and its choices timed) on."""
from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

from dcube_edge import __version__
from dcube_edge.runtimes import isa
from dcube_edge.runtimes.sections import BuiltOn

from .builder import Builder

# The sources that decide what an exported engine holds, by package: the graph (model definitions), export
# and calibration, and the record and facts bound into the engine. Their hash is the record's ``tools.export_code``.
GRAPH_SOURCES = {"dcube_edge": ("uvit.py", "diffusion.py", "resnet.py", "head.py", "operating_point.py"),
                 "dcube_edge.export": ("*.py",), "dcube_edge.calibration": ("*.py",),
                 "dcube_edge.runtimes": ("spec.py", "facts.py", "preprocess.py", "manifest.py", "record.py",
                                         "sections.py", "choices.py")}


def export_code() -> str:
    """sha256 (first 16 hex digits) of :data:`GRAPH_SOURCES` as installed: two engines of the same run and
    options are the same build only if this matches (the version number does not move between commits)."""
    digest = hashlib.sha256()
    for package, patterns in GRAPH_SOURCES.items():
        root = Path(str(importlib.import_module(package).__file__)).parent
        for path in sorted({p for pattern in patterns for p in root.glob(pattern)}):
            digest.update(f"{package}/{path.name}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def built_on(flags: frozenset[str]) -> BuiltOn:
    """The CPU an engine was exported on, as the export saw it (``flags``: its context's, the machine's unless a
    caller gave others)."""
    return BuiltOn(isa.cpu_model(), isa.tag(flags) + ("-capped" if isa.isa_cap() else ""), tuple(isa.notable(flags)),
                   isa.isa_cap())


def tool_versions(builder: Builder) -> dict[str, str]:
    import numpy as np
    import onnx
    import onnxruntime
    import torch

    return {"dcube_edge": __version__, "export_code": export_code(), "torch": torch.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            **builder.tool_versions()}

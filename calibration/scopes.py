"""Module scopes over graph node names: export names every ONNX node (and so every OpenVINO IR layer) after the
torch module it came from (``head.resnet.layer1.0.conv1/node_conv2d_3``), so a quantizer can leave whole modules
float by name. The one definition of "this node lies under that module", for the Q/DQ ONNX, NNCF and the IR."""
from __future__ import annotations

import re
from collections.abc import Iterable


def in_scopes(name: str, scopes: Iterable[str]) -> bool:
    """Whether a node or IR layer name falls under any of ``scopes`` (module names)."""
    return any(name.startswith(s + ".") or name.startswith(s + "/") for s in scopes)


def scope_patterns(scopes: Iterable[str]) -> list[str]:
    """``scopes`` as regular expressions over node names (NNCF's ignored-scope form)."""
    return [re.escape(s) + r"[./].*" for s in scopes]

"""dcube-edge: D-Cube diffusion hyper-feature classifiers, trained in PyTorch and run without it.

The stage folders of a source tree (``export/``, ``calibration/``, ``runtimes/``) are this package's
subpackages ``dcube_edge.export`` and so on: an install maps them (pyproject ``package-dir``). When Python
imports this file from a clone instead — a script run from the clone's root finds ``./dcube_edge`` before
the installed copy — a finder of last resort maps those three names to the clone's folders, so
``dcube_edge.runtimes`` is the clone's ``runtimes/`` and not an ImportError, whatever is installed."""
from __future__ import annotations

import importlib.abc as _abc
import importlib.util as _util
import sys as _sys
from pathlib import Path as _Path
from typing import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__version__ = "0.1.0"
STAGES = ("export", "calibration", "runtimes")


class _CloneStages(_abc.MetaPathFinder):
    """Finds ``dcube_edge.<stage>`` in the clone this package was imported from (after every other finder)."""

    def __init__(self, root: _Path) -> None:
        self.root = root

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        package, _, stage = name.partition(".")
        if package != __name__ or stage not in STAGES:
            return None
        init = self.root / stage / "__init__.py"
        return _util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])


_root = _Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and all((_root / s / "__init__.py").is_file() for s in STAGES):
    if not any(isinstance(f, _CloneStages) for f in _sys.meta_path):
        _sys.meta_path.append(_CloneStages(_root))

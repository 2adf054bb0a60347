"""dcube-edge: D-Cube diffusion hyper-feature classifiers, trained in PyTorch and run without it.

The stage folders of a source tree (``export/``, ``calibration/``, ``runtimes/``) are this package's
subpackages ``dcube_edge.export`` and so on: an install maps them (pyproject ``package-dir``). When Python
imports this file from a clone instead — a script run from the clone's root finds ``./dcube_edge`` before
the installed copy — the clone's root joins the package path, so ``dcube_edge.runtimes`` is the clone's
``runtimes/`` and not an ImportError, whatever is installed."""
from pathlib import Path as _Path

__version__ = "0.1.0"

_root = _Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and (_root / "runtimes" / "__init__.py").is_file():
    __path__.append(str(_root))  # noqa: F821 — a package's search path, set by the import system
del _Path, _root

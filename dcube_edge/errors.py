"""The project's one error hierarchy (torch-free, imported by every layer).

:class:`UserError` is what a user can cause and fix (bad data, options, files, an engine that must not be
used): the CLI prints its one-line message and exits 2. Any other :class:`DcubeError`, and any other
exception, is a fault of the program or its environment: exit 3 with a hint to rerun with ``--debug``.
``UserError`` is deliberately not a ``ValueError``: code that catches a library's ``ValueError`` (a parse, a
decoder) must not swallow a user error raised inside the same ``try`` and reword it as something else."""
from __future__ import annotations


class DcubeError(Exception):
    """Every error dcube-edge raises on purpose."""


class UserError(DcubeError):
    """Input the user can fix; the message says what is wrong and how to fix it."""


class Unavailable(UserError, RuntimeError):
    """Something this machine lacks (a backend's package, a GPU, a CPU unit); the message says how to get it."""


class Diverged(UserError, FloatingPointError):
    """Training produced a non-finite loss; the message says which and what to change."""


class BackendUnavailable(Unavailable):
    """A backend's Python package (or device) is not present; the message says how to install it."""


class RunnerNotActive(DcubeError, RuntimeError):
    """``infer`` on a runner that was never activated (or already deactivated): a caller's bug."""

"""The runner shape every backend shares (after Polygraphy): ``activate / infer / deactivate`` with a
checked lifecycle, a context manager, and (given the engine's graph spec) inputs validated before the
backend sees them."""
from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from dcube_edge.errors import BackendUnavailable, RunnerNotActive

__all__ = ["BackendUnavailable", "Runner", "RunnerNotActive"]

if TYPE_CHECKING:
    from .manifest import Manifest
    from .spec import GraphSpec


class Runner(ABC):
    name = "runner"
    op_times_per_call = False  # op_times() covers the last call (True) or every call since activation (False)

    def __init__(self, spec: GraphSpec | None = None) -> None:
        self.spec = spec
        self.active = False

    @classmethod
    @abstractmethod
    def from_manifest(cls, manifest: Manifest, threads: int | None = None, device: str | None = None,
                      profile: bool = False) -> Runner:
        """The runner for an engine dir (not yet activated). ``profile`` enables :meth:`op_times`."""

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def __del__(self) -> None:
        if getattr(self, "active", False):
            warnings.warn(f"{self.name} runner was left active: use it as a context manager or call deactivate()",
                          ResourceWarning, stacklevel=2)

    def activate(self) -> None:
        if not self.active:
            self.activate_impl()
            self.active = True

    def deactivate(self) -> None:
        if self.active:
            self.active = False
            self.deactivate_impl()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for a feed of named arrays (checked against the spec when the runner has one)."""
        if not self.active:
            raise RunnerNotActive(f"{self.name} runner is not active: use it as a context manager or call activate()")
        if self.spec is not None:
            self.spec.check_inputs(feed)
        return self.infer_impl(feed)

    def compiled_precision(self) -> str | None:
        """The precision the backend actually compiled to, where it can say (OpenVINO); None otherwise."""
        return None

    def op_times(self) -> list[tuple[str, float, str]]:
        """(op type, milliseconds, kernel) per executed op of the last inference(s), for runners built
        with ``profile=True``; the accumulation window is the backend's (see :mod:`.profile`)."""
        raise NotImplementedError(f"{self.name} runner has no per-op profile")

    @abstractmethod
    def activate_impl(self) -> None: ...

    @abstractmethod
    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def deactivate_impl(self) -> None:  # noqa: B027 — optional hook: most runners just drop references
        pass

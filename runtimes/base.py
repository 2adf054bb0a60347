"""The runner shape every backend shares (after Polygraphy): ``activate / infer / deactivate``,
a context manager, and the wall time of the last inference."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod

import numpy as np


class BackendUnavailable(RuntimeError):
    """The backend's Python package (or device) is not present; the message says how to install it."""


class Runner(ABC):
    name = "runner"

    def __init__(self) -> None:
        self.active = False
        self.last_inference_time: float | None = None

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def activate(self) -> None:
        if not self.active:
            self.activate_impl()
            self.active = True

    def deactivate(self) -> None:
        if self.active:
            self.deactivate_impl()
            self.active = False

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.active:
            raise RuntimeError(f"{self.name} runner is not active: use it as a context manager or call activate()")
        start = time.perf_counter()
        out = self.infer_impl(feed)
        self.last_inference_time = time.perf_counter() - start
        return out

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

"""A loaded engine: preprocessing from the manifest, batching to the engine's batch range, softmax."""
from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from dcube_edge.errors import DcubeError

from .base import Runner
from .decision import Decision
from .manifest import Manifest
from .preprocess import ImageError, load


class NonFiniteOutput(DcubeError, RuntimeError):
    """The engine produced NaN or Inf logits; the prediction is not to be trusted."""


@dataclass
class Prediction:
    """One file's result: ``label`` is the decision at the engine's operating point, ``probs`` the calibrated
    probabilities, ``argmax`` the most probable class (the two differ where the operating point moves a call)."""

    path: str
    label: str | None = None
    probs: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    argmax: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "probs": self.probs, "argmax": self.argmax, "error": self.error}

RECENT_CALLS = 1024  # engine timings kept per batch size


class Classifier:
    def __init__(self, manifest: Manifest, runner: Runner):
        self.manifest, self.runner = manifest, runner
        self.classes = manifest.classes
        self.spec = manifest.preprocess
        self.decision = Decision.of_record(manifest.record)
        # Engine milliseconds per call by batch size (decoding excluded): every call counted, the latest
        # RECENT_CALLS kept, so a long-running server's memory does not grow with the calls it serves.
        self.engine_calls: Counter[int] = Counter()
        self.engine_ms: dict[int, deque[float]] = defaultdict(lambda: deque(maxlen=RECENT_CALLS))

    def engine_time(self) -> dict:
        """Median engine milliseconds per call (of the latest RECENT_CALLS), by batch size, with call counts
        (what `bench` and OpenVINO's benchmark_app time, so the three can be compared)."""
        return {str(b): {"calls": self.engine_calls[b], "p50_ms": round(float(np.median(self.engine_ms[b])), 3)}
                for b in sorted(self.engine_calls)}

    def __enter__(self) -> Classifier:
        self.runner.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.deactivate()

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Preprocessed (N, 1, S, S) float32 → logits (N, classes), in chunks of the engine's max batch."""
        self.runner.activate()
        step = self.manifest.max_batch
        outs = []
        for i in range(0, len(images), step):
            feed = {self.manifest.input_name: np.ascontiguousarray(images[i:i + step], dtype=np.float32)}
            t0 = time.perf_counter()
            outs.append(self.runner.infer(feed)[self.manifest.output_name])
            batch = len(feed[self.manifest.input_name])
            self.engine_calls[batch] += 1
            self.engine_ms[batch].append((time.perf_counter() - t0) * 1e3)
        out = np.concatenate(outs) if outs else np.zeros((0, len(self.classes)), np.float32)
        if not np.isfinite(out).all():
            raise NonFiniteOutput(f"{self.manifest.backend}/{self.manifest.precision} engine returned NaN/Inf "
                                  f"logits for {int((~np.isfinite(out)).any(1).sum())} image(s)")
        return out.astype(np.float32)

    def _load(self, path: str | Path) -> tuple[Prediction, np.ndarray | None]:
        pred = Prediction(str(path))
        try:
            return pred, load(path, self.spec)
        except ImageError as e:
            pred.error = str(e)
            return pred, None

    def _predict(self, loaded: list[tuple[Prediction, np.ndarray | None]]) -> list[Prediction]:
        good = [(p, a) for p, a in loaded if a is not None]
        if good:
            try:
                probs = self.decision.probabilities(self.logits(np.stack([a for _, a in good])))
                for (pred, _), row, decided in zip(good, probs, self.decision.decide(probs)):
                    pred.label, pred.argmax = self.classes[int(decided)], self.classes[int(row.argmax())]
                    pred.probs = {c: float(v) for c, v in zip(self.classes, row)}
            except NonFiniteOutput as e:
                for pred, _ in good:
                    pred.error = str(e)
        return [p for p, _ in loaded]

    def classify(self, paths: Iterable[str | Path], batch_size: int = 32, workers: int = 1) -> Iterator[Prediction]:
        """Predictions in input order, streamed batch by batch (memory does not grow with the number of
        files); an unreadable file yields a Prediction with ``error`` set. ``workers`` threads decode."""
        it = iter(paths)
        pool = ThreadPoolExecutor(workers) if workers > 1 else None
        try:
            while chunk := list(islice(it, batch_size)):
                loaded = list(pool.map(self._load, chunk)) if pool else [self._load(p) for p in chunk]
                yield from self._predict(loaded)
        finally:
            if pool:
                pool.shutdown()

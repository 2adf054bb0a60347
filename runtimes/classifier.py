"""A loaded engine: files read into views (:mod:`.reader`), preprocessing from the manifest, batching to the engine's
batch range, calibrated probabilities, the decision at the operating point per view and per object."""
from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dcube_edge.errors import DcubeError

from . import instance, observed
from .base import Runner
from .decision import Decision
from .images import MAX_FRAMES
from .manifest import Manifest
from .predictions import Prediction, ViewResult
from .preprocess import ImageError, preprocess, source
from .reader import View

__all__ = ["Classifier", "NonFiniteOutput", "Prediction", "ViewResult"]


class NonFiniteOutput(DcubeError, RuntimeError):
    """The engine produced NaN or Inf logits; the prediction is not to be trusted."""


RECENT_CALLS = 1024  # engine timings kept per batch size


class _Pending:
    """One file on its way through: its views' results collect here until every view has one."""

    def __init__(self, pred: Prediction):
        self.pred, self.rows, self.views = pred, [], []
        self.waiting, self.exhausted = 0, False
        self.inputs: dict = {}  # view key → its input statistics, where observed

    def fail(self, message: str) -> None:
        self.pred.error = self.pred.error or message

    @property
    def done(self) -> bool:
        return self.exhausted and self.waiting == 0


class Classifier:
    def __init__(self, manifest: Manifest, runner: Runner):
        self.manifest, self.runner = manifest, runner
        self.classes = manifest.classes
        self.spec = manifest.preprocess
        self.decision = Decision.of_record(manifest.record)
        self.max_frames = MAX_FRAMES
        self.observe = False  # keep each view's input statistics (runtimes.observed; the node's monitor)
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

    def classify(self, paths: Iterable[str | Path], batch_size: int = 32, workers: int = 1,
                 max_frames: int | None = None) -> Iterator[Prediction]:
        """One :class:`Prediction` per file, in input order, streamed: the views of all files (every frame, every
        tissue region) go to the engine in batches of ``batch_size``, decoded frame by frame, so memory does not
        grow with the number of files or frames. An unreadable file yields a Prediction with ``error`` set; a
        file with more than ``max_frames`` frames (default :data:`MAX_FRAMES`) is refused. ``workers`` threads
        decode that many files ahead (each file's preprocessed views are then held until its turn)."""
        queue: deque[_Pending] = deque()
        batch: list[tuple[_Pending, View, np.ndarray]] = []
        for pending, views in self._read(paths, workers, max_frames or self.max_frames):
            queue.append(pending)
            for view, x in views:
                batch.append((pending, view, x))
                pending.waiting += 1
                if len(batch) >= batch_size:
                    self._run(batch)
                    batch = []
                    yield from self._ready(queue)
            pending.exhausted = True
            yield from self._ready(queue)
        if batch:
            self._run(batch)
        yield from self._ready(queue)

    def _open(self, path: str | Path, max_frames: int) -> tuple[_Pending, Iterator[tuple[View, np.ndarray]]]:
        pending = _Pending(Prediction(str(path)))
        try:
            src = source(path, self.spec, max_frames)
        except ImageError as e:
            pending.fail(str(e))
            return pending, iter(())
        pending.pred.number_of_frames, pending.pred.regions = src.number_of_frames, src.region_source
        pending.pred.notes, pending.pred.warnings = list(src.regions.notes), src.warnings

        def views() -> Iterator[tuple[View, np.ndarray]]:
            try:
                for view, gray in src.read():
                    x = preprocess(gray, self.spec)
                    if self.observe:
                        pending.inputs[view.key] = observed.of_view(gray.shape, x, self.spec.range, src.colour,
                                                                    src.number_of_frames, bool(src.regions.boxes))
                    yield view, x
            except ImageError as e:
                pending.fail(str(e))

        return pending, views()

    def _read(self, paths: Iterable[str | Path], workers: int, max_frames: int):
        """(pending, its preprocessed views) per file in order; with ``workers`` > 1, that many files decoded ahead."""
        if workers <= 1:
            yield from (self._open(p, max_frames) for p in paths)
            return

        def whole(path: str | Path) -> tuple[_Pending, list]:
            pending, views = self._open(path, max_frames)
            return pending, list(views)

        with ThreadPoolExecutor(workers) as pool:
            ahead: deque[Future] = deque()
            for path in paths:
                ahead.append(pool.submit(whole, path))
                if len(ahead) >= workers:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()

    def _run(self, batch: list[tuple[_Pending, View, np.ndarray]]) -> None:
        """Infer one batch of views and hand each its result."""
        try:
            probs = self.decision.probabilities(self.logits(np.stack([x for _, _, x in batch])))
        except NonFiniteOutput as e:
            for pending, _, _ in batch:
                pending.fail(str(e))
                pending.waiting -= 1
            return
        for (pending, view, _), row in zip(batch, probs):
            pending.views.append(view)
            pending.rows.append(row)
            pending.waiting -= 1

    def _ready(self, queue: deque[_Pending]) -> Iterator[Prediction]:
        """The finished files at the head of the queue, in input order."""
        while queue and queue[0].done:
            yield self._finish(queue.popleft())

    def _finish(self, pending: _Pending) -> Prediction:
        pred = pending.pred
        if pred.error or not pending.rows:
            pred.error = pred.error or "no views were read"
            return pred
        rows = np.stack(pending.rows)
        decided = self.decision.decide(rows)
        pred.frames = [ViewResult(v, self.classes[int(d)], self._probs(r), self.classes[int(r.argmax())],
                                  pending.inputs.get(v.key)) for v, r, d in zip(pending.views, rows, decided)]
        row = instance.combine(rows, self.spec.instance)
        pred.label = self.classes[int(self.decision.decide(row[None])[0])]
        pred.argmax, pred.probs = self.classes[int(row.argmax())], self._probs(row)
        pred.instance_policy = self.spec.instance
        return pred

    def _probs(self, row: np.ndarray) -> dict[str, float]:
        return {c: float(v) for c, v in zip(self.classes, row)}

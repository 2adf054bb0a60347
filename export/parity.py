"""An engine's logits against the FP32 torch reference (explicit figures; the pass/fail rule is the precision's
:class:`~dcube_edge.runtimes.precisions.Tolerance`), after Polygraphy's comparator: the images are loaded once and
the reference run once (:class:`ParityData`), then every engine variant a fallback makes is compared with them.

Top-1 agreement is reported as measured, and again with *near-tie flips* excused: images whose two
candidate classes are within the precision's ``tie_margin`` logits of each other in both the reference and the
engine. On a model with near-tied logits a rounding error of 1e-3 flips a label; counting that as a
disagreement measures the model's indecision, not the engine."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from dcube_edge.data import Split
from dcube_edge.metrics import auc, softmax
from dcube_edge.runtimes import make_runner
from dcube_edge.runtimes.manifest import Manifest
from dcube_edge.runtimes.preprocess import PreprocessSpec
from dcube_edge.runtimes.sections import Parity
from dcube_edge.runtimes.spec import GraphSpec, SpecMismatch

from .context import ExportContext
from .options import ExportError

if TYPE_CHECKING:
    import torch

NOISE_IMAGES = 16  # seeded uniform-noise images parity runs on where there are no labelled ones


def tie_flips(ref: np.ndarray, eng: np.ndarray, tie_margin: float) -> np.ndarray:
    """Per image: the top-1 labels differ, but both sides see a near-tie between the two classes (the
    reference's class leads the engine's by less than ``tie_margin`` logits in the reference, and trails it by
    less than ``tie_margin`` in the engine). Such a flip is rounding, not a different answer; a flip where
    either side is decisive is not excused."""
    rows = np.arange(len(ref))
    a, b = ref.argmax(1), eng.argmax(1)
    flips: np.ndarray = (a != b) & (ref[rows, a] - ref[rows, b] < tie_margin) & (eng[rows, b] - eng[rows, a] < tie_margin)
    return flips


def compare(reference: np.ndarray, engine: np.ndarray, labels: np.ndarray | None = None,
            tie_margin: float = 0.0, data: str = "") -> Parity:
    ref, eng = reference.astype(np.float64), engine.astype(np.float64)
    cos = (ref * eng).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(eng, axis=1), 1e-12)
    agree, ties = ref.argmax(1) == eng.argmax(1), tie_flips(ref, eng, tie_margin)
    parity = Parity(data=data, n=int(len(ref)), top1_agreement=float(agree.mean()), tie_margin=float(tie_margin),
                    near_tie_flips=int(ties.sum()), top1_agreement_beyond_ties=float((agree | ties).mean()),
                    logit_cosine_mean=float(cos.mean()), logit_cosine_min=float(cos.min()),
                    max_abs_logit_diff=float(np.abs(ref - eng).max()))
    if labels is None or not len(labels):
        return parity
    pr, pe = softmax(ref), softmax(eng)
    acc_ref, acc_eng = float((pr.argmax(1) == labels).mean()), float((pe.argmax(1) == labels).mean())
    auc_ref, auc_eng = auc(labels, pr), auc(labels, pe)
    return replace(parity, accuracy_reference=acc_ref, accuracy_engine=acc_eng, auc_reference=auc_ref,
                   auc_engine=auc_eng, accuracy_delta=acc_eng - acc_ref, auc_delta=auc_eng - auc_ref)


@dataclass(frozen=True)
class ParityData:
    """The images parity is measured on, loaded once, with the FP32 PyTorch model's logits for them, run once;
    the operating point reuses them when it is chosen on the same split."""

    images: np.ndarray
    labels: np.ndarray | None  # None: seeded noise, no labelled images were found
    source: str
    reference: np.ndarray
    split: Split | None

    @classmethod
    def load(cls, split: Split | None, preprocess: PreprocessSpec, graph: torch.nn.Module, seed: int,
             context: ExportContext) -> ParityData:
        """``split``'s images (or seeded noise without one) and the reference's logits for them: the reference's
        one run. A full-trunk graph's second output (trunk tokens) is not compared."""
        if split is not None and len(split):
            images, labels, source = split.load(preprocess), split.labels, "validation split"
        else:
            rng = np.random.default_rng(seed)
            size = preprocess.size
            images = rng.uniform(-1, 1, size=(NOISE_IMAGES, 1, size, size)).astype(np.float32)
            labels, source, split = None, f"{NOISE_IMAGES} seeded uniform-noise images (no validation data found)", None
        last_layer = getattr(graph, "last_layer", False)
        if last_layer:
            graph.last_layer = False  # type: ignore[assignment]
        try:
            reference = context.reference(graph, images)
        finally:
            if last_layer:
                graph.last_layer = last_layer  # type: ignore[assignment]
        return cls(images, labels, source, reference, split)


def engine_outputs(manifest: Manifest, images: np.ndarray, device: str | None = None
                   ) -> tuple[np.ndarray, str | None]:
    """(the engine's logits for ``images``, the precision its runtime compiled to, where it says), every output
    checked against the graph spec on the way. ``manifest`` may be the export's record of the work folder, not yet
    written."""
    spec: GraphSpec = manifest.spec
    runner = make_runner(manifest, device=device)
    step, got = spec.batch["max"], []
    with runner:
        for i in range(0, len(images), step):
            batch = images[i:i + step]
            outputs = runner.infer({spec.input.name: batch})
            try:
                spec.check_outputs(outputs, len(batch))
            except SpecMismatch as e:
                raise ExportError(f"the {manifest.backend} engine does not match its graph spec: {e}") from None
            got.append(outputs[spec.output.name])
        return np.concatenate(got), runner.compiled_precision()


def measure(manifest: Manifest, data: ParityData, tie_margin: float, device: str | None = None
            ) -> tuple[Parity, np.ndarray]:
    """The engine in ``manifest`` against the reference on ``data``: (parity, the engine's logits)."""
    got, runtime = engine_outputs(manifest, data.images, device)
    parity = compare(data.reference, got, data.labels, tie_margin, data.source)
    if runtime:
        parity = replace(parity, runtime_inference_precision=runtime)
    return parity, got

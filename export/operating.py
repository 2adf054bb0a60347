"""The operating point and the probability calibration (:mod:`dcube_edge.operating_point`) chosen on the engine's
own outputs for labelled images: the parity images when the operating split is theirs (the engine's logits for them
are already measured), else ``--operating-split``'s, run through the engine once. The engine's reference
(:mod:`.reference`) is recorded on the same images and logits."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dcube_edge import operating_point as decision
from dcube_edge.data import Split
from dcube_edge.runtimes.manifest import Manifest
from dcube_edge.runtimes.preprocess import PreprocessSpec
from dcube_edge.runtimes.sections import Calibration, OperatingPoint, Reference

from . import reference
from .parity import ParityData, engine_outputs
from .plan import Plan

NO_LABELS = OperatingPoint(rule="argmax", note="no labelled images to choose an operating point on: argmax kept "
                                               "(pass --operating-split DIR)")


@dataclass(frozen=True)
class Chosen:
    """What :func:`choose` decided, a line saying so, and the reference recorded on the same images."""

    point: OperatingPoint
    calibration: Calibration | None
    said: str
    reference: Reference | None = None


def choose(plan: Plan, manifest: Manifest, data: ParityData, parity_logits: np.ndarray) -> Chosen:
    """The operating point, the calibration and the reference of the engine in ``manifest``, whose logits for the
    parity images are ``parity_logits``."""
    classes = list(plan.config.classes)
    split: Split | None = plan.operating_split or data.split
    if split is None or not len(split):
        return Chosen(NO_LABELS, None, f"operating point: argmax ({NO_LABELS.note}); no reference recorded")
    if plan.operating_split is None:
        logits = parity_logits
        source = f"{plan.opts.data or decision.RUN_VALIDATION} ({len(split)} images)"
    else:
        logits, _ = engine_outputs(manifest, split.load(PreprocessSpec(plan.config.image_size)), plan.opts.device)
        source = f"{plan.opts.operating_split} ({len(split)} images)"
    point, calibration = decision.choose(plan.rule, classes, logits, split.labels, source)
    point = replace(point, images_sha256=split.images_sha256(classes))
    rule = decision.as_runtime(point, calibration, classes)
    said = (f"operating point: {rule.describe()}; temperature "
            f"{calibration.temperature:.3f} (ECE {calibration.ece_before:.3f} → {calibration.ece_after:.3f}) on {source}"
            + (f"; {point.note}" if point.note else ""))
    seen = reference.build(split, PreprocessSpec(plan.config.image_size), logits, rule, source)
    return Chosen(point, calibration, said + f"; reference recorded on {seen.instances} instance(s)", seen)

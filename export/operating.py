"""The engine run on labelled images after its build: its outputs checked against the graph spec, and the operating
point and calibration (:mod:`dcube_edge.operating_point`) chosen on them and bound into the engine's facts."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dcube_edge import operating_point as decision
from dcube_edge.runtimes import facts as engine_facts
from dcube_edge.runtimes import make_runner
from dcube_edge.runtimes.files import write_json
from dcube_edge.runtimes.manifest import MANIFEST
from dcube_edge.runtimes.manifest import read as read_manifest
from dcube_edge.runtimes.preprocess import PreprocessSpec
from dcube_edge.runtimes.spec import GraphSpec, SpecMismatch

from .job import ExportError, validation_split

if TYPE_CHECKING:
    from .job import BuildJob


def engine_outputs(engine_dir: Path, images: np.ndarray, spec: GraphSpec, backend: str, device: str | None = None
                   ) -> tuple[np.ndarray, str | None]:
    """(the engine's logits for ``images``, the precision its runtime compiled to, where it says), every output
    checked against the spec on the way."""
    runner = make_runner(read_manifest(engine_dir, verify=False), device=device)
    step, got = spec.batch["max"], []
    with runner:
        for i in range(0, len(images), step):
            batch = images[i:i + step]
            outputs = runner.infer({spec.input.name: batch})
            try:
                spec.check_outputs(outputs, len(batch))
            except SpecMismatch as e:
                raise ExportError(f"the {backend} engine does not match its graph spec: {e}") from None
            got.append(outputs[spec.output.name])
        return np.concatenate(got), runner.compiled_precision()


def bind_operating_point(job: BuildJob, manifest: dict, file_hashes) -> None:
    """Choose the operating point and the temperature on the engine's own logits for the operating split (default:
    the validation split), record them in the manifest, bind them into the engine's facts, hash the files again."""
    opts, cfg = job.opts, job.cfg
    split = validation_split(cfg, opts.operating_split or opts.data)
    source = (f"{opts.operating_split} ({len(split)} images)" if opts.operating_split else
              f"{decision.RUN_VALIDATION} ({len(split)} images)") if split is not None else ""
    if split is None or not len(split):
        manifest["decision"] = {"rule": "argmax", "note": "no labelled images to choose an operating point on: argmax "
                                                          "kept (pass --operating-split DIR)"}
        manifest["calibration"] = {}
    else:
        logits, _ = engine_outputs(job.work, split.load(PreprocessSpec(cfg.image_size)), job.spec, opts.backend,
                                   opts.device)
        manifest["decision"], manifest["calibration"] = decision.choose(
            opts.operating_point, opts.positive_class, list(cfg.classes), logits, split.labels, source)
        manifest["decision"]["images_sha256"] = split.images_sha256(list(cfg.classes))
        d, c = manifest["decision"], manifest["calibration"]
        job.log(f"operating point: {decision.as_runtime(d, c, list(cfg.classes)).describe()}; temperature "
                f"{c['temperature']:.3f} (ECE {c['ece_before']:.3f} → {c['ece_after']:.3f}) on {source}"
                + (f"; {d['note']}" if d.get("note") else ""))
    engine_facts.bind(job.work, manifest)
    manifest["files"] = file_hashes(job.work)
    write_json(job.work / MANIFEST, manifest)

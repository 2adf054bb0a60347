"""``dcube-edge export``: run dir → engine dir (docs/architecture.md, "Export").

Steps: every option checked against the run first (:func:`.plan.validate`: nothing is built, nothing written when
one is wrong) → the run's model wrapped as a :class:`FixedGraph` (truncated, timesteps baked in; the model is never
modified), or a baseline CNN as a :class:`BaselineGraph` → FP32 ONNX → the backend's :class:`~.builder.Builder`
(``build(job)``, returning what it made and chose) → parity against the FP32 torch model on the validation images,
loaded and run through torch once (:class:`.parity.ParityData`), the builder's fallbacks while it fails → the
operating point and calibration chosen on the engine's own outputs → :func:`publish`: the record composed from what
the steps returned, its facts bound into the model file, the files hashed and ``manifest.json`` written, once.
Everything is built in a hidden temporary folder and renamed into place at the end, so an interrupted export leaves
nothing that looks complete."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dcube_edge import rundir
from dcube_edge.data import record as data_record
from dcube_edge.head import FixedGraph
from dcube_edge.resnet import Baseline, BaselineGraph
from dcube_edge.runtimes import facts
from dcube_edge.runtimes.choices import Choices
from dcube_edge.runtimes.files import sha256
from dcube_edge.runtimes.manifest import Manifest
from dcube_edge.runtimes.preprocess import PreprocessSpec
from dcube_edge.runtimes.record import MANIFEST, EngineRecord, GraphSection, PrecisionSection, write
from dcube_edge.runtimes.sections import InputSection, Parity, Provenance, RunRef
from dcube_edge.runtimes.spec import GraphSpec

from . import codes, operating
from .builder import Built
from .context import ExportContext, Log
from .job import BuildJob
from .options import ExportError, ExportOptions
from .parity import ParityData, measure
from .plan import Plan, validate
from .provenance import built_on, tool_versions
from .to_onnx import export_onnx

__all__ = ["ExportError", "ExportOptions", "export", "export_plan"]

Graph = FixedGraph | BaselineGraph


@dataclass(frozen=True)
class Reached:
    """Where the parity loop ended: the last measurement, the backend's choices then, what each part computes in,
    the notes of every step taken, and the engine's logits for the parity images (reused by the operating point)."""

    parity: Parity
    choices: Choices | None
    parts: dict[str, str]
    note: str | None
    logits: np.ndarray


def export(run: str | Path | rundir.Run, out: str | Path, opts: ExportOptions, log: Log = print,
           context: ExportContext | None = None) -> EngineRecord:
    """Export ``run`` (a run directory, or one already loaded) to the engine directory ``out``; its record.
    ``context`` gives the machine, timers and registries (default: this machine's, logging to ``log``)."""
    context = context or ExportContext(log=log)
    return export_plan(validate(run, out, opts, context), context, run if isinstance(run, rundir.Run) else None)


def export_plan(plan: Plan, context: ExportContext, run: rundir.Run | None = None) -> EngineRecord:
    """The export of a checked :class:`Plan` (the CLI checks before it imports torch)."""
    run = run or rundir.Run(plan.run, plan.config)
    cfg, opts = run.config, plan.opts
    unmapped = [c for c in cfg.classes if c not in plan.class_codes]
    if unmapped:
        context.log(f"note: {'classes' if len(unmapped) > 1 else 'class'} {', '.join(unmapped)} without --class-codes: "
                    f"DICOM results code {'them' if len(unmapped) > 1 else 'it'} in the private scheme {codes.PRIVATE_SCHEME}, "
                    "which viewers cannot interpret")
    spec = GraphSpec.for_classifier(cfg.image_size, len(cfg.classes), opts.max_batch)
    graph = inference_graph(run, opts)
    if opts.full_trunk:
        spec = spec.with_trunk_output(len(graph.timesteps), 1 + cfg.grid ** 2, cfg.width)
    work = work_folder(plan.out)
    try:
        job = BuildJob(run, opts, plan.precision.name, plan.hint, plan.policy, spec, work, context)
        section = graph_section(plan, spec, graph)
        built = build(plan, job, graph)
        data = ParityData.load(plan.parity_split, PreprocessSpec(cfg.image_size), graph, cfg.seed, context)
        reached = reach_parity(plan, job, section, built, data)
        chosen = operating.choose(plan, draft(plan, job, section, built.model_file, reached.choices), data,
                                  reached.logits)
        context.log(chosen.said)
        record = compose(plan, job, section, built, reached)
        record = publish(work, plan.out, replace(record, decision=chosen.point, calibration=chosen.calibration,
                                                 reference=chosen.reference))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if opts.triton_repo:
        from .triton import write_model

        write_model(plan.out, Path(opts.triton_repo))
    return record


def inference_graph(run: rundir.Run, opts: ExportOptions) -> Graph:
    """What export traces: a D-Cube model as a :class:`FixedGraph` (timesteps baked in, trunk cut), a
    baseline CNN as itself."""
    model = run.model()
    if isinstance(model, Baseline):
        return BaselineGraph(model).eval()
    upto = run.config.num_layers - 1 if opts.full_trunk else None
    return FixedGraph(model, timesteps=opts.timesteps, upto=upto, last_layer=opts.full_trunk).eval()


def work_folder(out: Path) -> Path:
    """A hidden folder beside ``out`` to build in, readable by others as the umask allows."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the engine from the service account that runs it
    return work


def build(plan: Plan, job: BuildJob, graph: Graph) -> Built:
    """FP32 ONNX → the builder's engine files in ``job.work``; what it made."""
    cfg = job.cfg
    job.log(f"exporting ONNX (opset {job.spec.opset}, timesteps {list(graph.timesteps)}, "
            f"layers {list(graph.layers_used)}, trunk cut after layer {graph.upto})" if cfg.model == "dcube"
            else f"exporting ONNX (opset {job.spec.opset}, {cfg.model} baseline)")
    export_onnx(graph, job.spec, job.fp32_onnx)
    built = plan.builder.build(job)
    job.fp32_onnx.unlink()
    return built


def graph_section(plan: Plan, spec: GraphSpec, graph: Graph) -> GraphSection:
    """What the exported graph is: its tensors, classes and their codes, and what it was cut from."""
    cfg = plan.config
    return GraphSection(spec, tuple(cfg.classes), plan.class_codes, cfg.model, tuple(graph.timesteps),
                        tuple(graph.layers_used), graph.upto, cfg.num_layers if cfg.model == "dcube" else None,
                        cfg.preset, cfg.seed)


def draft(plan: Plan, job: BuildJob, section: GraphSection, model_file: str, choices: Choices | None) -> Manifest:
    """The work folder's engine as its runner needs it described (not written: the manifest is written at publish)."""
    record = EngineRecord(plan.backend.name, model_file, section, PreprocessSpec(job.cfg.image_size),
                          PrecisionSection(job.precision, {}), choices)
    return Manifest(job.work / MANIFEST, record)


def reach_parity(plan: Plan, job: BuildJob, section: GraphSection, built: Built, data: ParityData) -> Reached:
    """Measure parity; while it breaks the precision's tolerance, take the builder's next fallback and measure
    again (against the same reference logits)."""
    tolerance, builder = plan.precision.tolerance, plan.builder

    def measured(choices: Choices | None) -> tuple[Parity, np.ndarray]:
        engine = draft(plan, job, section, built.model_file, choices)
        return measure(engine, data, tolerance.tie_margin, job.opts.device)

    choices, notes = built.choices, list(built.notes)
    parity, logits = measured(choices)
    while not tolerance.holds(parity):
        step = builder.fallback(job, choices, parity)
        if step is None:
            break
        notes.append(step.note)
        job.log(step.note)
        choices = step.choices
        parity, logits = measured(choices)
    builder.finish(job.work)
    within = tolerance.holds(parity)
    parity = replace(parity, tolerance=tolerance.limits(), within_tolerance=within)
    if not within:
        job.log(f"warning: {job.precision} parity is outside its tolerance ({tolerance.limits()}); check `parity` in "
                "the manifest before deploying this engine")
    return Reached(parity, choices, builder.effective_precision(job, choices), "; then ".join(notes) or None, logits)


def compose(plan: Plan, job: BuildJob, section: GraphSection, built: Built, reached: Reached) -> EngineRecord:
    """The engine's record from what the steps returned (decision and files are added by the caller)."""
    cfg, run = job.cfg, job.run
    precision = PrecisionSection(job.precision, reached.parts, reached.note, built.recipe, built.calibration_set)
    provenance = Provenance(
        job.opts.intended_use or "",
        data_record(cfg.data_root, list(cfg.classes), cfg.val_fraction, cfg.split_seed, cfg.image_size),
        RunRef(str(run.path.resolve()), run.hashes()), tool_versions(plan.builder), built_on(job.context.flags),
        dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    return EngineRecord(plan.backend.name, built.model_file, section, PreprocessSpec(cfg.image_size), precision,
                        reached.choices, reached.parity, input=InputSection(plan.modalities), provenance=provenance)


def publish(work: Path, out: Path, record: EngineRecord) -> EngineRecord:
    """Bind the record's facts into the model file, hash every file, write ``manifest.json`` (the one write of an
    export), then rename the finished ``work`` folder to ``out``, replacing an older engine there."""
    facts.bind(work, record.facts())
    record = replace(record, files=file_hashes(work))
    write(work, record)
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        work.rename(out)
    return record


def file_hashes(engine_dir: Path) -> dict[str, str]:
    """sha256 of every file the manifest vouches for (all but itself)."""
    return {p.name: sha256(p) for p in sorted(engine_dir.iterdir()) if p.is_file() and p.name != MANIFEST}

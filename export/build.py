"""``dcube-edge export``: run dir → engine dir (docs/architecture.md, "Export").

Steps: the run's model wrapped as a :class:`FixedGraph` (truncated, timesteps baked in; the model is
never modified), or a baseline CNN as a :class:`BaselineGraph` → FP32 ONNX → the backend's
:class:`~.builder.Builder` from the registry (``check``, ``build(job)`` with :class:`BuildJob` making the
precision's ONNX and calibration data on request) → parity against the FP32 torch model on validation images,
outputs checked against the graph spec, the builder's fallbacks while parity fails → the operating point and
calibration chosen on the engine's own outputs → manifest. Everything is built in a hidden temporary folder and renamed into
place at the end, so an interrupted export leaves nothing that looks complete."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from dcube_edge import __version__, rundir
from dcube_edge.config import Config
from dcube_edge.data import record as data_record
from dcube_edge.errors import UserError
from dcube_edge.head import FixedGraph
from dcube_edge.loop import predict_logits
from dcube_edge.resnet import BaselineGraph
from dcube_edge.runtimes import backends, isa, precisions
from dcube_edge.runtimes import facts as engine_facts
from dcube_edge.runtimes import manifest as engine_manifest
from dcube_edge.runtimes.files import sha256, write_json
from dcube_edge.runtimes.manifest import MANIFEST
from dcube_edge.runtimes.preprocess import PreprocessSpec
from dcube_edge.runtimes.spec import GraphSpec

from . import codes, parity
from .builder import Builder
from .job import BuildJob, ExportError, ExportOptions, Log, calibration_file, validation_split
from .operating import bind_operating_point, engine_outputs
from .policy import for_model
from .to_onnx import export_onnx

__all__ = ["BuildJob", "ExportError", "ExportOptions", "calibration_file", "export", "validation_split"]


def check(opts: ExportOptions) -> tuple[backends.Backend, Builder, str | None]:
    """Backend, its builder and the precision hint, or a UserError saying why not — before anything is built."""
    try:
        backend, precision = backends.get(opts.backend), precisions.get(opts.precision)
    except UserError as e:
        raise ExportError(str(e)) from None
    if precision.name not in backend.precisions:
        others = [b for b in backends.offering(precision.name) if b != backend.name]
        raise ExportError(f"{backend.name} does not build {precision.name} engines (it builds "
                          f"{', '.join(backend.precisions)})" + (f"; {precision.name} engines: --backend {' or '.join(others)}"
                                                                if others else ""))
    if opts.triton_repo and backend.triton is None:
        raise ExportError(f"Triton has no platform for {backend.name} engines; drop --triton-repo or choose another backend")
    builder = backend.make_builder()
    try:
        hint = builder.check(precision.name)
    except isa.PrecisionUnavailable as e:
        raise ExportError(str(e)) from None
    return backend, builder, hint


def export(run: str | Path | rundir.Run, out: str | Path, opts: ExportOptions, log: Log = print) -> dict:
    """Export ``run`` (a run directory, or one already loaded) to the engine directory ``out``; the manifest."""
    out = Path(out)
    backend, builder, hint = check(opts)
    if out.exists() and not (out / MANIFEST).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an engine directory; refusing to replace it (choose another --out)")
    run = rundir.Run.of(run)
    if out.resolve() == run.path.resolve() or out.resolve() in run.path.resolve().parents:
        raise ExportError(f"--out {out} would replace the run directory itself; choose another --out")
    cfg = run.config
    policy = for_model(cfg.model)
    if cfg.model != "dcube" and (opts.full_trunk or opts.timesteps):
        raise ExportError(f"{run.path} is a {cfg.model} baseline run: it has no diffusion trunk or timesteps; "
                          "drop --full-trunk/--timesteps")
    class_codes = codes.parse(opts.class_codes, list(cfg.classes))
    unmapped = [c for c in cfg.classes if c not in class_codes]
    if unmapped:
        log(f"note: {'classes' if len(unmapped) > 1 else 'class'} {', '.join(unmapped)} without --class-codes: DICOM "
            f"results code {'them' if len(unmapped) > 1 else 'it'} in the private scheme {codes.PRIVATE_SCHEME}, "
            "which viewers cannot interpret")
    spec = GraphSpec.for_classifier(cfg.image_size, len(cfg.classes), opts.max_batch)
    graph = inference_graph(run, opts)
    if opts.full_trunk:
        spec = spec.with_trunk_output(len(graph.timesteps), 1 + cfg.grid ** 2, cfg.width)
    work = work_folder(out)
    try:
        job = BuildJob(run, opts, spec, work, hint, log, policy)
        manifest = build(job, backend, builder, graph, class_codes)
        reach_parity(job, builder, graph, manifest)
        bind_operating_point(job, manifest, file_hashes)
        publish(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if opts.triton_repo:
        from .triton import write_model

        write_model(out, Path(opts.triton_repo))
    return manifest


def inference_graph(run: rundir.Run, opts: ExportOptions) -> FixedGraph | BaselineGraph:
    """What export traces: a D-Cube model as a :class:`FixedGraph` (timesteps baked in, trunk cut), a
    baseline CNN as itself."""
    model = run.model()
    if run.config.model != "dcube":
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


def build(job: BuildJob, backend: backends.Backend, builder: Builder, graph: FixedGraph | BaselineGraph,
          class_codes: dict[str, dict[str, str]]) -> dict:
    """FP32 ONNX → the builder's engine files → the manifest (facts bound, files hashed), in ``job.work``."""
    cfg, run = job.cfg, job.run
    job.log(f"exporting ONNX (opset {job.spec.opset}, timesteps {list(graph.timesteps)}, "
            f"layers {list(graph.layers_used)}, trunk cut after layer {graph.upto})" if cfg.model == "dcube"
            else f"exporting ONNX (opset {job.spec.opset}, {cfg.model} baseline)")
    export_onnx(graph, job.spec, job.fp32_onnx)
    model_file, backend_info = builder.build(job)
    job.fp32_onnx.unlink()
    manifest = engine_manifest.compose(
        backend.name, job.precision, model_file, job.spec, list(cfg.classes), PreprocessSpec(cfg.image_size),
        intended_use=job.opts.intended_use or "", model=cfg.model,
        training_data=data_record(cfg.data_root, list(cfg.classes), cfg.val_fraction, cfg.split_seed, cfg.image_size),
        class_codes=class_codes, input={"modalities": [m.strip().upper() for m in (job.opts.modalities or "").split(",")
                                                      if m.strip()]},
        timesteps=list(graph.timesteps), selected_layers=list(graph.layers_used),
        truncated_after_layer=graph.upto,
        trunk_layers=cfg.num_layers if cfg.model == "dcube" else None, seed=cfg.seed, preset=cfg.preset,
        run={"path": str(run.path.resolve()), **run.hashes()},
        tools=tool_versions(builder), built_on=built_on(),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **job.info, **({backend.name: backend_info} if backend_info else {}),
        effective_precision=builder.effective_precision(job, backend_info))  # job.hint: as the builder left it
    engine_facts.bind(job.work, manifest)  # classes, preprocessing, timesteps, ... into the hashed model file
    manifest["files"] = file_hashes(job.work)
    write_json(job.work / MANIFEST, manifest)
    return manifest


def reach_parity(job: BuildJob, builder: Builder, graph: FixedGraph | BaselineGraph, manifest: dict) -> None:
    """Measure parity; while it breaks the precision's tolerance, take the builder's next fallback and measure
    again; record the tolerance, the verdict and the notes in ``manifest`` (written)."""
    tolerance = precisions.get(job.precision).tolerance
    manifest["parity"] = measure_parity(job.work, graph, job.cfg, job.opts, job.spec, job.log)
    info = manifest.get(manifest["backend"]) or {}
    notes = [info["hint_choice"]] if info.get("hint_choice") else []
    while not tolerance.holds(manifest["parity"]):
        note = builder.fallback(job, manifest, manifest["parity"])
        if not note:
            break
        # the backend changed the engine or how it runs: hash its files again and measure again
        notes.append(note)
        job.log(note)
        manifest["files"] = file_hashes(job.work)
        write_json(job.work / MANIFEST, manifest)
        manifest["parity"] = measure_parity(job.work, graph, job.cfg, job.opts, job.spec, job.log)
    if builder.finish(job.work):  # files kept only for a fallback: gone, so hash the rest again
        manifest["files"] = file_hashes(job.work)
    if notes:
        manifest["effective_precision"]["note"] = "; then ".join(notes)
    manifest["parity"]["tolerance"] = {k: v for k, v in vars(tolerance).items() if v is not None}
    manifest["parity"]["within_tolerance"] = tolerance.holds(manifest["parity"])
    if not manifest["parity"]["within_tolerance"]:
        job.log(f"warning: {job.precision} parity is outside its tolerance ({manifest['parity']['tolerance']}); "
                "check `parity` in the manifest before deploying this engine")
    write_json(job.work / MANIFEST, manifest)


def publish(work: Path, out: Path) -> None:
    """Rename the finished ``work`` folder to ``out``, replacing an older engine there."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        work.rename(out)


def measure_parity(engine_dir: Path, graph: FixedGraph | BaselineGraph, cfg: Config, opts: ExportOptions,
                   spec: GraphSpec, log: Log) -> dict:
    """Engine vs FP32 torch on the validation split (or, without data, on seeded random inputs); every
    engine output is checked against the spec on the way."""
    split = validation_split(cfg, opts.data)
    pre = PreprocessSpec(cfg.image_size)
    if split is not None and len(split):
        images, labels, source = split.load(pre), split.labels, "validation split"
    else:
        rng = np.random.default_rng(cfg.seed)
        images = rng.uniform(-1, 1, size=(16, 1, cfg.image_size, cfg.image_size)).astype(np.float32)
        labels, source = None, "16 seeded uniform-noise images (no validation data found)"
    last_layer, graph.last_layer = graph.last_layer, False
    try:
        ref = predict_logits(graph, images)
    finally:
        graph.last_layer = last_layer
    got, runtime = engine_outputs(engine_dir, images, spec, opts.backend, opts.device)
    report = {"data": source, **parity.compare(ref, got, labels, precisions.get(opts.precision).tolerance.tie_margin)}
    if runtime:
        report["runtime_inference_precision"] = runtime
    return report  # the CLI prints it once, as a table


def file_hashes(engine_dir: Path) -> dict[str, str]:
    """sha256 of every file the manifest vouches for (all but itself)."""
    return {p.name: sha256(p) for p in sorted(engine_dir.iterdir()) if p.is_file() and p.name != MANIFEST}


# The sources that decide what an exported engine holds, by package: the graph (model definitions), export
# and calibration, and the facts bound into the engine. Their hash is the manifest's ``tools.export_code``.
GRAPH_SOURCES = {"dcube_edge": ("uvit.py", "diffusion.py", "resnet.py", "head.py", "operating_point.py"),
                 "dcube_edge.export": ("*.py",), "dcube_edge.calibration": ("*.py",),
                 "dcube_edge.runtimes": ("spec.py", "facts.py", "preprocess.py", "manifest.py")}


def export_code() -> str:
    """sha256 (first 16 hex digits) of :data:`GRAPH_SOURCES` as installed: two engines of the same run and
    options are the same build only if this matches (the version number does not move between commits)."""
    import importlib

    digest = hashlib.sha256()
    for package, patterns in GRAPH_SOURCES.items():
        root = Path(importlib.import_module(package).__file__).parent
        for path in sorted({p for pattern in patterns for p in root.glob(pattern)}):
            digest.update(f"{package}/{path.name}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def built_on() -> dict:
    """The CPU an engine was exported (and its precision choices measured) on."""
    return {"cpu_model": isa.cpu_model(), "isa_class": isa.tag(), "isa": isa.notable(), "isa_cap": isa.isa_cap()}


def tool_versions(builder: Builder) -> dict:
    import onnxruntime

    return {"dcube_edge": __version__, "export_code": export_code(), "torch": torch.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            **builder.tool_versions()}

"""``dcube-edge export``: run dir → engine dir (DESIGN §4–6).

Steps: the run's model wrapped as a :class:`FixedGraph` (truncated, timesteps baked in; the model is
never modified) → FP32 ONNX → the backend's build half from the registry (:mod:`runtimes.backends`:
``check``, ``build(job)`` with :class:`BuildJob` making the precision's ONNX and calibration data on
request, ``tool_versions``) → parity against the FP32 torch model on validation images, outputs checked
against the graph spec → manifest. Everything is built in a hidden
temporary folder and renamed into place at the end, so an interrupted export leaves nothing that
looks complete."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from dcube_edge import __version__, rundir
from dcube_edge.calibration import sets as calib_sets
from dcube_edge.config import Config
from dcube_edge.data import DataError, Split, discover, read_split
from dcube_edge.errors import UserError
from dcube_edge.head import FixedGraph
from dcube_edge.loop import predict_logits
from dcube_edge.runtimes import backends, isa, make_runner
from dcube_edge.runtimes import facts as engine_facts
from dcube_edge.runtimes import manifest as engine_manifest
from dcube_edge.runtimes.files import sha256, write_json
from dcube_edge.runtimes.manifest import MANIFEST, PRECISIONS
from dcube_edge.runtimes.manifest import read as read_manifest
from dcube_edge.runtimes.preprocess import PreprocessSpec
from dcube_edge.runtimes.spec import GraphSpec, SpecMismatch

from . import parity
from .to_onnx import export_onnx

Log = Callable[[str], None]


class ExportError(UserError):
    """An export that cannot be done as asked; the message says why."""


@dataclass
class ExportOptions:
    backend: str = "onnxruntime"
    precision: str = "fp32"
    calibration: str | None = None  # .npz from `dcube-edge calibrate`, or a dataset folder
    calibration_size: int = calib_sets.DEFAULT_SIZE
    data: str | None = None  # parity data; default: the run's validation split
    max_batch: int = 64
    full_trunk: bool = False  # keep every trunk block (for the truncation benchmark)
    timesteps: tuple[int, ...] | None = None  # override the run's timesteps (timestep-batching benchmark)
    triton_repo: str | None = None
    device: str | None = None


def validation_split(cfg: Config, data: str | None) -> Split | None:
    """The images parity is measured on: ``data`` (a split folder or dataset root) or the run's val split."""
    if data:
        root = Path(data)
        if (root / "val").is_dir() or (root / "train").is_dir():
            return discover(root, cfg.val_fraction, cfg.split_seed).val
        return read_split(root, list(cfg.classes))[1]
    if cfg.data_root and Path(cfg.data_root).is_dir():
        try:
            return discover(cfg.data_root, cfg.val_fraction, cfg.split_seed).val
        except DataError:
            return None
    return None


def calibration_file(run: Path, cfg: Config, opts: ExportOptions) -> Path:
    """An existing .npz, or one built (and cached in the run dir) from a dataset folder's train split."""
    spec = PreprocessSpec(cfg.image_size)
    if opts.calibration and Path(opts.calibration).is_file():
        calib_sets.read(opts.calibration, spec)
        return Path(opts.calibration)
    source = opts.calibration or cfg.data_root
    if not source or not Path(source).is_dir():
        raise ExportError("int8 needs calibration images: pass --calibration DATA (a dataset folder) or a .npz "
                          "from `dcube-edge calibrate`")
    train = discover(source, cfg.val_fraction, cfg.split_seed).train
    key = f"{Path(source).resolve()}|{opts.calibration_size}|{cfg.seed}|{cfg.image_size}"
    cached = run / "calibration" / f"calib-{opts.calibration_size}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"
    if not cached.is_file():
        calib_sets.build(train.paths, train.labels, spec, opts.calibration_size, cfg.seed, cached)
    return cached


@dataclass
class BuildJob:
    """What a backend's ``build(job)`` receives: the FP32 ONNX in ``work`` and, on request, the precision's
    ONNX and the calibration images. What they add to the manifest collects in ``info``."""

    run: Path
    cfg: Config
    opts: ExportOptions
    spec: GraphSpec
    work: Path
    hint: str | None
    log: Log
    info: dict = field(default_factory=dict)

    @property
    def precision(self) -> str:
        return self.opts.precision

    @property
    def fp32_onnx(self) -> Path:
        return self.work / "model.fp32.onnx"

    def calibration_file(self) -> Path:
        calib = calibration_file(self.run, self.cfg, self.opts)
        self.info["calibration"] = calib_sets.describe(calib)
        return calib

    def calibration_images(self):
        return calib_sets.read(self.calibration_file(), PreprocessSpec(self.cfg.image_size))[0]

    def precision_onnx(self, precision: str | None = None) -> Path:
        """``work/model.onnx`` at ``precision`` (default: the export's): fp32 copied, fp16 mixed, int8 Q/DQ."""
        precision = precision or self.precision
        out = self.work / "model.onnx"
        if precision in ("fp32", "bf16"):
            shutil.copyfile(self.fp32_onnx, out)
        elif precision == "fp16":
            from dcube_edge.calibration import fp16

            fp16.convert(self.fp32_onnx, out)
            self.info["fp16"] = {"tool": "onnxconverter_common.float16", "kept_fp32": fp16.KEEP_FP32, "io": "float32"}
        else:
            from dcube_edge.calibration import int8

            self.info["int8"] = int8.quantize(self.fp32_onnx, out, self.calibration_images(), self.spec.input.name)
        return out


def check(opts: ExportOptions) -> tuple[backends.Backend, object, str | None]:
    """Backend, its build module and the precision hint, or an ExportError / BackendUnavailable saying why
    not — before anything is built."""
    try:
        backend = backends.get(opts.backend)
    except ValueError as e:
        raise ExportError(str(e)) from None
    if opts.precision not in PRECISIONS:
        raise ExportError(f"unknown precision {opts.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if opts.precision not in backend.precisions:
        others = [b for b in backends.offering(opts.precision) if b != backend.name]
        raise ExportError(f"{backend.name} does not build {opts.precision} engines (it builds "
                          f"{', '.join(backend.precisions)})" + (f"; {opts.precision} engines: --backend {' or '.join(others)}"
                                                                if others else ""))
    if opts.triton_repo and backend.triton is None:
        raise ExportError(f"Triton has no platform for {backend.name} engines; drop --triton-repo or choose another backend")
    builder = backend.build_module()
    try:
        hint = builder.check(opts.precision)
    except isa.PrecisionUnavailable as e:
        raise ExportError(str(e)) from None
    return backend, builder, hint


def export(run: str | Path, out: str | Path, opts: ExportOptions, log: Log = print) -> dict:
    run, out = Path(run), Path(out)
    backend, builder, hint = check(opts)
    if out.exists() and not (out / MANIFEST).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an engine directory; refusing to replace it (choose another --out)")
    if out.resolve() == run.resolve() or out.resolve() in run.resolve().parents:
        raise ExportError(f"--out {out} would replace the run directory itself; choose another --out")
    cfg, model = rundir.load_model(run)
    if cfg.model != "dcube":
        raise ExportError(f"{run} is a {cfg.model} baseline run; export takes D-Cube runs")
    spec = GraphSpec.for_classifier(cfg.image_size, len(cfg.classes), opts.max_batch)
    upto = cfg.num_layers - 1 if opts.full_trunk else None
    graph = FixedGraph(model, timesteps=opts.timesteps, upto=upto, last_layer=opts.full_trunk).eval()
    if opts.full_trunk:
        spec = spec.with_trunk_output(len(graph.timesteps), 1 + cfg.grid ** 2, cfg.width)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the engine from the service account that runs it
    try:
        job = BuildJob(run, cfg, opts, spec, work, hint, log)
        log(f"exporting ONNX (opset {spec.opset}, timesteps {list(graph.timesteps)}, "
            f"layers {list(model.layers_used)}, trunk cut after layer {graph.upto})")
        export_onnx(graph, spec, job.fp32_onnx)
        model_file, backend_info = builder.build(job)
        job.fp32_onnx.unlink()
        hint = job.hint  # a builder may have measured the hint it was given and changed it
        parts = getattr(builder, "effective_precision", lambda p, h, i: {"all": p})
        manifest = engine_manifest.compose(
            backend.name, opts.precision, model_file, spec, list(cfg.classes), PreprocessSpec(cfg.image_size),
            timesteps=list(graph.timesteps), selected_layers=list(model.layers_used),
            truncated_after_layer=graph.upto, trunk_layers=cfg.num_layers, seed=cfg.seed, preset=cfg.preset,
            run={"path": str(run.resolve()), **{f: sha256(run / f) for f in
                                                (rundir.CONFIG, rundir.DIFFUSION, rundir.CLASSIFIER)}},
            tools=tool_versions(builder), built_on=built_on(),
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **job.info, **({backend.name: backend_info} if backend_info else {}),
            effective_precision=parts(opts.precision, hint, backend_info))
        engine_facts.bind(work, manifest)  # classes, preprocessing, timesteps, ... into the hashed model file
        manifest["files"] = file_hashes(work)
        write_json(work / MANIFEST, manifest)
        tolerance = spec.tolerance(opts.precision)
        manifest["parity"] = measure_parity(work, graph, cfg, opts, spec, log)
        fallback = getattr(builder, "fallback", None)
        notes = [backend_info["hint_choice"]] if backend_info and backend_info.get("hint_choice") else []
        while fallback and not tolerance.holds(manifest["parity"]):
            note = fallback(work, manifest, manifest["parity"])
            if not note:
                break
            # the backend changed the engine or how it runs: hash its files again and measure again
            notes.append(note)
            log(note)
            manifest["files"] = file_hashes(work)
            write_json(work / MANIFEST, manifest)
            manifest["parity"] = measure_parity(work, graph, cfg, opts, spec, log)
        finish = getattr(builder, "finish", None)
        if finish and finish(work):  # files kept only for a fallback: gone, so hash the rest again
            manifest["files"] = file_hashes(work)
        if notes:
            manifest["effective_precision"]["note"] = "; then ".join(notes)
        manifest["parity"]["tolerance"] = {k: v for k, v in vars(tolerance).items() if v is not None}
        manifest["parity"]["within_tolerance"] = tolerance.holds(manifest["parity"])
        if not manifest["parity"]["within_tolerance"]:
            log(f"warning: {opts.precision} parity is outside its tolerance ({manifest['parity']['tolerance']}); "
                "check `parity` in the manifest before deploying this engine")
        write_json(work / MANIFEST, manifest)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            work.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if opts.triton_repo:
        from .triton import write_model

        write_model(out, Path(opts.triton_repo))
    return manifest


def measure_parity(engine_dir: Path, graph: FixedGraph, cfg: Config, opts: ExportOptions,
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
    runner = make_runner(read_manifest(engine_dir, verify=False), device=opts.device)
    step = spec.batch["max"]
    got = []
    with runner:
        for i in range(0, len(images), step):
            batch = images[i:i + step]
            outputs = runner.infer({spec.input.name: batch})
            try:
                spec.check_outputs(outputs, len(batch))
            except SpecMismatch as e:
                raise ExportError(f"the {opts.backend} engine does not match its graph spec: {e}") from None
            got.append(outputs[spec.output.name])
        runtime = runner.compiled_precision()
    report = {"data": source, **parity.compare(ref, np.concatenate(got), labels, spec.tolerance(opts.precision).tie_margin)}
    if runtime:
        report["runtime_inference_precision"] = runtime
    return report  # the CLI prints it once, as a table


def file_hashes(engine_dir: Path) -> dict[str, str]:
    """sha256 of every file the manifest vouches for (all but itself)."""
    return {p.name: sha256(p) for p in sorted(engine_dir.iterdir()) if p.is_file() and p.name != MANIFEST}


# The sources that decide what an exported engine holds, by package: the graph (model definitions), export
# and calibration, and the facts bound into the engine. Their hash is the manifest's ``tools.export_code``.
GRAPH_SOURCES = {"dcube_edge": ("uvit.py", "diffusion.py", "resnet.py", "head.py"),
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


def tool_versions(builder) -> dict:
    import onnxruntime

    return {"dcube_edge": __version__, "export_code": export_code(), "torch": torch.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            **builder.tool_versions()}

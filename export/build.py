"""``dcube-edge export``: run dir → engine dir (DESIGN §4–6).

Steps, each a small builder: FP32 ONNX from torch (truncated, timesteps baked in) → the precision's
ONNX (fp16 mixed / int8 QDQ) → the backend's model file (ONNX as is, OpenVINO IR, TensorRT plan) →
parity against the FP32 torch model on validation images → manifest. Everything is built in a hidden
temporary folder and renamed into place at the end, so an interrupted export leaves nothing that
looks complete."""
from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from dcube_edge.calibration import sets as calib_sets
from dcube_edge.runtimes import isa, make_runner
from dcube_edge.runtimes.files import sha256, write_json
from dcube_edge.runtimes.manifest import BACKENDS, FORMAT, FORMAT_VERSION, MANIFEST, PRECISIONS
from dcube_edge.runtimes.manifest import read as read_manifest
from dcube_edge.runtimes.preprocess import PreprocessSpec

from dcube_edge import __version__, rundir
from dcube_edge.config import Config
from dcube_edge.data import DataError, Split, discover, read_split

from . import parity
from .spec import GraphSpec
from .to_onnx import export_onnx


class ExportError(ValueError):
    """An export that cannot be done as asked; the message says why."""


@dataclass
class ExportOptions:
    backend: str = "onnxruntime"
    precision: str = "fp32"
    calibration: str | None = None  # .npz from `dcube-edge calibrate`, or a dataset folder
    calibration_size: int = calib_sets.DEFAULT_SIZE
    calibration_method: str = "minmax"
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


def precision_onnx(fp32: Path, out: Path, precision: str, cfg: Config, run: Path, opts: ExportOptions,
                   spec: GraphSpec) -> tuple[Path, dict]:
    """The ONNX that carries the precision (TensorRT reads it strongly typed; ORT runs it on CPU)."""
    if precision == "fp32" or opts.backend == "openvino":  # OpenVINO: precision is a compile hint / NNCF
        if fp32 != out:
            shutil.copyfile(fp32, out)
        return out, {}
    if precision == "fp16":
        from dcube_edge.calibration import fp16

        fp16.convert(fp32, out)
        return out, {"fp16": {"tool": "onnxconverter_common.float16", "kept_fp32": fp16.KEEP_FP32, "io": "float32"}}
    from dcube_edge.calibration import int8

    calib = calibration_file(run, cfg, opts)
    images, _ = calib_sets.read(calib, PreprocessSpec(cfg.image_size))
    info = int8.quantize(fp32, out, images, spec.inputs[0].name, opts.calibration_method)
    return out, {"int8": info, "calibration": calib_sets.describe(calib)}


def export(run: str | Path, out: str | Path, opts: ExportOptions,
           log: Callable[[str], None] = print) -> dict:
    run, out = Path(run), Path(out)
    if opts.backend not in BACKENDS:
        raise ExportError(f"unknown backend {opts.backend!r}; choose one of {', '.join(BACKENDS)}")
    if opts.precision not in PRECISIONS:
        raise ExportError(f"unknown precision {opts.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if opts.backend == "tensorrt":
        from .tensorrt import require_tensorrt

        require_tensorrt()
    hint = None
    if opts.backend == "openvino":
        from .openvino import require_openvino

        require_openvino()
        try:
            hint = isa.openvino_hint(opts.precision)
        except isa.PrecisionUnavailable as e:
            raise ExportError(str(e)) from None
    elif opts.precision == "bf16":
        raise ExportError(f"bf16 engines are OpenVINO CPU engines (--backend openvino); {opts.backend} takes "
                          "fp32, fp16 (a GPU precision) or int8")
    if out.exists() and not (out / MANIFEST).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an engine directory; refusing to replace it (choose another --out)")
    if out.resolve() == run.resolve() or out.resolve() in run.resolve().parents:
        raise ExportError(f"--out {out} would replace the run directory itself; choose another --out")
    cfg, model = rundir.load_model(run)
    if cfg.model != "dcube":
        raise ExportError(f"{run} is a {cfg.model} baseline run; export takes D-Cube runs")
    spec = GraphSpec.for_classifier(cfg.image_size, len(cfg.classes), opts.max_batch)
    if opts.full_trunk:
        model.truncate_after = cfg.num_layers - 1
        model.expose_last_layer = True
        spec = spec.with_trunk_output(len(opts.timesteps or cfg.timesteps), 1 + cfg.grid ** 2, cfg.width)
    if opts.timesteps:
        model.timesteps = torch.tensor(opts.timesteps, dtype=torch.long)
    model.bake_timesteps()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        log(f"exporting ONNX (opset {spec.opset}, timesteps {model.timesteps.tolist()}, "
            f"layers {list(model.layers_used)}, trunk cut after layer {model.truncate_after})")
        fp32 = export_onnx(model, spec, work / "model.fp32.onnx")
        onnx_path, extra = precision_onnx(fp32, work / "model.onnx", opts.precision, cfg, run, opts, spec)
        fp32.unlink()
        model_file, backend_info = "model.onnx", {}
        if opts.backend == "openvino":
            from .openvino import build_ir

            calib = calibration_file(run, cfg, opts) if opts.precision == "int8" else None
            if calib:
                extra["calibration"] = calib_sets.describe(calib)
            images = calib_sets.read(calib)[0] if calib else None
            model_file, backend_info = build_ir(onnx_path, work, opts.precision, hint, images, log)
        elif opts.backend == "tensorrt":
            from .tensorrt import build_plan

            model_file, backend_info = build_plan(onnx_path, work, spec, log)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "backend": opts.backend, "precision": opts.precision, "model_file": model_file,
            "graph": spec.to_dict(), "classes": list(cfg.classes), "preprocess": PreprocessSpec(cfg.image_size).to_dict(),
            "timesteps": model.timesteps.tolist(), "selected_layers": list(model.layers_used),
            "truncated_after_layer": model.truncate_after, "trunk_layers": cfg.num_layers,
            "seed": cfg.seed, "preset": cfg.preset,
            "run": {"path": str(run.resolve()), **{f: sha256(run / f) for f in
                                                   (rundir.CONFIG, rundir.DIFFUSION, rundir.CLASSIFIER)}},
            "tools": tool_versions(opts.backend), "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **extra, **({opts.backend: backend_info} if backend_info else {}),
        }
        manifest["effective_precision"] = effective_precision(opts, hint)
        manifest["files"] = {p.name: sha256(p) for p in sorted(work.iterdir()) if p.is_file()}
        write_json(work / MANIFEST, manifest)
        manifest["parity"] = measure_parity(work, model, cfg, opts, spec, log)
        if opts.backend == "openvino" and opts.precision == "int8" and hint == "bf16" \
                and not parity.within_bounds(manifest["parity"]):
            # bf16 float islands cost more accuracy than allowed: pin them to f32 and measure again
            failed = manifest["parity"]
            manifest["openvino"]["inference_precision"] = "f32"
            manifest["effective_precision"] = effective_precision(opts, "f32")
            write_json(work / MANIFEST, manifest)
            manifest["parity"] = measure_parity(work, model, cfg, opts, spec, log)
            manifest["effective_precision"]["note"] = (
                f"float islands pinned to f32: in bf16 top-1 agreement was {failed['top1_agreement']:.4f}, "
                f"AUC delta {failed.get('auc_delta', float('nan')):.4f} (bounds: ≥ {parity.MIN_TOP1_AGREEMENT}, "
                f"≥ -{parity.MAX_AUC_DROP})")
            log(manifest["effective_precision"]["note"])
        if opts.precision != "fp32":
            manifest["parity"]["within_bounds"] = parity.within_bounds(manifest["parity"])
            if not manifest["parity"]["within_bounds"]:
                log(f"warning: {opts.precision} parity is outside the bounds (top-1 agreement ≥ {parity.MIN_TOP1_AGREEMENT}, "
                    f"AUC drop ≤ {parity.MAX_AUC_DROP}); check `parity` in the manifest before deploying this engine")
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


def effective_precision(opts: ExportOptions, hint: str | None) -> dict:
    """What each part of the engine computes in, as built (OpenVINO may keep some ops, e.g. reductions,
    in f32 under a bf16 hint; the runner reads the compiled model's actual hint back)."""
    float_part = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(hint or "", opts.precision)
    if opts.precision == "int8":
        islands = float_part if opts.backend == "openvino" else "fp32"
        return {"trunk_matmuls_and_head_convs": "int8 (Q/DQ, symmetric, per-channel weights)",
                "resnet_guide_branch": islands, "other_ops": islands}
    if opts.precision == "fp16" and opts.backend != "openvino":
        return {"all": "fp16 (LayerNorm/Softmax reductions fp32, I/O fp32)"}
    return {"all": float_part}


@torch.no_grad()
def measure_parity(engine_dir: Path, model: torch.nn.Module, cfg: Config, opts: ExportOptions,
                   spec: GraphSpec, log: Callable[[str], None]) -> dict:
    """Engine vs FP32 torch on the validation split (or, without data, on seeded random inputs)."""
    split = validation_split(cfg, opts.data)
    pre = PreprocessSpec(cfg.image_size)
    if split is not None and len(split):
        images, labels, source = split.load(pre), split.labels, "validation split"
    else:
        rng = np.random.default_rng(cfg.seed)
        images = rng.uniform(-1, 1, size=(16, 1, cfg.image_size, cfg.image_size)).astype(np.float32)
        labels, source = None, "16 seeded uniform-noise images (no validation data found)"
    expose, model.expose_last_layer = model.expose_last_layer, False
    ref = np.concatenate([model(torch.from_numpy(images[i:i + 64])).numpy() for i in range(0, len(images), 64)])
    model.expose_last_layer = expose
    runner = make_runner(read_manifest(engine_dir, verify=False), device=opts.device)
    with runner:
        step = spec.batch["max"]
        got = np.concatenate([runner.infer({spec.inputs[0].name: images[i:i + step]})[spec.outputs[0].name]
                              for i in range(0, len(images), step)])
        runtime = getattr(runner, "effective_precision", None)
    report = {"data": source, **parity.compare(ref, got, labels)}
    if runtime:
        report["runtime_inference_precision"] = runtime
    if opts.precision == "fp32":
        report["within_tolerance"] = report["max_abs_logit_diff"] <= spec.atol
    log("parity vs torch fp32: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                              for k, v in report.items() if k != "data"))
    return report


def tool_versions(backend: str) -> dict:
    import onnxruntime

    versions = {"dcube_edge": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}
    if backend == "openvino":
        import nncf
        import openvino

        versions.update(openvino=openvino.get_version(), nncf=nncf.__version__)
    if backend == "tensorrt":
        import tensorrt

        versions["tensorrt"] = tensorrt.__version__
    return versions

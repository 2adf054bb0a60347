"""What one export works from: the options as given (:class:`ExportOptions`) and, once the run is loaded
and the work folder made, the :class:`BuildJob` that a backend's builder receives."""
from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dcube_edge.calibration import sets as calib_sets
from dcube_edge.config import Config
from dcube_edge.data import DataError, Split, discover, read_split
from dcube_edge.errors import UserError
from dcube_edge.runtimes import precisions
from dcube_edge.runtimes.preprocess import PreprocessSpec
from dcube_edge.runtimes.spec import GraphSpec

from .policy import Policy

if TYPE_CHECKING:
    from dcube_edge.rundir import Run  # torch; the CLI reads ExportOptions without it

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
    class_codes: str | None = None  # NAME=SCHEME:VALUE[:MEANING],... or a JSON file (export/codes.py)
    modalities: str | None = None  # comma-separated DICOM Modality values the model was trained on (e.g. US)
    operating_point: str | None = None  # argmax, youden, balanced, sensitivity=X, specificity=X (operating_point.py)
    positive_class: str | None = None  # the two-class rules' positive class (default: the rarer one)
    operating_split: str | None = None  # labelled <class>/* folder the operating point is chosen on
    intended_use: str | None = None  # what the engine is for, for its model card


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
        calib_sets.build(train.paths, train.labels, spec, opts.calibration_size, cfg.seed, cached, train.views)
    return cached


@dataclass
class BuildJob:
    """What a backend's ``build(job)`` receives: the FP32 ONNX in ``work`` and, on request, the precision's
    ONNX and the calibration images. What they add to the manifest collects in ``info``."""

    run: Run
    opts: ExportOptions
    spec: GraphSpec
    work: Path
    hint: str | None
    log: Log
    policy: Policy
    info: dict = field(default_factory=dict)

    @property
    def cfg(self) -> Config:
        return self.run.config

    @property
    def precision(self) -> str:
        return self.opts.precision

    @property
    def fp32_onnx(self) -> Path:
        return self.work / "model.fp32.onnx"

    def calibration_file(self) -> Path:
        calib = calibration_file(self.run.path, self.cfg, self.opts)
        self.info["calibration_set"] = calib_sets.describe(calib)
        return calib

    def calibration_images(self):
        return calib_sets.read(self.calibration_file(), PreprocessSpec(self.cfg.image_size))[0]

    def precision_onnx(self, precision: str | None = None) -> Path:
        """``work/model.onnx`` in the ONNX form of ``precision`` (default: the export's; the registry's
        ``onnx`` field): the float graph copied, fp16 mixed, int8 Q/DQ with the policy's float scopes."""
        form = precisions.get(precision or self.precision).onnx
        out = self.work / "model.onnx"
        if form == "fp32":
            shutil.copyfile(self.fp32_onnx, out)
        elif form == "fp16":
            from dcube_edge.calibration import fp16

            fp16.convert(self.fp32_onnx, out)
            self.info["fp16"] = {"tool": "onnxconverter_common.float16", "kept_fp32": fp16.KEEP_FP32, "io": "float32"}
        elif form == "int8":
            from dcube_edge.calibration import int8

            self.info["int8"] = int8.quantize(self.fp32_onnx, out, self.calibration_images(), self.spec.input.name,
                                              keep_float=list(self.policy.int8_float_scopes))
        else:
            raise ValueError(f"no ONNX form {form!r}")
        return out



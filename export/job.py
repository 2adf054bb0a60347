"""What a backend's builder receives once the run is loaded and the work folder made: the :class:`BuildJob` (the
checked options, the graph spec, the work folder, the export's context), which makes the precision's ONNX and
reads the calibration images on request (once)."""
from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dcube_edge.calibration import sets as calib_sets
from dcube_edge.config import Config
from dcube_edge.runtimes.preprocess import PreprocessSpec
from dcube_edge.runtimes.sections import CalibrationSet, FP16Recipe, QDQRecipe
from dcube_edge.runtimes.spec import GraphSpec

from .calibration import calibration_file
from .context import ExportContext, Log
from .options import ExportOptions
from .policy import Policy

if TYPE_CHECKING:
    from dcube_edge.rundir import Run


@dataclass(frozen=True)
class CalibrationImages:
    images: np.ndarray  # preprocessed, (N, 1, S, S) float32
    described: CalibrationSet


@dataclass(frozen=True)
class PrecisionONNX:
    """``work/model.onnx`` in a precision's ONNX form, and how it was made."""

    path: Path
    recipe: FP16Recipe | QDQRecipe | None = None
    calibration_set: CalibrationSet | None = None


@dataclass(frozen=True)
class BuildJob:
    run: Run
    opts: ExportOptions
    precision: str
    hint: str | None  # the device's precision hint as the builder's check chose it (a speed check may choose another)
    policy: Policy
    spec: GraphSpec
    work: Path
    context: ExportContext

    @property
    def cfg(self) -> Config:
        return self.run.config

    @property
    def log(self) -> Log:
        return self.context.log

    @property
    def fp32_onnx(self) -> Path:
        return self.work / "model.fp32.onnx"

    @functools.cached_property
    def calibration(self) -> CalibrationImages:
        """The int8 calibration images, read (or built and cached in the run dir) once per export."""
        path = calibration_file(self.run.path, self.cfg, self.opts)
        images = calib_sets.read(path, PreprocessSpec(self.cfg.image_size))[0]
        d = calib_sets.describe(path)
        return CalibrationImages(images, CalibrationSet(d["file"], d["sha256"], d["size"], tuple(d["class_counts"])))

    def precision_onnx(self, precision: str | None = None) -> PrecisionONNX:
        """``work/model.onnx`` in the ONNX form of ``precision`` (default: the export's; the registry's ``onnx``
        field): the float graph copied, fp16 mixed, int8 Q/DQ with the policy's float scopes."""
        form = self.context.precision(precision or self.precision).onnx
        out = self.work / "model.onnx"
        if form == "fp32":
            shutil.copyfile(self.fp32_onnx, out)
            return PrecisionONNX(out)
        if form == "fp16":
            from dcube_edge.calibration import fp16

            fp16.convert(self.fp32_onnx, out)
            return PrecisionONNX(out, FP16Recipe("onnxconverter_common.float16", tuple(fp16.KEEP_FP32), "float32"))
        if form == "int8":
            from dcube_edge.calibration import int8

            calibration = self.calibration
            recipe = int8.quantize(self.fp32_onnx, out, calibration.images, self.spec.input.name,
                                   keep_float=list(self.policy.int8_float_scopes))
            return PrecisionONNX(out, recipe, calibration.described)
        raise ValueError(f"no ONNX form {form!r}")

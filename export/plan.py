"""Every export option checked against the run before any work (:func:`validate`): a typo in the operating point, an
unknown positive class, a malformed class code, a calibration folder that is not there fails in seconds, naming the
option, with nothing written, instead of after minutes of building. Torch-free, so the CLI checks before PyTorch is
imported; the :class:`Plan` it returns is what the build then works from."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dcube_edge.calibration import sets as calib_sets
from dcube_edge.config import Config, load_config
from dcube_edge.data import DataError, Split, discover, read_split
from dcube_edge.errors import UserError
from dcube_edge.operating_point import Rule, parse_rule
from dcube_edge.runtimes import backends, isa
from dcube_edge.runtimes.manifest import MANIFEST
from dcube_edge.runtimes.precisions import Precision
from dcube_edge.runtimes.preprocess import PreprocessSpec
from dcube_edge.runtimes.sections import ClassCode

from . import codes
from .builder import Builder
from .context import ExportContext
from .options import ExportError, ExportOptions
from .policy import Policy, for_model

if TYPE_CHECKING:
    from dcube_edge.rundir import Run

# A DICOM Modality value (a CS: upper-case letters, digits, space and underscore, at most 16; PS3.5 6.2).
MODALITY = re.compile(r"^[A-Z0-9_ ]{1,16}$")


@dataclass(frozen=True)
class Plan:
    """An export's options resolved against its run: the backend and its builder, the precision and this CPU's hint,
    the class codes, the operating-point rule, the labelled images parity and the operating point are measured on
    (listed, not yet loaded)."""

    run: Path
    out: Path
    opts: ExportOptions
    config: Config
    backend: backends.Backend
    precision: Precision
    builder: Builder
    hint: str | None  # the device's precision hint (OpenVINO's inference precision), from the builder's check
    policy: Policy
    class_codes: dict[str, ClassCode]
    modalities: tuple[str, ...]
    rule: Rule
    parity_split: Split | None  # None: no labelled images; parity runs on seeded noise
    operating_split: Split | None  # None: the parity split (or none) chooses the operating point


def validation_split(cfg: Config, data: str | None) -> Split | None:
    """The labelled images of ``data`` (a split folder or a dataset root: its validation split), or the run's
    validation split when the run's data folder is reachable; listed, not loaded."""
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


def validate(run: str | Path | Run, out: str | Path, opts: ExportOptions, context: ExportContext) -> Plan:
    """The :class:`Plan`, or an :class:`ExportError` (exit 2) naming the option that cannot be done; reads the
    run's config and lists folders, writes nothing."""
    out = Path(out)
    backend, precision, builder, hint = machinery(opts, context)
    path, cfg = (Path(run), load_config(run)) if isinstance(run, (str, Path)) else (run.path, run.config)
    if out.exists() and not (out / MANIFEST).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an engine directory; refusing to replace it (choose another --out)")
    if out.resolve() == path.resolve() or out.resolve() in path.resolve().parents:
        raise ExportError(f"--out {out} would replace the run directory itself; choose another --out")
    if cfg.model != "dcube" and (opts.full_trunk or opts.timesteps):
        raise ExportError(f"{path} is a {cfg.model} baseline run: it has no diffusion trunk or timesteps; "
                          "drop --full-trunk/--timesteps")
    classes = list(cfg.classes)
    try:
        rule = parse_rule(opts.operating_point, opts.positive_class, classes)
        class_codes = codes.parse(opts.class_codes, classes)
        parity_split = folder("--data", opts.data, cfg)
        operating_split = folder("--operating-split", opts.operating_split, cfg) if opts.operating_split else None
    except UserError as e:
        raise ExportError(str(e)) from None
    check_calibration(opts, cfg, precision)
    return Plan(path, out, opts, cfg, backend, precision, builder, hint, for_model(cfg.model), class_codes,
                modalities(opts.modalities), rule, parity_split, operating_split)


def machinery(opts: ExportOptions, context: ExportContext) -> tuple[backends.Backend, Precision, Builder, str | None]:
    """Backend, precision, its builder and this CPU's precision hint, or why not."""
    try:
        backend, precision = backends.get(opts.backend), context.precision(opts.precision)
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
        hint = builder.check(precision.name, context.flags)
    except isa.PrecisionUnavailable as e:
        raise ExportError(str(e)) from None
    return backend, precision, builder, hint


def folder(option: str, given: str | None, cfg: Config) -> Split | None:
    """A labelled folder option's images (listed), or the run's validation split where ``given`` is None."""
    if given and not Path(given).is_dir():
        raise ExportError(f"{option} {given}: no such folder (expected <class>/<image> folders, or a dataset root)")
    try:
        return validation_split(cfg, given)
    except DataError as e:
        raise ExportError(f"{option} {given}: {e}") from None


def check_calibration(opts: ExportOptions, cfg: Config, precision: Precision) -> None:
    """``--calibration`` exists and fits the model; an int8 export has calibration images somewhere."""
    given = opts.calibration
    if given and Path(given).is_file():
        try:
            calib_sets.read(given, PreprocessSpec(cfg.image_size))
        except UserError as e:
            raise ExportError(f"--calibration {e}") from None
        return
    if given and not Path(given).is_dir():
        raise ExportError(f"--calibration {given}: no such file or folder (a dataset folder, or a .npz from "
                          "`dcube-edge calibrate`)")
    source = given or cfg.data_root
    if precision.onnx == "int8" or precision.name == "int8":
        if not source or not Path(source).is_dir():
            raise ExportError("int8 needs calibration images: pass --calibration DATA (a dataset folder) or a .npz "
                              "from `dcube-edge calibrate`")
        try:
            discover(source, cfg.val_fraction, cfg.split_seed)
        except DataError as e:
            raise ExportError(f"--calibration {source}: {e}") from None


def modalities(text: str | None) -> tuple[str, ...]:
    """``--modality US,MG``: DICOM Modality values (PS3.3 C.7.3.1.1.1), upper-cased."""
    values = tuple(m.strip().upper() for m in (text or "").split(",") if m.strip())
    bad = [m for m in values if not MODALITY.match(m)]
    if bad:
        raise ExportError(f"--modality {bad[0]!r} is not a DICOM Modality value (upper-case letters and digits, at most "
                          "16, e.g. US, MG, CT)")
    return values

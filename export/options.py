"""The options of one export as given (the CLI's flags, or a library caller's), torch-free so the CLI can read
and check them before PyTorch is imported."""
from __future__ import annotations

from dataclasses import dataclass

from dcube_edge.calibration.sets import DEFAULT_SIZE
from dcube_edge.errors import UserError


class ExportError(UserError):
    """An export that cannot be done as asked; the message says why."""


@dataclass
class ExportOptions:
    backend: str = "onnxruntime"
    precision: str = "fp32"
    calibration: str | None = None  # .npz from `dcube-edge calibrate`, or a dataset folder
    calibration_size: int = DEFAULT_SIZE
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

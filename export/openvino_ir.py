"""OpenVINO IR files as the export handles them: moved and removed as .xml/.bin pairs, quantized with NNCF,
layers marked to run in f32."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dcube_edge.calibration.scopes import in_scopes
from dcube_edge.runtimes.files import atomic_path

if TYPE_CHECKING:
    from .job import BuildJob

IR_FILES = (".xml", ".bin")


def move_ir(src: Path, dst: Path) -> None:
    """Put the IR ``src`` (.xml and its .bin) in the place of ``dst``."""
    for suffix in IR_FILES:
        os.replace(src.with_suffix(suffix), dst.with_suffix(suffix))


def remove_ir(xml: Path) -> bool:
    """Delete an IR's files; True if any was there."""
    present = [xml.with_suffix(s) for s in IR_FILES if xml.with_suffix(s).exists()]
    for path in present:
        path.unlink()
    return bool(present)


def quantize(model: Any, job: BuildJob, calibration: np.ndarray, ignored_patterns: list[str]) -> Any:
    """``nncf.quantize`` of an IR on the calibration images, the ops matching ``ignored_patterns`` (regular
    expressions over node names) left float."""
    import logging

    import nncf

    if not os.environ.get("DCUBE_EDGE_VERBOSE"):  # `dcube-edge --verbose` keeps them
        nncf.set_log_level(logging.WARNING)  # its INFO lines (about 70 per export) drown our own output
    kind = job.policy.nncf_model_type
    job.log(f"nncf.quantize on {len(calibration)} calibration images ({kind or 'CNN'} model type)")
    dataset = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])
    return nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE,
                         model_type=nncf.ModelType[kind.upper()] if kind else None, subset_size=len(calibration),
                         ignored_scope=nncf.IgnoredScope(patterns=ignored_patterns, validate=False))


def keep_f32(xml: Path, scopes: tuple[str, ...]) -> int:
    """Mark every computing layer of the IR under ``scopes`` (module names at export) ``precise``, so the
    CPU plugin runs it in f32 whatever the inference-precision hint. Returns how many layers were marked."""
    tree = ET.parse(xml)
    marked = 0
    for layer in tree.getroot().iter("layer"):
        if layer.get("type") in ("Const", "Parameter", "Result") or not in_scopes(layer.get("name", ""), scopes):
            continue
        rt = layer.find("rt_info")
        if rt is None:
            rt = ET.Element("rt_info")
            layer.insert(0, rt)
        if not any(a.get("name") == "precise" for a in rt.iter("attribute")):
            ET.SubElement(rt, "attribute", {"name": "precise", "version": "0"})
            marked += 1
    with atomic_path(xml) as tmp:
        tree.write(tmp, encoding="utf-8", xml_declaration=True)
    return marked

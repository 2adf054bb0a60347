"""What a result SR says of an object's views — the frames of a cine loop, the tissue regions of an ultrasound
screen — beside the instance's decision (:mod:`.sr`):

- the decision group references the source image as a whole (no Referenced Frame Number: the reference applies to
  every frame, PS3.3 C.18.4 Image Reference Macro, 10.3 Image SOP Instance Reference Macro), and a second
  *Comment* says how many views were read and combined by which instance policy, and which frames each class was
  called in (frame ranges, so a 1,000-frame loop is a line, not a thousand);
- up to :data:`MAX_VIEW_GROUPS` views, one group per view, tracking identifier "frame 12", "frame 12, tissue region
  2" or "tissue region 2": a view of the whole frame is a TID 1501 group whose source image carries that frame's
  Referenced Frame Number (0008,1160); a tissue region is a TID 1410 group (Planar ROI Measurements) whose Image
  Region (DCM 111030) is the region's box as a closed POLYLINE in pixel coordinates (PS3.3 C.18.6 Spatial
  Coordinates Macro: the top-left corner of the top-left pixel is 0,0), on that frame. Each holds the *Finding* the
  instance was called (its class code), the view's calibrated *Probability* of it, and the view's own
  *Classification* at the operating point: a reader sees, frame by frame, how the loop supports the finding;
- over :data:`MAX_VIEW_GROUPS` views, no per-view groups (each view adds about 2.7 KB to the SR and 14 ms of CPU
  to build it: a 3-frame dual view's SR is 29 KB, a single image's 13 KB; AMD EPYC, 2026-12-07): the summary above
  says so, and every view's result stays in the ledger (``GET /v1/results/{uid}``), as ``classify --json`` gives
  it.

An object of one view read whole (a single-frame image without tissue regions) is its decision: nothing is added."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..instance import DESCRIPTIONS

MAX_VIEW_GROUPS = 100  # views an SR holds a group for; beyond, the summary alone


def spans(numbers: Sequence[int]) -> str:
    """1, 2, 3, 5, 7, 8 → "1-3, 5, 7-8"."""
    out: list[str] = []
    for n in sorted(set(numbers)):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def where(views: Sequence[dict]) -> str:
    """Where a set of views lies, in words: frame ranges per tissue region."""
    by_region: dict[int | None, list[int]] = {}
    for v in views:
        by_region.setdefault(v["region"], []).extend([v["frame"]] if v["frame"] is not None else [])
    parts = []
    for region, frames in by_region.items():
        said = [f"frame{'s' * (len(frames) > 1)} {spans(frames)}"] if frames else []
        said += [f"tissue region {region}"] if region is not None else []
        parts.append(" in ".join(said) or "the image")
    return "; ".join(parts)


def name(view: dict) -> str:
    """A view's tracking identifier: "frame 12", "frame 12, tissue region 2", "tissue region 2"."""
    said = ([f"frame {view['frame']}"] if view["frame"] is not None else []) + (
        [f"tissue region {view['region']}"] if view["region"] is not None else [])
    return ", ".join(said) or "image"


def worth_reporting(reading: dict) -> bool:
    """Whether the object was read as more than one whole image (several views, or a tissue region)."""
    frames = reading.get("frames") or []
    return len(frames) > 1 or any(v.get("box") for v in frames)


def summary(reading: dict, label: str, uid: str) -> str | None:
    """The views in words (None: nothing to say, one whole image)."""
    views = reading.get("frames") or []
    if not worth_reporting(reading):
        return None
    frames, policy = reading.get("number_of_frames") or 1, reading.get("instance_policy") or "median"
    read = f"{len(views)} view{'s' * (len(views) > 1)} of {frames} frame{'s' * (frames > 1)} ({reading.get('regions')})"
    called: dict[str, list[dict]] = {}
    for v in views:
        called.setdefault(v["label"], []).append(v)
    order = [label, *sorted(c for c in called if c != label)]
    text = (f"{read}, combined by the instance policy {policy} ({DESCRIPTIONS.get(policy, policy)}); "
            + "; ".join(f"called {c} in {where(called[c])}" for c in order if c in called) + ".")
    if len(views) > MAX_VIEW_GROUPS:
        text += (f" Over {MAX_VIEW_GROUPS} views this report holds no group per view: each view's result is in the "
                 f"node's ledger (GET /v1/results/{uid}).")
    for note in reading.get("notes") or []:
        text += f" Note: {note}."
    return text


def view_groups(reading: dict, label: str, make: Callable[..., object], code: Callable[[str], Any]) -> list:
    """One group per view (module docstring), or none; ``make(name, box=..., frame=..., **content)`` builds a
    group with the shared tracking identifier and algorithm, ``code(class)`` a class's coded concept."""
    from highdicom.sr import Measurement, QualitativeEvaluation
    from pydicom.sr.codedict import codes

    views = reading.get("frames") or []
    if not worth_reporting(reading) or len(views) > MAX_VIEW_GROUPS:
        return []
    return [make(name(v), box=v.get("box"), frame=v["frame"], finding_type=code(label),
                 measurements=[Measurement(codes.DCM.Probability, float(v["probs"][label]), codes.UCUM.NoUnits)],
                 qualitative_evaluations=[QualitativeEvaluation(codes.SCT.Classification, code(v["label"]))])
            for v in views]


def region(src, box: Sequence[int], frame: int | None):
    """The Image Region (SCOORD, closed POLYLINE) of an inclusive pixel box ``x0, y0, x1, y1`` on ``frame``."""
    import numpy as np
    from highdicom.sr import GraphicTypeValues, ImageRegion, SourceImageForRegion

    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0], [x1 + 1, y0], [x1 + 1, y1 + 1], [x0, y1 + 1], [x0, y0]], dtype=float)
    return ImageRegion(GraphicTypeValues.POLYLINE, corners, SourceImageForRegion(
        src.SOPClassUID, src.SOPInstanceUID, referenced_frame_numbers=[frame] if frame is not None else None))

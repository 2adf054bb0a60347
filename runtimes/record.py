"""The engine record: everything an engine directory's ``manifest.json`` says, as one typed value (after optimum's
typed export configs), and the only code that reads or writes that file's keys.

Export builds a record from what its steps decided (the graph, preprocessing, precision, the backend's choices,
parity, the operating point) and writes it once, at publish (:func:`write`); every reader (runtimes, card, bench,
serve) gets it from :func:`load` through :mod:`.manifest` and reads attributes. On disk the manifest stays the flat
JSON it always was (docs/engine-format.md); :meth:`EngineRecord.from_dict` reads every format-2 manifest written
before, filling in what older exports did not record. Torch-free."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcube_edge.errors import UserError

from . import backends
from .choices import BY_BACKEND, Choices
from .files import write_json
from .preprocess import PreprocessSpec
from .sections import (
    BuiltOn,
    Calibration,
    CalibrationSet,
    ClassCode,
    FP16Recipe,
    InputSection,
    JSONObject,
    OperatingPoint,
    Parity,
    Provenance,
    QDQRecipe,
    Reference,
    RunRef,
    decode,
    encode,
)
from .spec import GraphSpec

MANIFEST = "manifest.json"
FORMAT = "dcube-edge-engine"
FORMAT_VERSION = 2  # 2: engine facts bound into the model file (runtimes/facts.py)
# The manifest keys whose values decide what an output means; they are also bound into the model file (.facts).
FACTS = ("classes", "class_codes", "preprocess", "timesteps", "graph", "backend", "precision", "decision",
         "calibration", "reference")


class EngineError(UserError):
    """An engine directory that must not be used; the message says why and what to do."""


@dataclass(frozen=True)
class GraphSection:
    """What the graph is: its tensors, the classes its output stands for, and what it was cut from."""

    spec: GraphSpec
    classes: tuple[str, ...]
    class_codes: dict[str, ClassCode] = field(default_factory=dict)
    model: str = "dcube"
    timesteps: tuple[int, ...] = ()
    selected_layers: tuple[int, ...] = ()
    truncated_after_layer: int | None = None
    trunk_layers: int | None = None
    preset: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class PrecisionSection:
    """The precision asked for, what each part of the engine computes in as built, and how that was made."""

    name: str
    parts: dict[str, str]  # part → precision, e.g. {"trunk_matmuls": "int8 (...)", "rest_of_head": "bf16"}
    note: str | None = None  # how the builder's measured choices and the parity fallbacks moved it
    recipe: FP16Recipe | QDQRecipe | None = None  # how the precision's ONNX was made
    calibration_set: CalibrationSet | None = None

    def describe(self) -> str:
        """'trunk_matmuls int8 (...), rest_of_head bf16, ...'."""
        return ", ".join(f"{k} {v}" for k, v in self.parts.items())

    def effective(self) -> dict[str, str]:
        """The parts and the note, as the manifest's ``effective_precision`` (and ``classify --json``) state them."""
        return {**self.parts, **({"note": self.note} if self.note else {})}


@dataclass(frozen=True)
class EngineRecord:
    backend: str
    model_file: str
    graph: GraphSection
    preprocessing: PreprocessSpec
    precision: PrecisionSection
    choices: Choices | None = None  # what the backend's builder chose (written under the backend's name)
    parity: Parity | None = None
    decision: OperatingPoint | None = None
    calibration: Calibration | None = None
    reference: Reference | None = None  # what it saw on its operating split (the node's monitor compares with it)
    input: InputSection = InputSection()
    provenance: Provenance = Provenance()
    files: dict[str, str] = field(default_factory=dict)  # file name → sha256, every engine file but the manifest

    @property
    def classes(self) -> list[str]:
        return list(self.graph.classes)

    @property
    def spec(self) -> GraphSpec:
        return self.graph.spec

    def precision_hint(self) -> str | None:
        """The backend's inference-precision hint (OpenVINO's), if it records one."""
        return self.choices.precision_hint() if self.choices is not None else None

    def to_dict(self) -> JSONObject:
        """The manifest as written (docs/engine-format.md)."""
        g, p, prov = self.graph, self.precision, self.provenance
        run = {"path": prov.run.path, **prov.run.hashes} if prov.run else None
        d: JSONObject = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "backend": self.backend, "precision": p.name,
            "model_file": self.model_file, "graph": g.spec.to_dict(), "classes": list(g.classes),
            "preprocess": self.preprocessing.to_dict(), "intended_use": prov.intended_use, "model": g.model,
            "training_data": prov.training_data, "class_codes": encode(g.class_codes), "input": encode(self.input),
            "timesteps": list(g.timesteps), "selected_layers": list(g.selected_layers),
            "truncated_after_layer": g.truncated_after_layer, "trunk_layers": g.trunk_layers, "seed": g.seed,
            "preset": g.preset, "run": run, "tools": dict(prov.tools), "built_on": encode(prov.built_on),
            "created": prov.created}
        if p.calibration_set:
            d["calibration_set"] = encode(p.calibration_set)
        if p.recipe:
            d["fp16" if isinstance(p.recipe, FP16Recipe) else "int8"] = encode(p.recipe)
        if self.choices is not None and encode(self.choices):
            d[self.backend] = encode(self.choices)
        d["effective_precision"] = p.effective()
        d["files"] = dict(self.files)
        for key, section in (("parity", self.parity), ("decision", self.decision), ("calibration", self.calibration),
                             ("reference", self.reference)):
            if section is not None:
                d[key] = encode(section)
        written: JSONObject = encode(d)  # JSON's own types throughout (lists, not the spec's tuples)
        return written

    def facts(self) -> JSONObject:
        """The facts to bind into the model file, as :data:`FACTS` of :meth:`to_dict`."""
        return facts_of(self.to_dict())

    @classmethod
    def from_dict(cls, d: JSONObject) -> EngineRecord:
        """A record from a manifest of format version 2, of any date (migrations: docs/engine-format.md)."""
        classes = tuple(d["classes"])
        graph = GraphSection(
            GraphSpec.from_dict(d["graph"]), classes,
            {k: decode(ClassCode, v) for k, v in (d.get("class_codes") or {}).items()}, d.get("model") or "dcube",
            tuple(d.get("timesteps") or ()), tuple(d.get("selected_layers") or ()), d.get("truncated_after_layer"),
            d.get("trunk_layers"), d.get("preset"), d.get("seed"))
        run = d.get("run") or None
        provenance = Provenance(
            d.get("intended_use") or "", d.get("training_data"),
            RunRef(str(run.get("path", "")), {k: v for k, v in run.items() if k != "path"}) if run else None,
            dict(d.get("tools") or {}), decode(BuiltOn, d["built_on"]) if d.get("built_on") else None, d.get("created"))
        probability = d.get("calibration") or {}
        choices_type = BY_BACKEND.get(d["backend"])
        return cls(d["backend"], d["model_file"], graph, PreprocessSpec.from_dict(d["preprocess"]), precision_of(d),
                   decode(choices_type, d[d["backend"]]) if choices_type and d.get(d["backend"]) else None,
                   decode(Parity, d["parity"]) if d.get("parity") else None,
                   decode(OperatingPoint, d["decision"]) if d.get("decision") else None,
                   # before 2026-12-06 `calibration` held the int8 calibration set (no temperature): see precision_of
                   decode(Calibration, probability) if "temperature" in probability else None,
                   decode(Reference, d["reference"]) if d.get("reference") else None,
                   decode(InputSection, d.get("input") or {}), provenance, dict(d.get("files") or {}))


def precision_of(d: JSONObject) -> PrecisionSection:
    parts = dict(d.get("effective_precision") or {"all": d["precision"]})
    note = parts.pop("note", None)
    recipe = decode(QDQRecipe, d["int8"]) if d.get("int8") else decode(FP16Recipe, d["fp16"]) if d.get("fp16") else None
    described = d.get("calibration_set") or (d["calibration"] if old_calibration_set(d) else None)
    return PrecisionSection(d["precision"], parts, note, recipe, decode(CalibrationSet, described) if described else None)


def old_calibration_set(d: JSONObject) -> bool:
    """Whether ``calibration`` is an int8 calibration set's description, as exports before 2026-12-06 wrote it
    (since then it is the probability calibration, a fact, and the set is ``calibration_set``)."""
    calibration = d.get("calibration")
    return isinstance(calibration, dict) and "sha256" in calibration and "temperature" not in calibration


def facts_of(d: JSONObject) -> JSONObject:
    return {k: d.get(k) for k in FACTS}


def stated_facts(d: JSONObject) -> JSONObject:
    """The facts a manifest states, as its export bound them: an export before 2026-12-06 bound no
    ``calibration`` (the key then described the int8 calibration set, not what an output means)."""
    stated = facts_of(d)
    if old_calibration_set(d):
        stated["calibration"] = None
    return stated


def load(path: Path) -> tuple[EngineRecord, JSONObject]:
    """The record in a ``manifest.json`` and the facts it states as written (an older manifest's facts are
    compared with its model file as they were bound, not as this version would write them)."""
    try:
        data: Any = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EngineError(f"{path} is not valid JSON ({e}); re-export the engine") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise EngineError(f"{path} is not a dcube-edge engine manifest")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise EngineError(f"{path} has format version {version}; this dcube-edge reads version {FORMAT_VERSION}: "
                          "re-export with this version or install the matching dcube-edge")
    if data.get("backend") not in backends.names():
        raise EngineError(f"{path} names unknown backend {data.get('backend')!r} (this dcube-edge knows "
                          f"{', '.join(backends.names())})")
    try:
        return EngineRecord.from_dict(data), stated_facts(data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise EngineError(f"{path} is not a readable engine manifest ({type(e).__name__}: {e}); re-export the "
                          "engine") from None


def write(engine_dir: Path, record: EngineRecord) -> Path:
    """Write ``record`` as ``engine_dir/manifest.json`` (atomically): export's publish, once per export."""
    write_json(engine_dir / MANIFEST, record.to_dict())
    return engine_dir / MANIFEST


def add_files(engine_dir: Path, hashes: dict[str, str]) -> None:
    """Vouch for files added to a finished engine (the model card): their sha256 joins ``files``, everything else
    in the manifest stays byte for byte as its export wrote it (its bound facts included)."""
    path = engine_dir / MANIFEST
    data = json.loads(path.read_text())
    data["files"] = {**data["files"], **hashes}
    write_json(path, data)

"""The engine directory contract (docs/engine-format.md): ``manifest.json`` plus model files. The runtime checks
format version, backend, and the sha256 of every file before it loads anything."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dcube_edge.errors import UserError

from . import backends, facts
from .files import sha256
from .preprocess import PreprocessSpec
from .spec import GraphSpec

MANIFEST = "manifest.json"
FORMAT = "dcube-edge-engine"
FORMAT_VERSION = 2  # 2: engine facts bound into the model file (runtimes/facts.py)


class EngineError(UserError):
    """An engine directory that must not be used; the message says why and what to do."""


@dataclass(frozen=True)
class Manifest:
    path: Path
    data: dict

    @property
    def dir(self) -> Path:
        return self.path.parent

    @property
    def backend(self) -> str:
        return self.data["backend"]

    @property
    def precision(self) -> str:
        return self.data["precision"]

    @property
    def classes(self) -> list[str]:
        return list(self.data["classes"])

    @property
    def spec(self) -> GraphSpec:
        return GraphSpec.from_dict(self.data["graph"])

    @property
    def input_name(self) -> str:
        return self.spec.input.name

    @property
    def output_name(self) -> str:
        return self.spec.output.name

    @property
    def max_batch(self) -> int:
        return self.spec.batch["max"]

    @property
    def preprocess(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.data["preprocess"])

    @property
    def model_file(self) -> Path:
        return self.dir / self.data["model_file"]

    def precision_parts(self) -> str:
        """What each part of the engine computes in, as recorded at export: 'trunk_matmuls int8 (...), ...'."""
        parts = self.data.get("effective_precision") or {"all": self.precision}
        return ", ".join(f"{k} {v}" for k, v in parts.items() if k != "note")

    def foreign_build(self, isa_class: str) -> str | None:
        """Why this engine's measured choices may not fit a CPU of ``isa_class``, or None: an OpenVINO
        export times bf16 islands and int8 attention on the CPU it runs on and keeps what was faster there (its
        builder records those timings in its manifest section)."""
        built = (self.data.get("built_on") or {}).get("isa_class")
        section = self.data.get(self.backend) or {}  # what the backend's builder recorded
        measured = section.get("latency_by_hint_ms") or section.get("attention")
        if built and built != isa_class and measured:
            return (f"built on a CPU of class {built}, whose timings chose its precision parts; this CPU is of class "
                    f"{isa_class}: re-export here for choices measured on it")
        return None


def read(engine_dir: str | Path, verify: bool = True, trusted_keys: list[Path] | None = None) -> Manifest:
    """Read and (by default) verify an engine dir; raise :class:`EngineError` with one clear line. With
    ``trusted_keys``, the manifest must also carry a signature by one of them (:mod:`.signing`)."""
    path = Path(engine_dir) / MANIFEST
    if not path.is_file():
        raise EngineError(f"{engine_dir} is not an engine directory (no {MANIFEST}); create one with `dcube-edge export`")
    try:
        data = json.loads(path.read_text())
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
    manifest = Manifest(path, data)
    if verify:
        for name, digest in data.get("files", {}).items():
            f = manifest.dir / name
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise EngineError(f"{path} lists a file outside the engine dir ({name}); refusing it")
            if not f.is_file():
                raise EngineError(f"{manifest.dir} is missing {name}; re-export the engine")
            if sha256(f) != digest:
                raise EngineError(f"{f} does not match its sha256 in the manifest (modified or corrupted); "
                                  "re-export the engine")
        if data["model_file"] not in data.get("files", {}):
            raise EngineError(f"{path} does not hash its model file {data['model_file']}")
        try:
            facts.check(manifest.dir, data)
        except facts.FactsMismatch as e:
            raise EngineError(str(e)) from None
    if trusted_keys:
        from . import signing

        try:
            signing.verify(manifest.path, list(trusted_keys))
        except signing.Untrusted as e:
            raise EngineError(str(e)) from None
    return manifest


def compose(backend: str, precision: str, model_file: str, spec: GraphSpec, classes: list[str],
            preprocess: PreprocessSpec, **provenance: object) -> dict:
    """A manifest's contents from typed parts; ``provenance`` adds what the builder records (run hashes,
    timesteps, tools, parity, ...). ``files`` (name → sha256) is added last, by the writer."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "backend": backend, "precision": precision,
            "model_file": model_file, "graph": spec.to_dict(), "classes": list(classes),
            "preprocess": preprocess.to_dict(), **provenance}

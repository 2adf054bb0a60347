"""The engine directory contract (docs/engine-format.md): ``manifest.json`` plus model files. The runtime checks
format version, backend, the sha256 of every file and the facts bound into the model file before it loads anything;
what the manifest says is an :class:`~.record.EngineRecord`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import facts
from .files import sha256
from .preprocess import PreprocessSpec
from .record import MANIFEST, EngineError, EngineRecord, load
from .spec import GraphSpec

__all__ = ["MANIFEST", "EngineError", "Manifest", "read"]


@dataclass(frozen=True)
class Manifest:
    """An engine's record and where it lies (``path`` is its manifest.json, read or about to be written)."""

    path: Path
    record: EngineRecord

    @property
    def dir(self) -> Path:
        return self.path.parent

    @property
    def backend(self) -> str:
        return self.record.backend

    @property
    def precision(self) -> str:
        return self.record.precision.name

    @property
    def classes(self) -> list[str]:
        return self.record.classes

    @property
    def spec(self) -> GraphSpec:
        return self.record.spec

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
        return self.record.preprocessing

    @property
    def model_file(self) -> Path:
        return self.dir / self.record.model_file

    def precision_parts(self) -> str:
        """What each part of the engine computes in, as recorded at export: 'trunk_matmuls int8 (...), ...'."""
        return self.record.precision.describe()

    def foreign_build(self, isa_class: str) -> str | None:
        """Why this engine's measured choices may not fit a CPU of ``isa_class``, or None: an OpenVINO
        export times bf16 islands and int8 attention on the CPU it runs on and keeps what was faster there."""
        built = self.record.provenance.built_on
        choices = self.record.choices
        if built and built.isa_class and built.isa_class != isa_class and choices and choices.timed_here():
            return (f"built on a CPU of class {built.isa_class}, whose timings chose its precision parts; this CPU is "
                    f"of class {isa_class}: re-export here for choices measured on it")
        return None


def read(engine_dir: str | Path, verify: bool = True, trusted_keys: list[Path] | None = None) -> Manifest:
    """Read and (by default) verify an engine dir; raise :class:`EngineError` with one clear line. With
    ``trusted_keys``, the manifest must also carry a signature by one of them (:mod:`.signing`)."""
    path = Path(engine_dir) / MANIFEST
    if not path.is_file():
        raise EngineError(f"{engine_dir} is not an engine directory (no {MANIFEST}); create one with `dcube-edge export`")
    record, stated = load(path)
    manifest = Manifest(path, record)
    if verify:
        for name, digest in record.files.items():
            f = manifest.dir / name
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise EngineError(f"{path} lists a file outside the engine dir ({name}); refusing it")
            if not f.is_file():
                raise EngineError(f"{manifest.dir} is missing {name}; re-export the engine")
            if sha256(f) != digest:
                raise EngineError(f"{f} does not match its sha256 in the manifest (modified or corrupted); "
                                  "re-export the engine")
        if record.model_file not in record.files:
            raise EngineError(f"{path} does not hash its model file {record.model_file}")
        try:
            facts.check(manifest.dir, stated)
        except facts.FactsMismatch as e:
            raise EngineError(str(e)) from None
    if trusted_keys:
        from . import signing

        try:
            signing.verify(manifest.path, list(trusted_keys))
        except signing.Untrusted as e:
            raise EngineError(str(e)) from None
    return manifest

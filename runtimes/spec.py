"""One declarative description per exported graph (after optimum's export configs), typed both ways:
it drives ``torch.onnx.export``, the TensorRT profile, the manifest's ``graph`` entry, the Triton
``config.pbtxt``, every runner's input check and the export-time output check; ``from_dict`` reads it
back from a manifest. Torch-free (tolerances are per precision: :mod:`.precisions`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from dcube_edge.errors import UserError

BATCH = "batch"  # the dynamic axis; "3*batch" is three times it (timesteps stacked on the batch axis)


class SpecMismatch(UserError):
    """Tensors that do not match the graph spec; the message names the tensor and what differs."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]  # ints, "batch", or "<k>*batch"
    dtype: str = "float32"

    def dims(self, batch: int) -> tuple[int, ...]:
        def dim(d: int | str) -> int:
            if isinstance(d, int):
                return d
            factor, _, axis = d.rpartition("*")
            if axis != BATCH:
                raise ValueError(f"{self.name}: unknown symbolic dimension {d!r}")
            return batch * int(factor or 1)

        return tuple(dim(d) for d in self.shape)

    @classmethod
    def from_dict(cls, d: dict) -> TensorSpec:
        return cls(d["name"], tuple(d["shape"]), d.get("dtype", "float32"))

    def check(self, arr: np.ndarray, batch: int, role: str) -> None:
        want = self.dims(batch)
        if arr.dtype != np.dtype(self.dtype):
            raise SpecMismatch(f"{role} {self.name!r} is {arr.dtype}, the engine takes {self.dtype}")
        if tuple(arr.shape) != want:
            raise SpecMismatch(f"{role} {self.name!r} has shape {tuple(arr.shape)}, expected {want}")


@dataclass(frozen=True)
class GraphSpec:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int = 18
    batch: dict[str, int] = field(default_factory=lambda: {"min": 1, "opt": 8, "max": 64})

    @classmethod
    def for_classifier(cls, image_size: int, num_classes: int, max_batch: int = 64) -> GraphSpec:
        return cls(inputs=(TensorSpec("images", (BATCH, 1, image_size, image_size)),),
                   outputs=(TensorSpec("logits", (BATCH, num_classes)),),
                   batch={"min": 1, "opt": min(8, max_batch), "max": max_batch})

    def with_trunk_output(self, timesteps: int, tokens: int, width: int) -> GraphSpec:
        """The full-trunk benchmark graph: the last block's tokens (T·batch, tokens, width) as a second
        output, so no block can be removed as dead code."""
        extra = TensorSpec("trunk_tokens", (f"{timesteps}*{BATCH}", tokens, width))
        return GraphSpec(self.inputs, self.outputs + (extra,), self.opset, self.batch)

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    @property
    def output(self) -> TensorSpec:
        return self.outputs[0]

    def shape(self, tensor: TensorSpec, batch: int) -> tuple[int, ...]:
        return tensor.dims(batch)

    def check_inputs(self, feed: dict[str, np.ndarray]) -> int:
        """Names, dtypes, shapes and the batch range of a feed; returns its batch size."""
        names = [t.name for t in self.inputs]
        if sorted(feed) != sorted(names):
            raise SpecMismatch(f"the engine takes inputs {names}, got {sorted(feed)}")
        batch = int(feed[names[0]].shape[0]) if feed[names[0]].ndim else 0
        if not self.batch["min"] <= batch <= self.batch["max"]:
            raise SpecMismatch(f"batch {batch} is outside this engine's range {self.batch['min']}..{self.batch['max']}")
        for t in self.inputs:
            t.check(feed[t.name], batch, "input")
        return batch

    def check_outputs(self, outputs: dict[str, np.ndarray], batch: int) -> None:
        """Every declared output present with its declared dtype and shape (at export, on real runs)."""
        missing = [t.name for t in self.outputs if t.name not in outputs]
        if missing:
            raise SpecMismatch(f"the engine did not return {missing} (it returned {sorted(outputs)})")
        for t in self.outputs:
            t.check(outputs[t.name], batch, "output")

    def to_dict(self) -> dict:
        d = asdict(self)
        for group in ("inputs", "outputs"):
            for t in d[group]:
                t["shape"] = list(t["shape"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GraphSpec:
        return cls(inputs=tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
                   outputs=tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
                   opset=int(d.get("opset", 18)), batch={k: int(v) for k, v in d["batch"].items()})

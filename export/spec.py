"""One declarative description per exported graph (after optimum's export configs): it drives
``torch.onnx.export``, validation, the manifest and the Triton ``config.pbtxt``."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]  # "batch" marks the dynamic axis
    dtype: str = "float32"


@dataclass(frozen=True)
class GraphSpec:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int = 18
    batch: dict = field(default_factory=lambda: {"min": 1, "opt": 8, "max": 64})
    atol: float = 1e-3  # fp32 engine vs torch, max abs logit difference

    @classmethod
    def for_classifier(cls, image_size: int, num_classes: int, max_batch: int = 64) -> GraphSpec:
        return cls(inputs=(TensorSpec("images", ("batch", 1, image_size, image_size)),),
                   outputs=(TensorSpec("logits", ("batch", num_classes)),),
                   batch={"min": 1, "opt": min(8, max_batch), "max": max_batch})

    def with_trunk_output(self, timesteps: int, tokens: int, width: int) -> GraphSpec:
        """The full-trunk benchmark graph: the last block's tokens (T·batch, tokens, width) as a second
        output, so no block can be removed as dead code."""
        extra = TensorSpec("trunk_tokens", (f"{timesteps}*batch", tokens, width))
        return GraphSpec(self.inputs, self.outputs + (extra,), self.opset, self.batch, self.atol)

    def shape(self, tensor: TensorSpec, batch: int) -> tuple[int, ...]:
        return tuple(batch if d == "batch" else int(d) for d in tensor.shape)

    def to_dict(self) -> dict:
        d = asdict(self)
        for group in ("inputs", "outputs"):
            for t in d[group]:
                t["shape"] = list(t["shape"])
        return d

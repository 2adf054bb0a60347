"""Which parts of a model's exported graph run at which precision: the one module that knows the model's
module names (they become ONNX node and OpenVINO layer names at export, e.g. ``head.resnet.layer1/...``).
The generic builders ask the policy; ``docs/decisions/precision-policy.md`` holds the measurements behind it."""
from __future__ import annotations

from dataclasses import dataclass

from dcube_edge.errors import UserError


@dataclass(frozen=True)
class Policy:
    model: str
    int8_float_scopes: tuple[str, ...]  # left float by every int8 build (Q/DQ ONNX and NNCF)
    bf16_f32_scopes: tuple[str, ...]  # pinned to f32 first when a bf16 hint breaks parity
    # where float islands run f32, a part of the float scopes tried int8 too (kept only where timed faster)
    int8_trial_ignored: str | None  # NNCF ignored-scope pattern of that trial (None: no trial)
    int8_trial_name: str  # what the trial quantizes, for notes and the manifest
    int8_trial_parts: str  # the trial part's precision when kept ({float}: the islands' precision)
    pinned_name: str  # what bf16_f32_scopes is, for notes
    nncf_model_type: str | None = "transformer"  # nncf.ModelType member name, or None for a CNN

    def qdq_parts(self, precision: str) -> dict[str, str]:
        """What each part computes in, in the precision ONNX that ONNX Runtime and TensorRT run."""
        if precision == "int8":
            return {"trunk_matmuls": "int8 (Q/DQ, symmetric, per-channel weights)",
                    "resnet_guide_branch": "fp32", "rest_of_head": "fp32", "other_ops": "fp32"}
        if precision == "fp16":
            return {"all": "fp16 (LayerNorm/Softmax reductions fp32, I/O fp32)"}
        return {"all": precision}

    def ir_parts(self, precision: str, float_part: str, attention: str, guide: str, pinned: bool) -> dict[str, str]:
        """The same for an OpenVINO IR: ``float_part`` is the islands' precision, ``attention`` that of Q·Kᵀ and
        P·V, ``guide`` the guide branch's, ``pinned`` whether bf16_f32_scopes were pinned to f32."""
        if precision == "int8":
            return {"trunk_matmuls": "int8 (NNCF, symmetric, per-channel weights)", "attention_products": attention,
                    "resnet_guide_branch": guide, "rest_of_head": float_part, "other_ops": float_part}
        return {"all": float_part, "resnet_guide_branch": guide} if pinned else {"all": float_part}


# The step-2 head stays float in int8 engines: it reaches the output through a global sum pool and a sigmoid
# gate, which amplify quantization error; the trunk's MatMuls, where the FLOPs are, run int8. Where the float
# islands run f32 the guide branch's stages 2-4 are tried int8 (its stem and first stage stay float). Under a
# bf16 hint the guide branch is what flips predictions, so a parity fallback pins it to f32 first.
DCUBE = Policy("dcube", int8_float_scopes=("head",), bf16_f32_scopes=("head.resnet",),
               int8_trial_ignored=r"head[./](?!resnet\.layer[234][./]).*",
               int8_trial_name="ResNet guide branch stages 2-4",
               int8_trial_parts="int8 in stages 2-4, stem and stage 1 {float}", pinned_name="ResNet guide branch")



@dataclass(frozen=True)
class CNNPolicy(Policy):
    """A plain CNN baseline: every convolution int8, the final linear layer float (it is one small Gemm that
    writes the logits the operating point thresholds); no trial; under a bf16 hint that layer is pinned first."""

    def qdq_parts(self, precision: str) -> dict[str, str]:
        if precision == "int8":
            return {"convolutions": "int8 (Q/DQ, symmetric, per-channel weights)", "classifier_layer": "fp32",
                    "other_ops": "fp32"}
        return super().qdq_parts(precision)

    def ir_parts(self, precision: str, float_part: str, attention: str, guide: str, pinned: bool) -> dict[str, str]:
        if precision == "int8":
            return {"convolutions": "int8 (NNCF, symmetric, per-channel weights)", "classifier_layer": guide,
                    "other_ops": float_part}
        return {"all": float_part, "classifier_layer": guide} if pinned else {"all": float_part}


def cnn(model: str) -> CNNPolicy:
    return CNNPolicy(model, int8_float_scopes=("fc",), bf16_f32_scopes=("fc",), int8_trial_ignored=None,
                     int8_trial_name="", int8_trial_parts="{float}", pinned_name="classifier layer", nncf_model_type=None)


POLICIES = {p.model: p for p in (DCUBE, *(cnn(m) for m in ("resnet18", "resnet50", "branch")))}


def for_model(model: str) -> Policy:
    try:
        return POLICIES[model]
    except KeyError:
        raise UserError(f"no export precision policy for {model!r} runs (export takes: {', '.join(POLICIES)})") from None

"""What a backend's builder chose, and measured to choose it: the engine record's backend section, written under the
backend's name (``"openvino": {...}``). A runner reads its settings here (OpenVINO's inference-precision hint); the
record says from it whether an engine's choices were timed on the CPU that built it. Torch-free."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Choices:
    """The section every backend's choices share: nothing, unless a backend has a precision hint or timed its
    choices on the build machine."""

    def precision_hint(self) -> str | None:
        """The inference-precision hint the runtime compiles with, where the backend has one."""
        return None

    def timed_here(self) -> bool:
        """Whether a choice was kept because it measured faster on the CPU the engine was built on."""
        return False


@dataclass(frozen=True)
class Quantization:
    """NNCF's quantization of an IR: preset, model type, how many calibration images, what it left float."""

    tool: str = "nncf.quantize"
    preset: str = "performance (symmetric)"
    model_type: str = "default (CNN)"
    subset_size: int = 0
    ignored_scope_patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class AttentionChoice:
    """Q·Kᵀ and P·V int8 or at the float islands' precision, whichever was faster (export/openvino_checks.py)."""

    matmuls: str = "int8"
    choice: str = ""
    quantizers_removed: int | None = None
    latency_ms: dict[str, float] | None = None


@dataclass(frozen=True)
class TrialChoice:
    """The policy's int8 trial (D-Cube: the guide branch's stages 2-4 int8 where the islands run f32): kept where
    timed faster, ``undone`` by the parity fallback where it broke the tolerance."""

    choice: str = "float"
    int8_part: str = ""
    ignored_scope_pattern: str | None = None
    head_float_ignored_scope_patterns: tuple[str, ...] = ()
    latency_ms: dict[str, float] | None = None
    measured: str | None = None
    undone: str | None = None


@dataclass(frozen=True)
class OpenVINOChoices(Choices):
    inference_precision: str = "f32"  # the CPU plugin's hint: f32, bf16 or f16
    quantization: Quantization | None = None
    latency_by_hint_ms: dict[str, float] | None = None  # the speed check under a bf16 hint
    hint_choice: str | None = None
    attention: AttentionChoice | None = None
    guide_branch: TrialChoice | None = None
    f32_scopes: tuple[str, ...] | None = None  # modules marked `precise` in the IR by the parity fallback

    def precision_hint(self) -> str:
        return self.inference_precision

    def timed_here(self) -> bool:
        return bool(self.latency_by_hint_ms) or self.attention is not None


@dataclass(frozen=True)
class TensorRTChoices(Choices):
    strongly_typed: bool = True
    workspace_bytes: int = 0
    profile: dict[str, int] = field(default_factory=dict)
    timing_cache: str | None = None


@dataclass(frozen=True)
class TorchChoices(Choices):
    autocast: bool = False


# The section type of each backend that records choices (a backend without one writes no section).
BY_BACKEND: dict[str, type[Choices]] = {"openvino": OpenVINOChoices, "tensorrt": TensorRTChoices,
                                        "torch": TorchChoices}

"""What the CPU can run natively, from ``/proc/cpuinfo`` flags (torch-free).

Precision choices (training autocast, OpenVINO inference precision, benchmark peaks) are functions of
a flag set, so they are tested against given flag sets, not only against the machine running the tests."""
from __future__ import annotations

import functools
import os
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path

from dcube_edge.errors import Unavailable

# Flags worth recording with every figure: they decide which half/int8 units exist.
NOTABLE = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
           "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")


# oneDNN's dispatch cap (ONEDNN_MAX_CPU_ISA, honoured by PyTorch's and OpenVINO's oneDNN) in ascending order,
# each level with the flags it adds: a cap hides the units above it, e.g. AVX512_CORE_BF16 runs an AMX Xeon
# as the AVX512-BF16/VNNI class (an AMD EPYC's) for the same-machine comparison `make bench` files separately.
CAP_LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AVX2", ("avx2", "fma")), ("AVX2_VNNI", ("avx_vnni",)), ("AVX512_CORE", ("avx512f",)),
    ("AVX512_CORE_VNNI", ("avx512_vnni",)), ("AVX512_CORE_BF16", ("avx512_bf16",)),
    ("AVX512_CORE_FP16", ("avx512_fp16",)), ("AVX512_CORE_AMX", ("amx_tile", "amx_bf16", "amx_int8")),
    ("AVX512_CORE_AMX_FP16", ("amx_fp16",)))
CAP_ALIASES = {"AVX10_1_512": "AVX512_CORE_FP16", "AVX10_1_512_AMX": "AVX512_CORE_AMX",
               "AVX10_1_512_AMX_FP16": "AVX512_CORE_AMX_FP16"}


def isa_cap(env: Mapping[str, str] | None = None) -> str | None:
    """The oneDNN ISA cap in force (``ONEDNN_MAX_CPU_ISA``, or its older name ``DNNL_MAX_CPU_ISA``), if any."""
    env = os.environ if env is None else env
    value = (env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    value = CAP_ALIASES.get(value, value)
    return value if value in dict(CAP_LEVELS) else None


def capped(flags: Iterable[str], cap: str | None) -> frozenset[str]:
    """``flags`` less the units above ``cap`` (a CAP_LEVELS name; None or unknown: no cap)."""
    names = [name for name, _ in CAP_LEVELS]
    if cap not in names:
        return frozenset(flags)
    hidden = {f for name, added in CAP_LEVELS[names.index(cap) + 1:] for f in added}
    return frozenset(flags) - hidden


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags as the inference libraries see them: /proc/cpuinfo less what an ISA cap hides
    (empty where /proc/cpuinfo is unreadable, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return capped(line.split(":", 1)[1].split(), isa_cap())
    return frozenset()


def notable(flags: Iterable[str] | None = None) -> list[str]:
    have = cpu_flags() if flags is None else frozenset(flags)
    return [f for f in NOTABLE if f in have]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def describe(flags: Iterable[str] | None = None) -> str:
    """One line for reports: CPU model and the flags that matter (and the ISA cap that hid others)."""
    cap = f"; ONEDNN_MAX_CPU_ISA={isa_cap()}" if flags is None and isa_cap() else ""
    return f"{cpu_model()} ({' '.join(notable(flags)) or 'no AVX-512/AMX'}{cap})"


def recorded(machine: dict) -> str:
    """The ISA a bench/report record names: its flags, and the cap they were measured under."""
    flags = " ".join(machine.get("isa") or []) or "no ISA flags read"
    return flags + (f"; AMX and others hidden by ONEDNN_MAX_CPU_ISA={machine['isa_cap']}" if machine.get("isa_cap") else "")


def has_bf16(flags: Iterable[str] | None = None) -> bool:
    """bf16 dot products in hardware: AMX-BF16 tiles or AVX512-BF16."""
    have = cpu_flags() if flags is None else frozenset(flags)
    return bool({"amx_bf16", "avx512_bf16"} & have)


def has_amx(flags: Iterable[str] | None = None) -> bool:
    have = cpu_flags() if flags is None else frozenset(flags)
    return {"amx_tile", "amx_bf16"} <= have


def has_native_fp16(flags: Iterable[str] | None = None) -> bool:
    """fp16 GEMMs at full rate: only AMX-FP16. AVX512-FP16 alone was measured slower than fp32 in
    OpenVINO (docs/benchmarks.md), so it does not count."""
    have = cpu_flags() if flags is None else frozenset(flags)
    return "amx_fp16" in have


def has_int8_dot(flags: Iterable[str] | None = None) -> bool:
    have = cpu_flags() if flags is None else frozenset(flags)
    return bool({"amx_int8", "avx512_vnni", "avx_vnni"} & have)


def training_autocast(width: int, flags: Iterable[str] | None = None, cuda: bool = False) -> str:
    """Step-1 autocast for ``--amp auto``: bf16 where the hardware has it and the GEMMs are large enough
    to gain from it. Measured on a 2-core AMX Xeon (PyTorch 2.13 CPU, 32 px, batch 64, steps/s fp32 vs bf16):
    width 96 2.75 vs 1.80, width 256 0.64 vs 0.57, width 512 0.18 vs 0.28 — the casts cost more than narrow
    GEMMs gain, so only paper-width trunks use bf16 on a CPU."""
    if cuda:
        return "bf16"
    return "bf16" if has_bf16(flags) and width >= 512 else "none"


class PrecisionUnavailable(Unavailable):
    """A precision this CPU cannot run as asked; the message names what it can."""


def openvino_hint(precision: str, flags: Iterable[str] | None = None) -> str:
    """OpenVINO CPU inference-precision hint for an engine precision (for int8: of its float islands).

    fp32 → f32; bf16 → bf16 where AMX-BF16 or AVX512-BF16 exists; fp16 → f16 only with AMX-FP16 (the
    only CPU unit that runs it faster than fp32); int8 → its float parts in bf16 where the CPU has it,
    else f32 (export keeps bf16 only where it measured faster than f32 and parity holds)."""
    if precision == "fp32":
        return "f32"
    if precision == "bf16":
        if not has_bf16(flags):
            raise PrecisionUnavailable("bf16 needs AMX-BF16 or AVX512-BF16, which this CPU lacks; "
                                       "use --precision fp32 or int8, or export on the workstation that will run it")
        return "bf16"
    if precision == "fp16":
        if not has_native_fp16(flags):
            alt = "bf16" if has_bf16(flags) else "fp32 or int8"
            raise PrecisionUnavailable(f"fp16 on an OpenVINO CPU runs natively only with AMX-FP16, which this CPU "
                                       f"lacks (it would be slower than fp32); use --precision {alt}")
        return "f16"
    if precision == "int8":
        return "bf16" if has_bf16(flags) else "f32"
    raise PrecisionUnavailable(f"unknown precision {precision!r}")


def tag(flags: Iterable[str] | None = None) -> str:
    """A short name for the CPU class, used to file benchmark tables: amx, avx512-bf16, avx512, avx2, other;
    ``-capped`` where an ISA cap made a bigger CPU play that class (its tables are not a real one's)."""
    have = cpu_flags() if flags is None else frozenset(flags)
    if has_amx(have):
        name = "amx"
    elif has_bf16(have):
        name = "avx512-bf16"
    else:
        name = "avx512" if "avx512f" in have else "avx2" if "avx2" in have else "other"
    return f"{name}-capped" if flags is None and isa_cap() else name

"""What the machine computes natively, and the training precision that follows from it.

``mixed_precision="auto"`` turns on bf16 autocast only where bf16 matmuls run in hardware: a CUDA GPU that supports
bf16, or a CPU with AMX-BF16 / AVX512-BF16. Elsewhere oneDNN emulates bf16 with fp32 instructions plus conversions,
which is slower than plain fp32 (measured on an AVX2-only EPYC: several times slower), so "auto" keeps fp32 there.
The choice and its reason are recorded in every run's provenance.

The resolver is a pure function of what was detected, so a test can state "a CPU without bf16 trains in fp32"
without owning such a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Linux /proc/cpuinfo flags that mean bf16 dot products in hardware (Intel Sapphire Rapids+: AMX; Cooper Lake,
# AMD Zen 4+: AVX512-BF16). avx512f alone is not enough: oneDNN then converts bf16 to fp32 around every FMA.
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Hardware:
    """What training will run on, as far as precision is concerned."""
    device: str                      # "cuda" or "cpu"
    cuda_bf16: bool = False          # torch.cuda.is_bf16_supported() on the device used
    cpu_flags: frozenset[str] = frozenset()
    cpu_capability: str = ""         # torch.backends.cpu.get_cpu_capability(): "AVX2", "AVX512", ...

    @property
    def native_cpu_bf16(self) -> list[str]:
        return [flag for flag in NATIVE_BF16_CPU_FLAGS if flag in self.cpu_flags]


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run trains in: what was asked, what it resolved to (Accelerate's names: no, bf16, fp16),
    and why, in words for config.json and the run header."""
    requested: str
    resolved: str
    reason: str

    def as_record(self) -> dict[str, str]:
        return {"mixed_precision_requested": self.requested, "mixed_precision": self.resolved,
                "mixed_precision_reason": self.reason}


def parse_cpu_flags(cpuinfo_text: str) -> frozenset[str]:
    """The feature flags of the first processor in a /proc/cpuinfo text (x86 'flags', Arm 'Features')."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def read_cpu_flags() -> frozenset[str]:
    try:
        return parse_cpu_flags(CPUINFO.read_text())
    except OSError:  # not Linux: no flags known, so "auto" stays on fp32
        return frozenset()


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def detect() -> Hardware:
    """The hardware this process trains on (CUDA if present, as Accelerate picks it)."""
    import torch

    if torch.cuda.is_available():
        return Hardware("cuda", cuda_bf16=torch.cuda.is_bf16_supported())
    return Hardware("cpu", cpu_flags=read_cpu_flags(), cpu_capability=torch.backends.cpu.get_cpu_capability())


def resolve_precision(requested: str, hardware: Hardware) -> PrecisionChoice:
    """``requested`` (auto, no, bf16, fp16) on ``hardware`` -> the precision used and why. fp16 on a CPU is refused
    earlier, at config validation (config.TrainConfig.problems)."""
    if requested == "no":
        return PrecisionChoice(requested, "no", "fp32: asked for (mixed precision off)")
    if requested in ("bf16", "fp16"):
        slow = requested == "bf16" and hardware.device == "cpu" and not hardware.native_cpu_bf16
        note = " (this CPU has no native bf16: it is emulated and usually slower than fp32)" if slow else ""
        return PrecisionChoice(requested, requested, f"{requested} autocast: asked for{note}")
    if hardware.device == "cuda":
        if hardware.cuda_bf16:
            return PrecisionChoice(requested, "bf16", "bf16 autocast: auto, the CUDA device supports bf16")
        return PrecisionChoice(requested, "no", "fp32: auto, the CUDA device has no bf16 (fp16 must be asked for)")
    if hardware.native_cpu_bf16:
        return PrecisionChoice(requested, "bf16",
                               f"bf16 autocast: auto, the CPU has {' and '.join(hardware.native_cpu_bf16)}")
    capability = f" ({hardware.cpu_capability})" if hardware.cpu_capability else ""
    return PrecisionChoice(requested, "no", f"fp32: auto, the CPU{capability} has no amx_bf16 / avx512_bf16, "
                                            "so bf16 would be emulated and slower")


def training_precision(requested: str) -> PrecisionChoice:
    """resolve_precision on this machine."""
    return resolve_precision(requested, detect())

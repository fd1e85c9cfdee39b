"""What the machine computes natively, the training precision that follows from it, and the machine description
every benchmark result carries.

``mixed_precision="auto"`` turns on bf16 autocast only where bf16 matmuls run in hardware: a CUDA GPU that supports
bf16, or a CPU with AMX-BF16 / AVX512-BF16. Elsewhere oneDNN emulates bf16 with fp32 instructions plus conversions,
which is slower than plain fp32 (measured on an AVX2-only EPYC: several times slower), so "auto" keeps fp32 there.
The choice and its reason are recorded in every run's provenance.

The resolver is a pure function of what was detected, so a test can state "a CPU without bf16 trains in fp32"
without owning such a CPU.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Linux /proc/cpuinfo flags that mean bf16 dot products in hardware (Intel Sapphire Rapids+: AMX; Cooper Lake,
# AMD Zen 4+: AVX512-BF16). avx512f alone is not enough: oneDNN then converts bf16 to fp32 around every FMA.
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")
# The CPU features that decide whether bf16/int8 can be faster than fp32; recorded so a result can be explained.
BENCHMARK_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


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


def parse_cpu_model(cpuinfo_text: str) -> str:
    """The first processor's model name in a /proc/cpuinfo text, or "" when it has none."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return ""


def _cpuinfo_text() -> str:
    try:
        return CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: no flags known, so "auto" stays on fp32
        return ""


def read_cpu_flags() -> frozenset[str]:
    return parse_cpu_flags(_cpuinfo_text())


def machine_info() -> dict[str, Any]:
    """What a benchmark result depends on: CPU model and features, core counts, torch threads and version, date."""
    import torch

    text = _cpuinfo_text()
    flags = parse_cpu_flags(text)
    try:
        usable_cores: int | None = len(os.sched_getaffinity(0))  # respects taskset/cgroup cpusets, unlike cpu_count
    except AttributeError:  # not Linux
        usable_cores = os.cpu_count()
    return {
        "cpu_model": parse_cpu_model(text) or platform.processor() or platform.machine() or "unknown",
        "cpu_flags": [flag for flag in BENCHMARK_CPU_FLAGS if flag in flags],
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@functools.cache
def detect() -> Hardware:
    """The hardware this process trains on (CUDA if present, as Accelerate picks it); asked once per process
    (several parts of a run resolve ``auto`` settings from it, and it reads /proc/cpuinfo)."""
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

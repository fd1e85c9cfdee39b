"""Optionally give freed tensor memory back to the operating system during training (glibc Linux): less memory,
slower training. Off unless ``KD_MALLOC_MMAP_THRESHOLD`` asks for it.

PyTorch's CPU tensors come from ``malloc``. glibc serves a block above its mmap threshold with its own ``mmap``
and unmaps it on ``free``; below the threshold the block comes from a heap that keeps freed memory for reuse.
The threshold starts at 128 KiB but is *dynamic*: each freed mmapped block raises it to that block's size (up to
32 MiB). After a few steps of training every activation tensor (1-30 MB here) is a heap block, and the heap
grows to the sum of the largest shapes seen at different times (length-grouped batches change shape every step;
validation batches are 4x larger), so the resident set ends far above what is alive at any moment.

Fixing the threshold (``KD_MALLOC_MMAP_THRESHOLD=1048576``: 1 MiB) keeps every activation-sized block in its own
mapping, returned on ``free``. Measured on the offline pair (BENCHMARKS.md sections 4 and 4b): peak RSS of a
2,000-row distillation 2,197 -> 1,413 MB, but training 1.48x slower, because every fresh mapping is faulted in
and zeroed page by page on each step. Speed is what most users wait for, so the default leaves glibc alone
(unset or 0); set the variable where memory is the limit. Small blocks (strings, Python objects) stay on the
heap either way. On other C libraries and platforms nothing changes, and the run's status says so.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

from .errors import UserError

ENV_VAR = "KD_MALLOC_MMAP_THRESHOLD"
LOW_MEMORY_THRESHOLD_BYTES = 1 << 20  # the value measured in BENCHMARKS.md
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
_applied: dict[str, Any] = {"malloc_mmap_threshold": None, "malloc_mmap_threshold_why": "not set yet"}


def threshold_from_env() -> int:
    """The threshold to set, in bytes (0, the default = leave the C library alone); a bad value is refused by name."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise UserError(f"{ENV_VAR} must be a whole number of bytes (0 = glibc's default), got {raw!r}: fix or "
                        "unset it")
    return int(raw)


def _glibc_mallopt():
    """glibc's ``mallopt``, or None where the C library is not glibc (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it; musl's mallopt ignores the setting)
    except (OSError, AttributeError):
        return None
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def return_freed_memory_to_os() -> dict[str, Any]:
    """Fix malloc's mmap threshold for this process if asked (see the module docstring); the result, for the run.

    Idempotent. Call it before the models load, so their weights and every later activation follow the rule."""
    threshold = threshold_from_env()
    if threshold == 0:
        why = f"the C library's default (dynamic threshold; {ENV_VAR} unset or 0)"
    elif (mallopt := _glibc_mallopt()) is None:
        threshold, why = 0, "not glibc Linux: the C library's default"
    elif mallopt(M_MMAP_THRESHOLD, min(threshold, 2**31 - 1)) != 1:
        threshold, why = 0, f"glibc refused mallopt(M_MMAP_THRESHOLD, {threshold}): the default"
    else:
        why = "blocks of this size or more are mmapped and given back on free"
    _applied.update(malloc_mmap_threshold=threshold or None, malloc_mmap_threshold_why=why)
    return dict(_applied)


def applied() -> dict[str, Any]:
    """What return_freed_memory_to_os set in this process (train.execute records it in the run's status)."""
    return dict(_applied)

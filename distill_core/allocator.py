"""Give freed tensor memory back to the operating system during training (glibc Linux).

One default and two opt-in levers, all about the same glibc behaviour (explained below):

* **Trim after each evaluation pass** (default; ``KD_MALLOC_TRIM_AFTER_EVAL=0`` turns it off): ``malloc_trim(0)``
  after the teacher's logit pass, before and after each validation and after test scoring. Those passes run the
  run's largest batches; once they end, their freed pages would stay resident through the next epoch. A handful
  of calls per run (BENCHMARKS.md section 4e measures the defaults it belongs to).
* **Trim every N steps** (``KD_MALLOC_TRIM_EVERY=10``): ``malloc_trim(0)`` every that many training steps too
  hands the heap's free pages back. Interleaved A/B on the offline pair (BENCHMARKS.md section
  4c, 2 rounds, load ~4): peak RSS 2,137 -> 1,947 MB, training x1.10 slower (pages given back are faulted in
  and zeroed again on the next steps). With ``--freeze-embeddings --attention-dropout 0`` it is the run measured
  at 1,407 MB.
* **Fixed mmap threshold** (``KD_MALLOC_MMAP_THRESHOLD``): less memory again, slower training.

PyTorch's CPU tensors come from ``malloc``. glibc serves a block above its mmap threshold with its own ``mmap``
and unmaps it on ``free``; below the threshold the block comes from a heap that keeps freed memory for reuse.
The threshold starts at 128 KiB but is *dynamic*: each freed mmapped block raises it to that block's size (up to
32 MiB). After a few steps of training every activation tensor (1-30 MB here) is a heap block, and the heap
grows to the sum of the largest shapes seen at different times (length-grouped batches change shape every step;
validation batches are 4x larger), so the resident set ends far above what is alive at any moment. Padding batch
lengths to a multiple of 16 tokens (config ``pad_to_multiple_of``; automatic under bf16) makes shapes repeat, so
freed blocks fit the next step's tensors.

Fixing the threshold (``KD_MALLOC_MMAP_THRESHOLD=1048576``: 1 MiB) keeps every activation-sized block in its own
mapping, returned on ``free``. Measured on the offline pair (BENCHMARKS.md sections 4 and 4b): peak RSS of a
2,000-row distillation 2,197 -> 1,413 MB, but training 1.48x slower, because every fresh mapping is faulted in
and zeroed page by page on each step. Speed is what most users wait for, so by default the threshold stays glibc's
(unset or 0); set the variable where memory is the limit. Small blocks (strings, Python objects) stay on the
heap either way. On other C libraries and platforms nothing changes, and the run's status says so.

Where tcmalloc is installed, training commands run on it instead (distill_core/malloc_choice.py: x0.89 the time
at the same peak, BENCHMARKS.md 4g) and none of the glibc levers here applies; a run's status records which
malloc served it, why, and that the glibc settings were not applied.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from pathlib import Path
from typing import Any

from . import malloc_choice
from .errors import UserError

ENV_VAR = "KD_MALLOC_MMAP_THRESHOLD"
TRIM_ENV_VAR = "KD_MALLOC_TRIM_EVERY"
TRIM_AFTER_EVAL_ENV_VAR = "KD_MALLOC_TRIM_AFTER_EVAL"
DEFAULT_TRIM_EVERY_STEPS = 0  # off: x1.10 slower training measured for 10% less peak memory (module docstring)
LOW_MEMORY_TRIM_EVERY_STEPS = 10  # the value measured in BENCHMARKS.md section 4c
LOW_MEMORY_THRESHOLD_BYTES = 1 << 20  # the value measured in BENCHMARKS.md
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
_applied: dict[str, Any] = {"malloc": None, "malloc_why": None, "malloc_mmap_threshold": None,
                            "malloc_mmap_threshold_why": "not set yet",
                            "malloc_trim_every_steps": None, "malloc_trim_after_eval": None}


def _whole_number_from_env(name: str, default: int, unit: str) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise UserError(f"{name} must be a whole number of {unit}, got {raw!r}: fix or unset it")
    return int(raw)


def threshold_from_env() -> int:
    """The threshold to set, in bytes (0, the default = leave the C library alone); a bad value is refused by name."""
    return _whole_number_from_env(ENV_VAR, 0, "bytes (0 = glibc's default)")


def trim_every_from_env() -> int:
    """Training steps between two trims (0 = never); a bad value is refused by name."""
    return _whole_number_from_env(TRIM_ENV_VAR, DEFAULT_TRIM_EVERY_STEPS, "training steps (0 = never trim)")


def trim_after_eval_from_env() -> bool:
    """Whether evaluation passes end with a trim (unset or 1: yes; 0: no); any other value is refused by name."""
    raw = os.environ.get(TRIM_AFTER_EVAL_ENV_VAR, "").strip()
    if raw not in ("", "0", "1"):
        raise UserError(f"{TRIM_AFTER_EVAL_ENV_VAR} must be 1 (trim after evaluation passes, the default) or 0, "
                        f"got {raw!r}: fix or unset it")
    return raw != "0"


@functools.cache
def _glibc():
    """The C library when it is glibc, else None (musl, macOS, Windows: nothing here applies); looked up once."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it; musl's mallopt ignores the setting)
    except (OSError, AttributeError):
        return None
    return libc


def _glibc_mallopt():
    """glibc's ``mallopt``, or None where the C library is not glibc."""
    libc = _glibc()
    if libc is None:
        return None
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, typed, or None where the C library is not glibc; looked up once."""
    libc = _glibc()
    if libc is None:
        return None
    function = libc.malloc_trim
    function.argtypes, function.restype = [ctypes.c_size_t], ctypes.c_int
    return function


def release_free_heap() -> bool:
    """Hand the heap's free pages back to the OS now (glibc's ``malloc_trim(0)``); whether anything was released.

    Called around evaluation passes, whose batches are the largest tensors of a run (without it their freed pages
    stay resident for the rest of the run), and every ``trim_every`` steps when asked. Nothing happens before
    return_freed_memory_to_os ran, or when it found both trims off (``KD_MALLOC_TRIM_AFTER_EVAL=0`` and no
    ``KD_MALLOC_TRIM_EVERY``)."""
    wanted = _applied["malloc_trim_after_eval"] or _applied["malloc_trim_every_steps"]
    if not wanted or (function := _malloc_trim()) is None:
        return False
    return bool(function(0))


def trim_due(step: int) -> bool:
    """Whether the loop trims after optimiser step ``step`` (never when trimming is off or unavailable)."""
    every = _applied["malloc_trim_every_steps"]
    return bool(every) and step % every == 0


def return_freed_memory_to_os() -> dict[str, Any]:
    """Fix malloc's mmap threshold for this process if asked, and set how often the loop trims the heap (see the
    module docstring); the result, for the run, with the malloc that serves the process and why.

    Idempotent. Call it before the models load, so their weights and every later activation follow the rule.
    Under a preloaded malloc (tcmalloc: distill_core.malloc_choice) glibc's heap holds no tensors, so the glibc
    settings are recorded as not applied instead of as applied to nothing."""
    malloc = malloc_library()
    malloc_why = malloc_choice.record_reason(os.environ, malloc)  # a bad KD_MALLOC is refused here, by name
    threshold, why = _apply_threshold(threshold_from_env(), malloc)
    heap_is_glibc = malloc == "glibc"
    trim_every = trim_every_from_env() if heap_is_glibc else 0
    _applied.update(malloc=malloc, malloc_why=malloc_why, malloc_mmap_threshold=threshold or None,
                    malloc_mmap_threshold_why=why, malloc_trim_every_steps=trim_every,
                    malloc_trim_after_eval=heap_is_glibc and trim_after_eval_from_env())
    return dict(_applied)


def _apply_threshold(threshold: int, malloc: str) -> tuple[int, str]:
    """(threshold set, why) for a requested ``threshold`` in bytes (0 = leave the C library alone)."""
    if threshold == 0:
        return 0, f"the C library's default (dynamic threshold; {ENV_VAR} unset or 0)"
    mallopt = _glibc_mallopt()
    if malloc != "glibc" or mallopt is None:
        return 0, f"not applied: {malloc} serves malloc, and {ENV_VAR} is a glibc setting"
    if mallopt(M_MMAP_THRESHOLD, min(threshold, 2**31 - 1)) != 1:
        return 0, f"glibc refused mallopt(M_MMAP_THRESHOLD, {threshold}): the default"
    return threshold, "blocks of this size or more are mmapped and given back on free"


def malloc_library(maps_text: str | None = None) -> str:
    """Which malloc serves this process: a preloaded one (tcmalloc: distill_core.malloc_choice; BENCHMARKS.md 4g)
    found in /proc/self/maps, else "glibc" or "the C library's"."""
    if maps_text is None:
        try:
            maps_text = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
        except OSError:
            maps_text = ""
    return malloc_choice.malloc_named_in(maps_text) or ("glibc" if _glibc() is not None else "the C library's")


def applied() -> dict[str, Any]:
    """What return_freed_memory_to_os set in this process (train.execute records it in the run's status)."""
    return dict(_applied)

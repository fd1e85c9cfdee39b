"""Which malloc a training process runs on: gperftools' tcmalloc where it is installed, chosen before start.

Why: on the offline pair, a distillation run on tcmalloc took x0.89 the time of the same run on glibc's malloc at
the same peak memory (BENCHMARKS.md section 4g). glibc's heap fragments under activations whose shapes change
every step (distill_core/allocator.py explains how); tcmalloc keeps per-size free lists instead. PyTorch's own CPU
tuning guide recommends the same preload.

How: a malloc is replaced only by ``LD_PRELOAD`` at process start, so ``python -m distill_core`` checks this
before importing anything heavy and, for the commands that train or time training (``TRAINING_COMMANDS``),
re-executes itself once with tcmalloc preloaded. ``execve`` keeps the process id, its start time, its arguments
and open files, so callers that recorded the pid (the dashboard's job store) see the same process.

``KD_MALLOC`` chooses:

* ``auto`` (default): tcmalloc when installed (Debian/Ubuntu ``libtcmalloc-minimal4``), else the C library's.
  glibc stays when a glibc-only memory lever is set (``KD_MALLOC_MMAP_THRESHOLD``, ``KD_MALLOC_TRIM_EVERY``):
  those ask for glibc's heap, and under tcmalloc they would do nothing.
* ``tcmalloc``: tcmalloc, and an error naming the variable where it is not installed.
* ``system``: the C library's malloc.

A malloc the caller already preloaded (the Docker image sets ``LD_PRELOAD``; or jemalloc by hand) is left alone.
Each run records the malloc that served it and why (``allocator.malloc`` and ``malloc_why`` in status.json).
"""
from __future__ import annotations

import ctypes.util
import functools
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from .errors import UserError

ENV_VAR = "KD_MALLOC"
CHOICES = ("auto", "tcmalloc", "system")
# Set on the re-executed process, so its run record can say that KD Studio chose the malloc, not the caller.
PRELOADED_HERE_ENV_VAR = "KD_MALLOC_PRELOADED"
GLIBC_LEVERS = ("KD_MALLOC_MMAP_THRESHOLD", "KD_MALLOC_TRIM_EVERY")  # distill_core.allocator's opt-in settings
PRELOADABLE_MALLOCS = ("tcmalloc", "jemalloc", "mimalloc")
TCMALLOC_LIBRARIES = ("tcmalloc_minimal", "tcmalloc")  # the minimal one has no heap profiler: less to load
TRAINING_COMMANDS = frozenset({"finetune", "distill", "pipeline", "sweep", "resume", "worker", "showcase",
                               "estimate", "probe"})  # estimate and probe time training steps: the same malloc
INSTALL_HINT = "apt install libtcmalloc-minimal4"


def choice(environ: Mapping[str, str]) -> str:
    """``KD_MALLOC``'s value (default auto); anything else is refused by name."""
    raw = environ.get(ENV_VAR, "").strip().lower() or "auto"
    if raw not in CHOICES:
        raise UserError(f"{ENV_VAR} must be one of {', '.join(CHOICES)}, got {environ.get(ENV_VAR)!r}: "
                        "fix or unset it")
    return raw


def preloaded_malloc(environ: Mapping[str, str]) -> str | None:
    """The malloc named in ``LD_PRELOAD`` (tcmalloc, jemalloc, mimalloc), or None."""
    preload = environ.get("LD_PRELOAD", "")
    return next((name for name in PRELOADABLE_MALLOCS if f"lib{name}" in preload), None)


@functools.cache
def find_tcmalloc() -> str | None:
    """tcmalloc's shared library name as the dynamic linker knows it (e.g. libtcmalloc_minimal.so.4), or None."""
    return next(filter(None, map(ctypes.util.find_library, TCMALLOC_LIBRARIES)), None)


def plan(environ: Mapping[str, str], *, platform: str = sys.platform,
         find: Callable[[], str | None] = find_tcmalloc) -> tuple[str | None, str]:
    """(library to preload or None, why) for a process started with ``environ``: the rule in the docstring.
    Pure apart from ``find``, which is only called when the answer depends on it."""
    wanted = choice(environ)
    if PRELOADED_HERE_ENV_VAR in environ and preloaded_malloc(environ):
        return None, f"{ENV_VAR}={wanted}: tcmalloc preloaded by KD Studio at start (BENCHMARKS.md 4g)"
    if (already := preloaded_malloc(environ)) is not None:
        return None, f"{already}: LD_PRELOAD set by whoever started the process"
    if wanted == "system":
        return None, f"{ENV_VAR}=system: the C library's malloc"
    if not platform.startswith("linux"):
        return None, "not Linux: the C library's malloc (LD_PRELOAD is a Linux mechanism)"
    lever = next((name for name in GLIBC_LEVERS if environ.get(name, "").strip() not in ("", "0")), None)
    if wanted == "auto" and lever:
        return None, f"{ENV_VAR}=auto: glibc's malloc, because {lever} is a glibc setting"
    library = find()
    if library is None:
        if wanted == "tcmalloc":
            raise UserError(f"{ENV_VAR}=tcmalloc but tcmalloc is not installed: {INSTALL_HINT}, or unset {ENV_VAR}")
        return None, f"{ENV_VAR}=auto: the C library's malloc (tcmalloc not installed: {INSTALL_HINT})"
    return library, f"{ENV_VAR}={wanted}: tcmalloc preloaded by KD Studio at start (BENCHMARKS.md 4g)"


def record_reason(environ: Mapping[str, str], serving: str) -> str:
    """Why ``serving`` (distill_core.allocator.malloc_library()) serves this process, for the run record."""
    library, why = plan(environ)
    asked = preloaded_malloc(environ)
    if asked and asked != serving:
        return f"LD_PRELOAD names {asked}, but it did not load: {serving}"
    if library is not None:  # plan would preload, so this process did not start as `python -m distill_core`
        return (f"{ENV_VAR}={choice(environ)}: {serving}; {ENV_VAR} acts when `python -m distill_core` starts a "
                "training command, not in a process that imports distill_core")
    return why


def preloading_environment(environ: Mapping[str, str], library: str) -> dict[str, str]:
    """``environ`` with ``library`` first in LD_PRELOAD and the mark that KD Studio put it there."""
    preload = " ".join(filter(None, [library, environ.get("LD_PRELOAD", "").strip()]))
    return {**environ, "LD_PRELOAD": preload, PRELOADED_HERE_ENV_VAR: "1",
            # tcmalloc prints a line for every allocation over 1 GiB (a large tokenised split): not for users
            "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": environ.get("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD",
                                                                 str(1 << 40))}


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand of ``python -m distill_core`` argv (sys.argv[1:]), or None: the first word not a flag."""
    return next((word for word in argv if not word.startswith("-")), None)


def reexec_with_chosen_malloc(argv: Sequence[str] | None = None) -> None:
    """Re-execute this ``python -m distill_core`` process with tcmalloc preloaded when ``plan`` asks for it and
    the command trains (never returns then); otherwise return and let the command run as it is.

    A bad ``KD_MALLOC`` is left for the command to report (``allocator`` reads it again) instead of failing here,
    before the CLI can print errors its usual way."""
    argv = sys.argv[1:] if argv is None else argv
    if command_of(argv) not in TRAINING_COMMANDS:
        return
    try:
        library, _ = plan(os.environ)
    except UserError:
        return
    if library is None:
        return
    try:
        os.execve(sys.executable, sys.orig_argv, preloading_environment(os.environ, library))
    except OSError:
        return  # could not re-execute (unusual interpreter setups): run on the C library's malloc

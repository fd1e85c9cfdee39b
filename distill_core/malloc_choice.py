"""Which malloc a training process runs on: gperftools' tcmalloc where it is installed, chosen before start.

Why: on the offline pair, a distillation run on tcmalloc took x0.89-0.93 the time of the same run on glibc's malloc
at the same or a lower peak (BENCHMARKS.md sections 4g, 7d), and in fp32 it peaked ~300 MB lower (4h). glibc's
heap fragments under activations whose shapes change every step (distill_core/allocator.py explains how); tcmalloc
keeps per-size free lists instead. PyTorch's own CPU tuning guide recommends the same preload.

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

Under ``auto`` a malloc the caller already preloaded (the Docker image sets ``LD_PRELOAD``; or jemalloc by hand) is
left alone; an explicit ``tcmalloc`` or ``system`` replaces it.
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


def malloc_named_in(text: str) -> str | None:
    """The preloadable malloc (tcmalloc, jemalloc, mimalloc) whose library ``text`` names: an LD_PRELOAD value,
    one of its entries, or /proc/self/maps; None if none."""
    return next((name for name in PRELOADABLE_MALLOCS if f"lib{name}" in text), None)


def preloaded_malloc(environ: Mapping[str, str]) -> str | None:
    """The malloc named in ``LD_PRELOAD``, or None."""
    return malloc_named_in(environ.get("LD_PRELOAD", ""))


@functools.cache
def find_tcmalloc() -> str | None:
    """tcmalloc's shared library name as the dynamic linker knows it (e.g. libtcmalloc_minimal.so.4), or None."""
    return next(filter(None, map(ctypes.util.find_library, TCMALLOC_LIBRARIES)), None)


def _without_mallocs(preload: str) -> str:
    """LD_PRELOAD's value without the mallocs in it (entries are separated by spaces or colons)."""
    return " ".join(entry for entry in preload.replace(":", " ").split() if malloc_named_in(entry) is None)


def plan(environ: Mapping[str, str], *, platform: str = sys.platform,
         find: Callable[[], str | None] = find_tcmalloc) -> tuple[str | None, str]:
    """(the LD_PRELOAD to re-execute with, or None to run as started; why) for a process started with
    ``environ``: the rule in the module docstring. An explicit ``KD_MALLOC`` wins over a malloc the caller
    preloaded; ``auto`` leaves it. Pure apart from ``find``, called only when the answer depends on it."""
    wanted, already = choice(environ), preloaded_malloc(environ)
    if wanted == "system":  # re-executed without the preloaded malloc, if there is one
        return (_without_mallocs(environ.get("LD_PRELOAD", "")) if already else None,
                f"{ENV_VAR}=system: the C library's malloc")
    if already == "tcmalloc" and PRELOADED_HERE_ENV_VAR in environ:
        return None, f"{ENV_VAR}={wanted}: tcmalloc preloaded by KD Studio at start (BENCHMARKS.md 4g)"
    if already == "tcmalloc" or (already and wanted == "auto"):
        return None, f"{already}: LD_PRELOAD set by whoever started the process"
    if not platform.startswith("linux"):
        if wanted == "tcmalloc":
            raise UserError(f"{ENV_VAR}=tcmalloc needs Linux (it is loaded with LD_PRELOAD): unset {ENV_VAR}")
        return None, "not Linux: the C library's malloc (LD_PRELOAD is a Linux mechanism)"
    lever = next((name for name in GLIBC_LEVERS if environ.get(name, "").strip() not in ("", "0")), None)
    if wanted == "auto" and lever:
        return None, f"{ENV_VAR}=auto: glibc's malloc, because {lever} is a glibc setting"
    library = find()
    if library is None:
        if wanted == "tcmalloc":
            raise UserError(f"{ENV_VAR}=tcmalloc but tcmalloc is not installed: {INSTALL_HINT}, or unset {ENV_VAR}")
        return None, f"{ENV_VAR}=auto: the C library's malloc (tcmalloc not installed: {INSTALL_HINT})"
    preload = " ".join(filter(None, [library, _without_mallocs(environ.get("LD_PRELOAD", ""))]))
    return preload, f"{ENV_VAR}={wanted}: tcmalloc preloaded by KD Studio at start (BENCHMARKS.md 4g)"


_reexec_failed: list[str] = []  # why this process could not re-execute itself, for the record


def record_reason(environ: Mapping[str, str], serving: str) -> str:
    """Why ``serving`` (distill_core.allocator.malloc_library()) serves this process, for the run record."""
    preload, why = plan(environ)
    if preload is not None:  # the rule asks for another malloc than this process started with
        if _reexec_failed:
            return f"{ENV_VAR}={choice(environ)}: {serving}; re-executing with another malloc failed: " \
                   f"{_reexec_failed[0]}"
        return (f"{ENV_VAR}={choice(environ)}: {serving}; {ENV_VAR} acts when `python -m distill_core` starts a "
                "training command, not in a process that imports distill_core")
    asked = preloaded_malloc(environ)
    if asked and asked != serving:
        return f"LD_PRELOAD names {asked}, but it did not load: {serving}"
    return why


def preloading_environment(environ: Mapping[str, str], preload: str) -> dict[str, str]:
    """``environ`` with LD_PRELOAD = ``preload`` (removed when empty) and, when that holds tcmalloc, the mark
    that KD Studio put it there."""
    changed = {key: value for key, value in environ.items() if key not in ("LD_PRELOAD", PRELOADED_HERE_ENV_VAR)}
    if preload:
        changed["LD_PRELOAD"] = preload
    if "libtcmalloc" in preload:
        changed[PRELOADED_HERE_ENV_VAR] = "1"
        # tcmalloc prints a line for every allocation over 1 GiB (a large tokenised split): not for users
        changed.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40))
    return changed


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand of ``python -m distill_core`` argv (sys.argv[1:]), or None: the first word not a flag."""
    return next((word for word in argv if not word.startswith("-")), None)


def reexec_with_chosen_malloc(argv: Sequence[str] | None = None) -> None:
    """Re-execute this process (``python -m distill_core``, the ``kd-studio`` script) with the malloc ``plan``
    chooses when the command trains (never returns then); otherwise return and let the command run as it is.

    A bad ``KD_MALLOC`` is not reported here but by the CLI (``check``), in its usual words and exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if command_of(argv) not in TRAINING_COMMANDS:
        return
    try:
        preload, _ = plan(os.environ)
    except UserError:
        return
    if preload is None:
        return
    try:
        os.execve(sys.executable, sys.orig_argv, preloading_environment(os.environ, preload))
    except OSError as error:  # unusual interpreter setups: run on the malloc it started with, and say why
        _reexec_failed.append(str(error))


def check(command: str) -> None:
    """Refuse a bad ``KD_MALLOC`` (or ``tcmalloc`` where it cannot be had) before a training command starts work."""
    if command in TRAINING_COMMANDS:
        plan(os.environ)

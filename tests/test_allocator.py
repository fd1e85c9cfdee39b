"""distill_core.allocator: glibc's mmap threshold fixed on request, so freed activations leave the process."""
from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys

import pytest

from distill_core import allocator
from distill_core.errors import UserError

GLIBC = allocator._glibc_mallopt() is not None

# A fresh process: free an 8 MiB block (glibc's dynamic rule then raises its threshold to 8 MiB), allocate 2 MiB,
# and report whether that block is its own mapping (mallinfo2's hblks counts mmapped blocks in use).
CHILD = """
import ctypes, json, sys
from distill_core import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
applied = allocator.return_freed_memory_to_os()
libc.free(libc.malloc(8 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(2 << 20)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(json.dumps({"applied": applied, "mapped": mapped}))
"""


def _child(env_value: str | None, code: str = CHILD, variable: str = allocator.ENV_VAR) -> dict:
    """``code``'s JSON line, run in a fresh process with ``variable`` set to ``env_value`` (None: unset) and the
    other allocator variables unset."""
    ours = (allocator.ENV_VAR, allocator.TRIM_ENV_VAR, allocator.TRIM_AFTER_EVAL_ENV_VAR, "LD_PRELOAD")
    env = {k: v for k, v in os.environ.items() if k not in ours}
    if env_value is not None:
        env[variable] = env_value
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         timeout=120)
    return json.loads(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="the mmap threshold is a glibc setting")
def test_after_a_large_free_an_activation_sized_block_is_still_its_own_mapping():
    fixed = _child(str(allocator.LOW_MEMORY_THRESHOLD_BYTES))
    assert fixed["applied"]["malloc_mmap_threshold"] == allocator.LOW_MEMORY_THRESHOLD_BYTES
    assert fixed["mapped"] == 1  # given back to the OS on free

    default = _child(None)  # unset: glibc's own dynamic rule: the block comes from the heap and stays there
    assert default["applied"]["malloc_mmap_threshold"] is None
    assert "default" in default["applied"]["malloc_mmap_threshold_why"]
    assert default["mapped"] == 0


@pytest.mark.parametrize("variable, read", [(allocator.ENV_VAR, allocator.threshold_from_env),
                                            (allocator.TRIM_ENV_VAR, allocator.trim_every_from_env)])
@pytest.mark.parametrize("raw", ["1MB", "-5", "1.5", "ten", "-1", "2.5"])
def test_a_bad_value_is_refused_naming_the_variable(variable, read, raw, monkeypatch):
    monkeypatch.setenv(variable, raw)
    with pytest.raises(UserError, match=variable):
        read()


@pytest.mark.parametrize("raw", ["yes", "2", "true", "-1"])
def test_trim_after_eval_takes_only_0_or_1(raw, monkeypatch):
    monkeypatch.setenv(allocator.TRIM_AFTER_EVAL_ENV_VAR, raw)
    with pytest.raises(UserError, match=f"{allocator.TRIM_AFTER_EVAL_ENV_VAR} must be 1 .* or 0, got {raw!r}"):
        allocator.trim_after_eval_from_env()
    for fine, expected in (("1", True), ("0", False), (" ", True)):
        monkeypatch.setenv(allocator.TRIM_AFTER_EVAL_ENV_VAR, fine)
        assert allocator.trim_after_eval_from_env() is expected


def test_unset_and_zero_leave_the_c_library_alone(monkeypatch):
    monkeypatch.delenv(allocator.ENV_VAR, raising=False)
    assert allocator.threshold_from_env() == 0
    monkeypatch.setenv(allocator.ENV_VAR, "1048576")
    assert allocator.threshold_from_env() == 1 << 20
    monkeypatch.setenv(allocator.ENV_VAR, "0")
    assert allocator.threshold_from_env() == 0
    assert allocator.return_freed_memory_to_os()["malloc_mmap_threshold"] is None


# A fresh process fragments its heap: 400 blocks of 64 KiB (below glibc's mmap threshold, so heap blocks), every
# other one freed and the last kept, so free() cannot shrink the heap's top. It reports its resident set after the
# frees and after release_free_heap().
TRIM_CHILD = """
import ctypes, json
from distill_core import allocator

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
applied = allocator.return_freed_memory_to_os()
blocks = [libc.malloc(64 << 10) for _ in range(400)]
for block in blocks:
    ctypes.memset(block, 1, 64 << 10)  # touch every page, so it is resident
for block in blocks[:-1:2]:
    libc.free(block)
before = rss_mb()
released = allocator.release_free_heap()
print(json.dumps({"applied": applied, "released": released, "before": before, "after": rss_mb()}))
"""


def _trim_child(value: str | None, variable: str = allocator.TRIM_ENV_VAR) -> dict:
    return _child(value, TRIM_CHILD, variable)


def _released_the_gaps(child: dict) -> bool:
    # 200 freed 64 KiB gaps = 12.5 MiB of resident pages; most leave (headers keep a page of some gaps)
    return child["released"] is True and child["before"] - child["after"] > 6


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_trimming_gives_the_freed_gaps_of_a_fragmented_heap_back_by_default_and_when_asked():
    every_steps = _trim_child(str(allocator.LOW_MEMORY_TRIM_EVERY_STEPS))
    assert every_steps["applied"]["malloc_trim_every_steps"] == allocator.LOW_MEMORY_TRIM_EVERY_STEPS
    assert _released_the_gaps(every_steps)

    default = _trim_child(None)  # the default: no trims between steps, a trim after each evaluation pass
    assert default["applied"]["malloc_trim_every_steps"] == 0 == allocator.DEFAULT_TRIM_EVERY_STEPS
    assert default["applied"]["malloc_trim_after_eval"] is True
    assert _released_the_gaps(default)

    off = _trim_child("0", allocator.TRIM_AFTER_EVAL_ENV_VAR)  # both off: nothing is trimmed, the gaps stay
    assert (off["applied"]["malloc_trim_every_steps"], off["applied"]["malloc_trim_after_eval"]) == (0, False)
    assert off["released"] is False
    assert abs(off["before"] - off["after"]) < 1


def test_the_loop_trims_every_n_steps_and_never_when_off(monkeypatch):
    monkeypatch.setenv(allocator.TRIM_ENV_VAR, "3")
    applied = allocator.return_freed_memory_to_os()
    try:
        every = applied["malloc_trim_every_steps"]
        assert [step for step in range(1, 10) if allocator.trim_due(step)] == ([3, 6, 9] if GLIBC else [])
        assert every == (3 if GLIBC else 0)
        monkeypatch.setenv(allocator.TRIM_ENV_VAR, "0")
        allocator.return_freed_memory_to_os()
        assert not any(allocator.trim_due(step) for step in range(1, 10))
    finally:
        monkeypatch.delenv(allocator.TRIM_ENV_VAR)
        allocator.return_freed_memory_to_os()


TCMALLOC = ctypes.util.find_library("tcmalloc_minimal")


def test_the_malloc_in_use_is_named_from_the_process_maps():
    maps = "7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10\n"
    assert allocator.malloc_library(maps) == "tcmalloc"
    assert allocator.malloc_library("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libjemalloc.so.2\n") == "jemalloc"
    assert allocator.malloc_library("") == ("glibc" if GLIBC else "the C library's")


@pytest.mark.skipif(not TCMALLOC, reason="gperftools' tcmalloc is not installed (apt: libtcmalloc-minimal4)")
def test_a_preloaded_tcmalloc_is_recorded_as_the_runs_malloc():
    code = "import json; from distill_core import allocator; print(json.dumps(allocator.return_freed_memory_to_os()))"
    preloaded = _child(TCMALLOC, code, variable="LD_PRELOAD")
    assert preloaded["malloc"] == "tcmalloc"
    assert _child(None, code, variable="LD_PRELOAD")["malloc"] == ("glibc" if GLIBC else "the C library's")

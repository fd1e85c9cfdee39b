"""distill_core.allocator: glibc's mmap threshold fixed on request, so freed activations leave the process."""
from __future__ import annotations

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


def _child(env_value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != allocator.ENV_VAR}
    if env_value is not None:
        env[allocator.ENV_VAR] = env_value
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True,
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


@pytest.mark.parametrize("raw", ["1MB", "-5", "1.5"])
def test_a_bad_threshold_is_refused_naming_the_variable(raw, monkeypatch):
    monkeypatch.setenv(allocator.ENV_VAR, raw)
    with pytest.raises(UserError, match=allocator.ENV_VAR):
        allocator.threshold_from_env()


def test_unset_and_zero_leave_the_c_library_alone(monkeypatch):
    monkeypatch.delenv(allocator.ENV_VAR, raising=False)
    assert allocator.threshold_from_env() == 0
    monkeypatch.setenv(allocator.ENV_VAR, "1048576")
    assert allocator.threshold_from_env() == 1 << 20
    monkeypatch.setenv(allocator.ENV_VAR, "0")
    assert allocator.threshold_from_env() == 0
    assert allocator.return_freed_memory_to_os()["malloc_mmap_threshold"] is None

"""The teacher-logit cache: one .npz per (teacher fingerprint, max_length, precision), read back whole or by ids.

Filling it from a real teacher (and reusing it across runs) is covered end to end in test_train.
"""
from __future__ import annotations

import numpy as np
import pytest

from distill_core import teacher_cache
from distill_core.batching import cache_root


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    """conftest's cache folder is shared by the whole session: each test here starts from an empty one."""
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))


def rows(*ids: str) -> dict[str, np.ndarray]:
    return {i: np.array([n, -n, 0.5], dtype=np.float32) for n, i in enumerate(ids, start=1)}


def test_cache_file_location_and_format():
    path = teacher_cache.cache_file("abc123", 32)
    assert path == cache_root() / "teacher_logits" / "abc123-len32.npz"
    teacher_cache.save("abc123", 32, rows("a", "b"))
    with np.load(path) as stored:
        assert stored["ids"].tolist() == ["a", "b"]
        assert stored["logits"].dtype == np.float32 and stored["logits"].shape == (2, 3)
    assert [p.name for p in path.parent.iterdir()] == ["abc123-len32.npz"]  # no temporary file left


def test_load_round_trips_and_is_empty_without_a_file():
    assert teacher_cache.load("abc123", 32) == {}
    teacher_cache.save("abc123", 32, rows("a", "b"))
    loaded = teacher_cache.load("abc123", 32)
    assert list(loaded) == ["a", "b"]
    np.testing.assert_array_equal(loaded["b"], rows("a", "b")["b"])
    assert teacher_cache.load("abc123", 64) == {}  # another max_length is another cache


def test_lookup_needs_every_id():
    assert teacher_cache.lookup("abc123", ["a"], 32) is None  # no cache file
    teacher_cache.save("abc123", 32, rows("a", "b", "c"))
    found = teacher_cache.lookup("abc123", ["c", "a"], 32)
    assert found.dtype == np.float32
    np.testing.assert_array_equal(found, np.stack([rows("a", "b", "c")["c"], rows("a", "b", "c")["a"]]))
    assert teacher_cache.lookup("abc123", ["a", "missing"], 32) is None
    assert teacher_cache.lookup("abc123", [], 32) is None


def test_each_precision_has_its_own_file():
    teacher_cache.save("abc123", 32, rows("a"), precision="bf16")
    assert teacher_cache.cache_file("abc123", 32, "bf16").name == "abc123-len32-bf16.npz"
    assert teacher_cache.load("abc123", 32) == {}  # fp32 logits are never answered by bf16 ones
    assert teacher_cache.lookup("abc123", ["a"], 32, precision="bf16") is not None


@pytest.mark.parametrize("flags, asked, expected", [
    ({"avx2", "avx512f", "avx512_bf16"}, "auto", "bf16"),   # auto trains in bf16 there: so do its KD targets
    ({"avx2", "avx512f", "avx512_bf16"}, "no", "fp32"),
    ({"avx2", "fma"}, "bf16", "fp32"),                      # bf16 asked for on a CPU that emulates it: fp32 pass
    ({"avx2", "fma"}, "auto", "fp32"),
])
def test_the_kd_targets_follow_the_training_precision_where_bf16_is_native(monkeypatch, flags, asked, expected):
    from distill_core import hardware
    from distill_core.config import DataConfig, TrainConfig

    monkeypatch.setattr(hardware, "detect", lambda: hardware.Hardware("cpu", cpu_flags=frozenset(flags)))
    config = TrainConfig(mode="distill", student="s", teacher="t", data=DataConfig(source="d"), mixed_precision=asked)
    assert teacher_cache.pass_precision(config) == expected


def test_a_cuda_run_keeps_its_teacher_pass_in_fp32(monkeypatch):
    """The teacher's logit pass runs on the CPU even where training runs on a GPU: bf16 there is the GPU's."""
    from distill_core import hardware
    from distill_core.config import DataConfig, TrainConfig

    monkeypatch.setattr(hardware, "detect", lambda: hardware.Hardware("cuda", cuda_bf16=True))
    config = TrainConfig(mode="distill", student="s", teacher="t", data=DataConfig(source="d"))
    assert teacher_cache.pass_precision(config) == "fp32"

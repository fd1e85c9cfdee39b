"""The teacher-logit cache: one .npz per (teacher fingerprint, max_length), read back whole or by ids.

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

"""The run store: atomic writes, readable metrics after crashes, status liveness, names, listings, tokens."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from distill_core import processes, runs, storage
from distill_core.errors import UserError

PLANTED_TOKEN = "hf_" + "abcdefghijklmnopqrstuvwxyzABCD"  # 30 letters: shaped like a real user token

CONFIG = {"mode": "distill", "student": "truncate:4", "teacher": "org/teacher",
          "data": {"source": "ag_news", "max_length": 128}, "epochs": 3}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def run_dir(root: Path) -> Path:
    return runs.create_run(root, "demo", CONFIG)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# ---------------------------------------------------------------- atomic JSON


def test_write_json_atomic_round_trips_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    storage.write_json_atomic(target, {"a": 1, "name": "é"})
    storage.write_json_atomic(target, {"a": 2})
    assert storage.read_json(target) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_crash_before_replace_keeps_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "status.json"
    storage.write_json_atomic(target, {"state": "running"})

    def crash(src: str, dst: str) -> None:
        assert Path(src).read_text(encoding="utf-8").startswith("{")  # the new content was fully written first
        raise OSError("simulated power cut before rename")

    monkeypatch.setattr(runs.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        storage.write_json_atomic(target, {"state": "done"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"state": "running"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_read_json_returns_default_for_missing_or_garbled(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"state": "runn', encoding="utf-8")
    assert storage.read_json(tmp_path / "missing.json", default={}) == {}
    assert storage.read_json(tmp_path / "bad.json") is None


# ---------------------------------------------------------------- metrics


def test_append_metric_adds_time_and_reads_back_in_order(run_dir: Path) -> None:
    runs.append_metric(run_dir, {"kind": "step", "step": 1, "loss": 0.9})
    runs.append_metric(run_dir, {"kind": "step", "step": 2, "loss": 0.7, "time": 5.0})
    rows = runs.read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    assert isinstance(rows[0]["time"], float) and rows[1]["time"] == 5.0


def test_half_written_metrics_line_is_skipped_with_a_warning(run_dir: Path) -> None:
    runs.append_metric(run_dir, {"kind": "epoch", "epoch": 1, "valid_accuracy": 0.5})
    with open(runs.metrics_path(run_dir), "a", encoding="utf-8") as f:
        f.write('{"kind": "epoch", "epoch": 2, "valid_acc')  # the worker died mid-write
    with pytest.warns(UserWarning, match=r"metrics\.jsonl: line 2"):
        rows = runs.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1]


def test_append_after_a_torn_line_starts_a_fresh_line(run_dir: Path) -> None:
    runs.metrics_path(run_dir).write_bytes(b'{"kind": "step", "st')
    runs.append_metric(run_dir, {"kind": "step", "step": 7})
    with pytest.warns(UserWarning, match="line 1"):
        rows = runs.read_metrics(run_dir)
    assert [r["step"] for r in rows] == [7]


def test_read_metrics_of_a_run_without_metrics_is_empty(run_dir: Path) -> None:
    assert runs.read_metrics(run_dir) == []


# ---------------------------------------------------------------- status


def test_create_run_writes_config_and_queued_status(root: Path, run_dir: Path) -> None:
    assert run_dir == (root / "demo").resolve()
    assert storage.read_json(run_dir / "config.json") == CONFIG
    status = runs.read_status(run_dir)
    assert status["state"] == "queued" and isinstance(status["created_at"], float)


def test_create_run_refuses_an_existing_run(root: Path, run_dir: Path) -> None:
    with pytest.raises(UserError, match="run 'demo' already exists: choose another name or delete it"):
        runs.create_run(root, "demo", {})


def test_set_status_merges_and_stamps_lifecycle_times(run_dir: Path) -> None:
    runs.set_status(run_dir, "running", pid=os.getpid(), phase="preparing")
    first = runs.read_status(run_dir)
    runs.set_status(run_dir, "running", phase="training")
    assert runs.read_status(run_dir)["started_at"] == first["started_at"]
    done = runs.set_status(run_dir, "done", test_accuracy=0.9)
    assert done["phase"] == "training" and done["test_accuracy"] == 0.9
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]
    with pytest.raises(ValueError, match="unknown run state 'finished'"):
        runs.set_status(run_dir, "finished")


def test_running_status_with_a_live_pid_stays_running(run_dir: Path) -> None:
    runs.set_status(run_dir, "running", pid=os.getpid())
    assert runs.read_status(run_dir)["state"] == "running"


@pytest.mark.parametrize("state", ["running", "queued"])
def test_live_state_with_a_dead_pid_reads_as_interrupted(run_dir: Path, state: str) -> None:
    runs.set_status(run_dir, state, pid=dead_pid())
    status = runs.read_status(run_dir)
    assert status["state"] == "interrupted" and status["interrupted_from"] == state
    assert storage.read_json(run_dir / "status.json")["state"] == state  # reported, not rewritten


def test_dead_worker_of_a_stopped_run_reads_as_cancelled(run_dir: Path) -> None:
    runs.set_status(run_dir, "running", pid=dead_pid())
    runs.request_stop(run_dir)  # SIGTERM arrived before the worker could record 'cancelled'
    assert runs.read_status(run_dir)["state"] == "cancelled"


def test_reused_pid_is_not_mistaken_for_the_worker(run_dir: Path) -> None:
    if processes.proc_stat(os.getpid()) is None:
        pytest.skip("needs /proc to know process start times")
    runs.set_status(run_dir, "running", pid=os.getpid(), pid_start=1)  # our pid, but "started" at another time
    assert runs.read_status(run_dir)["state"] == "interrupted"


def test_stop_flag(run_dir: Path) -> None:
    assert not runs.stop_requested(run_dir)
    runs.request_stop(run_dir)
    runs.request_stop(run_dir)  # idempotent
    assert runs.stop_requested(run_dir)


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("ok-name_1.2", True),
        ("distil-T2-a0.5", True),
        ("a" * 64, True),
        ("Run_7", True),
        ("../../etc/passwd", False),
        ("/abs", False),
        (".hidden", False),
        ("-flag", False),
        ("a" * 65, False),
        ("", False),
        ("a..b", False),
        ("dir/sub", False),
        ("back\\slash", False),
        ("space name", False),
        ("naïve", False),
    ],
    ids=lambda v: repr(v)[:20] if isinstance(v, str) else str(v),
)
def test_sanitize_run_name(name: str, ok: bool) -> None:
    if ok:
        assert runs.sanitize_run_name(name) == name
    else:
        with pytest.raises(UserError, match=r"use 1-64 characters from A-Z a-z 0-9 \. _ -"):
            runs.sanitize_run_name(name)


def test_resolve_run_dir_stays_inside_root_even_through_a_symlink(root: Path, tmp_path: Path) -> None:
    root.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    assert runs.resolve_run_dir(root, "fine").parent == root.resolve()
    with pytest.raises(UserError, match="outside the runs folder"):
        runs.resolve_run_dir(root, "escape")
    with pytest.raises(UserError):
        runs.delete_run(root, "escape")
    assert outside.exists()


def test_runs_root_honours_env_and_creates_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_RUNS_DIR", str(tmp_path / "store"))
    assert runs.runs_root() == (tmp_path / "store").resolve() and (tmp_path / "store").is_dir()


# ---------------------------------------------------------------- listing and deletion


def test_list_runs_summarizes_newest_first_and_skips_garbage(root: Path, run_dir: Path) -> None:
    for epoch, accuracy in [(1, 0.81), (2, 0.86), (3, 0.84)]:
        runs.append_metric(run_dir, {"kind": "epoch", "epoch": epoch, "valid_accuracy": accuracy})
    storage.write_json_atomic(runs.eval_path(run_dir), {"student": {"accuracy": 0.85}, "teacher": {"accuracy": 0.9}})
    runs.set_status(run_dir, "done")
    newer = runs.create_run(root, "newer", {"mode": "finetune", "student": "bundled:minilm-l6"})
    (root / "garbage").mkdir()
    (root / "garbage" / "status.json").write_text("\x00not json", encoding="utf-8")
    (root / "garbage" / "config.json").write_text("[1, 2", encoding="utf-8")
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("hello", encoding="utf-8")
    (root / "stray.json").write_text("{}", encoding="utf-8")
    (root / ".hidden").mkdir()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a listing must be quiet, whatever it finds
        listed = runs.list_runs(root)

    assert [r["id"] for r in listed] == ["newer", "demo"]
    demo = listed[1]
    assert demo == demo | {"path": str(run_dir), "mode": "distill", "state": "done", "student": "truncate:4",
                           "teacher": "org/teacher", "data_source": "ag_news", "epochs_done": 3,
                           "best_valid_accuracy": 0.86, "test_accuracy": 0.85, "teacher_test_accuracy": 0.9}
    assert listed[0]["path"] == str(newer) and listed[0]["epochs_done"] == 0 and listed[0]["test_accuracy"] is None


def test_list_runs_of_a_missing_root_is_empty(tmp_path: Path) -> None:
    assert runs.list_runs(tmp_path / "nowhere") == []


def test_delete_run_removes_finished_runs_and_refuses_live_ones(root: Path, run_dir: Path) -> None:
    runs.set_status(run_dir, "running", pid=os.getpid())
    with pytest.raises(UserError, match="still running: stop it first"):
        runs.delete_run(root, "demo")
    runs.set_status(run_dir, "cancelled")
    runs.delete_run(root, "demo")
    assert not run_dir.exists()
    with pytest.raises(UserError, match="no run named 'demo'"):
        runs.delete_run(root, "demo")


def test_helpers_point_into_the_run(run_dir: Path) -> None:
    assert runs.eval_path(run_dir) == run_dir / "eval.json"
    assert runs.model_dir(run_dir) == run_dir / "model"
    assert runs.log_path(run_dir) == run_dir / "worker.log"


# ---------------------------------------------------------------- token safety


def test_token_is_never_written_to_metrics(run_dir: Path) -> None:
    with pytest.raises(ValueError, match="looks like a Hugging Face token") as caught:
        runs.append_metric(run_dir, {"kind": "step", "note": f"auth {PLANTED_TOKEN}"})
    assert PLANTED_TOKEN not in str(caught.value)
    assert not runs.metrics_path(run_dir).exists() or PLANTED_TOKEN not in runs.metrics_path(run_dir).read_text()


def test_token_is_never_written_to_json(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    with pytest.raises(ValueError, match="looks like a Hugging Face token") as caught:
        storage.write_json_atomic(target, {"env": {"HF_TOKEN": PLANTED_TOKEN}})
    assert PLANTED_TOKEN not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_create_run_with_a_token_in_config_leaves_no_folder(root: Path) -> None:
    with pytest.raises(ValueError, match="Hugging Face token"):
        runs.create_run(root, "leaky", {"token": PLANTED_TOKEN})
    assert not (root / "leaky").exists()


# ---------------------------------------------------------------- locking


def test_file_lock_is_reentrant_in_a_thread_and_exclusive_across_threads(tmp_path: Path) -> None:
    import threading

    lock = tmp_path / ".lock"
    order: list[str] = []
    with storage.file_lock(lock):
        with storage.file_lock(lock):  # a signal handler writing status inside a status write must not deadlock
            order.append("nested")

        def contender() -> None:
            with storage.file_lock(lock):
                order.append("other")

        other = threading.Thread(target=contender)
        other.start()
        other.join(0.2)
        assert other.is_alive() and order == ["nested"]  # blocked while we hold the lock
        order.append("released")
    other.join(5)
    assert order == ["nested", "released", "other"]

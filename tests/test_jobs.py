"""Background jobs with real processes: the concurrency cap, the queue scheduler and stopping.

The real worker (``python -m distill_core worker``) trains a model; these tests run a stand-in script through
the same start_job path (its ``argv`` hook). The stand-in talks to the real run store like the worker does:
it sets 'running', sleeps for its hold time (deliberately ignoring the STOP flag, so that only a delivered
SIGTERM can end it early) and handles SIGTERM by setting 'cancelled'.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from distill_core import jobs, runs, storage
from distill_core.errors import UserError

STAND_IN_WORKER = """
import os, signal, sys, time
from pathlib import Path
from distill_core import runs

run_dir, hold_s = Path(sys.argv[1]), float(sys.argv[2])

def on_sigterm(signum, frame):
    runs.set_status(run_dir, "cancelled", error="stopped by SIGTERM")
    sys.exit(0)

signal.signal(signal.SIGTERM, on_sigterm)
runs.set_status(run_dir, "running", pid=os.getpid())
time.sleep(hold_s)
runs.set_status(run_dir, "done")
"""


def stand_in(hold_s: float) -> Callable[[Path], list[str]]:
    return lambda run_dir: [sys.executable, "-c", STAND_IN_WORKER, str(run_dir), str(hold_s)]


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "runs"
    root.mkdir()
    yield root.resolve()
    # Never leave a stand-in behind, whatever a test did.
    for run_dir in runs.iter_run_dirs(root):
        pid = storage.read_json(run_dir / "status.json", {}).get("pid")
        if isinstance(pid, int) and jobs.is_alive(pid):
            os.killpg(pid, signal.SIGKILL)
            wait_until(lambda pid=pid: not jobs.is_alive(pid))


def new_run(root: Path, name: str) -> Path:
    return runs.create_run(root, name, {"mode": "finetune", "student": "bundled:minilm-l6"})


def test_start_job_runs_the_worker_and_logs_its_output(root: Path) -> None:
    run_dir = new_run(root, "solo")
    argv = [sys.executable, "-c", "import sys; print('hello from the worker'); sys.stderr.write('warned\\n')"]
    pid = jobs.start_job(run_dir, max_concurrent=1, argv=argv)
    assert isinstance(pid, int) and storage.read_json(run_dir / "status.json")["pid"] == pid
    wait_until(lambda: not jobs.is_alive(pid))
    assert runs.log_path(run_dir).read_text() == "hello from the worker\nwarned\n"
    # The stand-in never set 'running' and is gone: the store reports what happened.
    assert runs.read_status(run_dir)["state"] == "interrupted"


def test_cap_holds_the_second_run_until_the_scheduler_starts_it(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_MAX_JOBS", "1")
    first, second = new_run(root, "first"), new_run(root, "second")
    first_pid = jobs.start_job(first, argv=stand_in(0.6)(first))
    assert first_pid is not None
    assert jobs.start_job(second, argv=stand_in(0.1)(second)) is None
    assert runs.read_status(second) == runs.read_status(second) | {"state": "queued", "waiting": True}
    assert jobs.active_jobs(root) == 1
    assert jobs.start_queued(root, argv_for=stand_in(0.1)) == []  # no free slot yet

    wait_until(lambda: runs.read_status(first)["state"] == "done")
    started = jobs.start_queued(root, argv_for=stand_in(0.1))
    assert len(started) == 1 and storage.read_json(second / "status.json")["pid"] == started[0]
    wait_until(lambda: runs.read_status(second)["state"] == "done")
    assert runs.read_status(second)["waiting"] is False
    assert jobs.start_queued(root, argv_for=stand_in(0.1)) == []  # nothing left to start


def test_start_job_is_idempotent_while_the_worker_lives(root: Path) -> None:
    run_dir = new_run(root, "once")
    pid = jobs.start_job(run_dir, max_concurrent=1, argv=stand_in(5)(run_dir))
    assert jobs.start_job(run_dir, max_concurrent=1, argv=stand_in(5)(run_dir)) == pid
    assert jobs.stop_job(run_dir)


def test_stop_job_sends_sigterm_and_the_worker_cancels(root: Path) -> None:
    run_dir = new_run(root, "long")
    pid = jobs.start_job(run_dir, max_concurrent=1, argv=stand_in(30)(run_dir))
    assert pid is not None
    wait_until(lambda: runs.read_status(run_dir)["state"] == "running")
    assert jobs.stop_job(run_dir) is True
    wait_until(lambda: not jobs.is_alive(pid))
    status = runs.read_status(run_dir)
    assert status["state"] == "cancelled" and status["error"] == "stopped by SIGTERM"
    assert runs.stop_requested(run_dir)
    assert jobs.stop_job(run_dir) is False  # nothing left to stop


def test_stop_job_signals_the_whole_process_group_of_a_starting_worker(root: Path) -> None:
    run_dir = new_run(root, "booting")
    # A worker still loading (no handler, state still 'queued') with a child process of its own.
    script = ("import subprocess, sys, time; "
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
              "print(child.pid, flush=True); time.sleep(30)")
    pid = jobs.start_job(run_dir, max_concurrent=1, argv=[sys.executable, "-c", script])
    assert pid is not None
    wait_until(lambda: runs.log_path(run_dir).read_text().strip().isdigit())
    grandchild = int(runs.log_path(run_dir).read_text())
    assert jobs.stop_job(run_dir) is True
    wait_until(lambda: not jobs.is_alive(pid) and not jobs.is_alive(grandchild))
    assert runs.read_status(run_dir)["state"] == "cancelled"


def test_stop_job_cancels_a_waiting_run_so_it_never_starts(root: Path) -> None:
    busy, waiting = new_run(root, "busy"), new_run(root, "waiting")
    jobs.start_job(busy, max_concurrent=1, argv=stand_in(30)(busy))
    assert jobs.start_job(waiting, max_concurrent=1, argv=stand_in(0.1)(waiting)) is None
    assert jobs.stop_job(waiting) is True
    assert runs.read_status(waiting)["state"] == "cancelled"
    jobs.stop_job(busy)
    wait_until(lambda: jobs.active_jobs(root) == 0)
    assert jobs.start_queued(root, max_concurrent=1, argv_for=stand_in(0.1)) == []


def test_start_job_refuses_runs_that_are_not_queued(root: Path) -> None:
    run_dir = new_run(root, "finished")
    runs.set_status(run_dir, "done")
    with pytest.raises(UserError, match="run 'finished' is done: only queued runs can be started"):
        jobs.start_job(run_dir, max_concurrent=1, argv=stand_in(0.1)(run_dir))


@pytest.mark.parametrize("raw", ["0", "-2", "many"])
def test_invalid_kd_max_jobs_is_a_user_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("KD_MAX_JOBS", raw)
    with pytest.raises(UserError, match=f"KD_MAX_JOBS must be a positive integer, got '{raw}'"):
        jobs.max_jobs()


def test_max_jobs_defaults_to_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KD_MAX_JOBS", raising=False)
    assert jobs.max_jobs() == 1
    monkeypatch.setenv("KD_MAX_JOBS", "3")
    assert jobs.max_jobs() == 3


def test_is_alive_is_false_for_a_finished_process(root: Path) -> None:
    run_dir = new_run(root, "quick")
    pid = jobs.start_job(run_dir, max_concurrent=1, argv=[sys.executable, "-c", "pass"])
    assert pid is not None
    wait_until(lambda: not jobs.is_alive(pid))
    assert not jobs.is_alive(pid) and not jobs.is_alive(-1)

"""Faults injected into real workers (``python -m distill_core worker`` started by jobs.start_job) on the tiny
models: kill -9 mid-epoch then `resume`, SIGTERM, a write failure (a file size limit: the disk is "full" for
model files), a torn metrics line, and two runs started at once under KD_MAX_JOBS=1.

Every worker of the module starts at once (module fixture ``workers``), so their imports and training overlap on
a busy machine; each test then waits for its run to reach the moment it needs. All of them carry a planted
HF_TOKEN, and the last test checks that no file anywhere in the store or the caches holds it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import make_rows, write_csv

from distill_core import jobs, pipeline, runs, storage
from distill_core.app import views
from distill_core.config import DataConfig, TrainConfig

pytestmark = pytest.mark.slow

TOKEN = "hf_" + "PlantedFaultsToken" + "x7Q2mZ9rT4vW8yB3nK6p"  # shaped like a real token, leaked nowhere
WAIT_S = 900  # generous: on a busy 2-core machine a tiny run's imports alone can take a minute
FSIZE_LIMIT = 1_000_000  # bytes: status, metrics and caches fit; the student's ~8 MB safetensors does not
# The real worker, under a file size limit. SIGXFSZ is ignored so a write past the limit fails with EFBIG, as
# a full disk fails with ENOSPC, instead of killing the process.
LIMITED_WORKER = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from distill_core.cli import main
sys.exit(main(["worker", "--run-dir", sys.argv[1]]))
"""


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = WAIT_S, every_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)
    return value


def metrics(run_dir: Path) -> list[dict]:
    """The run's rows; a line torn by a kill is skipped (with a warning, tested separately)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return runs.read_metrics(run_dir)


def worker_pid(run_dir: Path) -> int | None:
    pid = storage.read_json(run_dir / runs.STATUS_FILE, {}).get("pid")
    return pid if isinstance(pid, int) else None


def wait_for_exit(run_dir: Path) -> None:
    pid = worker_pid(run_dir)
    wait_until(lambda: pid is None or not jobs.is_alive(pid), f"the worker of {run_dir.name} to exit")


def config(data: Path, **overrides) -> TrainConfig:
    settings = dict(mode="distill", data=DataConfig(source=str(data), max_length=32), student="truncate:1",
                    epochs=3, batch_size=8, lr=1e-4, patience=None, log_every_steps=1, eval_batch_size=64)
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def workers(tmp_path_factory, tiny_teacher_dir) -> Iterator[SimpleNamespace]:
    base = tmp_path_factory.mktemp("faults")
    data = base / "data"
    data.mkdir()
    write_csv(data / "train.csv", make_rows(150, seed=11))  # 480 train rows: 60 steps per epoch at batch 8
    write_csv(data / "test.csv", make_rows(10, seed=12))
    env = {"HF_HUB_OFFLINE": "1", "KD_CACHE_DIR": str(base / "cache"), "HF_HOME": str(base / "hf-home"),
           "HF_TOKEN": TOKEN, "OMP_NUM_THREADS": "1", "KD_MAX_JOBS": "8"}
    root, queue_root = base / "runs", base / "queue-runs"
    teacher = str(tiny_teacher_dir)

    def create(folder: Path, name: str, cfg: TrainConfig) -> Path:
        return runs.create_run(folder, name, pipeline.run_record(cfg))

    ns = SimpleNamespace(base=base, env=env, root=root, queue_root=queue_root)
    ns.killed = create(root, "killed", config(data, teacher=teacher))
    # the most epochs allowed: it runs until stopped
    ns.terminated = create(root, "terminated", config(data, teacher=teacher, epochs=100))
    ns.disk_full = create(root, "disk-full", config(data, teacher=teacher, epochs=1, batch_size=32))
    quick = config(data, teacher=teacher, epochs=1, batch_size=32, log_every_steps=5)
    ns.first, ns.second = create(queue_root, "first", quick), create(queue_root, "second", quick)

    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():  # also seen by the `resume` subprocess and by the queue's worker
            patch.setenv(key, value)
        try:
            for run_dir in (ns.killed, ns.terminated):
                assert jobs.start_job(run_dir, max_concurrent=8) is not None
            limited = [sys.executable, "-c", LIMITED_WORKER.format(limit=FSIZE_LIMIT), str(ns.disk_full)]
            assert jobs.start_job(ns.disk_full, max_concurrent=8, argv=limited) is not None
            ns.first_pid = jobs.start_job(ns.first, max_concurrent=1, env={"KD_MAX_JOBS": "1"})
            ns.second_pid = jobs.start_job(ns.second, max_concurrent=1, env={"KD_MAX_JOBS": "1"})
            yield ns
        finally:
            for folder in (root, queue_root):
                for run_dir in runs.iter_run_dirs(folder):
                    pid = worker_pid(run_dir)
                    if pid is not None and jobs.is_alive(pid):
                        os.killpg(pid, signal.SIGKILL)


# ---------------------------------------------------------------- SIGTERM (Stop in the UI)

def test_sigterm_cancels_cleanly_and_keeps_the_metrics(workers):
    run_dir = workers.terminated
    wait_until(lambda: sum(r.get("kind") == "step" for r in metrics(run_dir)) >= 3, "three step rows")
    assert jobs.stop_job(run_dir) is True
    wait_for_exit(run_dir)
    status = storage.read_json(run_dir / runs.STATUS_FILE)  # the file itself, not read_status's inference
    assert status["state"] == "cancelled" and not status.get("error"), status
    rows = runs.read_metrics(run_dir)  # no warning: the worker finished its step before stopping
    assert sum(r["kind"] == "step" for r in rows) >= 3
    last = [r for r in rows if r["kind"] != "phase_end"][-1]  # phase_end rows close each phase as it ends
    assert last["kind"] == "epoch" and last["partial"] is True
    assert "Traceback" not in runs.log_path(run_dir).read_text(errors="replace")


# ---------------------------------------------------------------- kill -9 mid-epoch, then resume

def test_kill_9_mid_epoch_leaves_an_interrupted_run_with_readable_metrics_and_a_loadable_checkpoint(workers):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    run_dir = workers.killed
    checkpoint = run_dir / "checkpoint"

    def mid_epoch_after_a_checkpoint() -> bool:
        steps = [r for r in metrics(run_dir) if r.get("kind") == "step"]
        return bool(steps) and steps[-1]["epoch"] > 1 and (checkpoint / "trainer_state.json").is_file()

    wait_until(mid_epoch_after_a_checkpoint, "a step of epoch 2 after the epoch-1 checkpoint", every_s=0.01)
    pid = worker_pid(run_dir)
    os.kill(pid, signal.SIGKILL)
    wait_for_exit(run_dir)

    status = runs.read_status(run_dir)
    assert status["state"] == "interrupted" and status["interrupted_from"] == "running", status
    rows = metrics(run_dir)
    epochs = [r for r in rows if r["kind"] == "epoch"]
    steps = [r for r in rows if r["kind"] == "step"]
    assert epochs and epochs[-1]["epoch"] < 3, "killed before the last epoch ended"
    assert not (run_dir / "eval.json").exists()

    # The best model and the resume checkpoint are complete safetensors files that load with transformers.
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model", use_safetensors=True)
    state = storage.read_json(checkpoint / "trainer_state.json")
    assert state["epoch"] in [r["epoch"] for r in epochs] and steps[-1]["epoch"] > state["epoch"], "mid-epoch"
    model.load_state_dict(load_file(checkpoint / "model.safetensors"), strict=True)
    assert not list(run_dir.glob("*.tmp")), "no half-written staging folder is left behind"


def test_a_torn_last_metrics_line_is_skipped_with_a_warning(workers):
    run_dir = workers.killed
    assert runs.read_status(run_dir)["state"] == "interrupted"  # runs after the kill test
    before = metrics(run_dir)
    with runs.metrics_path(run_dir).open("ab") as handle:
        handle.write(b'{"kind": "step", "step": 99999, "loss": 0.5')  # what a kill during a write leaves
    with pytest.warns(UserWarning, match="garbled metrics line"):
        after = runs.read_metrics(run_dir)
    assert after == before
    with pytest.warns(UserWarning, match="garbled"):  # the dashboard's live panel reads it the same way
        view = views.live_view(run_dir)
    assert view.state == "interrupted" and view.step == [r for r in before if r["kind"] == "step"][-1]["step"]


def test_resume_continues_the_killed_run_to_done(workers):
    run_dir = workers.killed
    assert runs.read_status(run_dir)["state"] == "interrupted"
    done = subprocess.run([sys.executable, "-m", "distill_core", "resume", "--run", str(run_dir), "--quiet"],
                          capture_output=True, text=True, timeout=WAIT_S, env={**os.environ, **workers.env})
    assert done.returncode == 0, done.stderr[-2000:]
    status = runs.read_status(run_dir)
    assert status["state"] == "done", status
    rows = metrics(run_dir)
    resumed = [r for r in rows if r["kind"] == "resume"]
    assert len(resumed) == 1 and resumed[0]["from_epoch"] >= 1
    epochs = [r["epoch"] for r in rows if r["kind"] == "epoch"]
    assert epochs[-1] == 3 and sorted(set(epochs)) == [1, 2, 3], epochs
    evaluation = storage.read_json(run_dir / "eval.json")
    assert 0.0 <= evaluation["student"]["accuracy"] <= 1.0
    # the torn line of the previous test stayed a single skipped line: new rows start on a fresh line
    with pytest.warns(UserWarning, match="garbled"):
        assert len(runs.read_metrics(run_dir)) == len(rows)


# ---------------------------------------------------------------- a write failure

def test_a_write_failure_fails_the_run_and_says_what_could_not_be_written(workers):
    run_dir = workers.disk_full
    wait_for_exit(run_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == "failed", status
    assert status["error"].startswith("could not write ") and status["error"].endswith("/model: File too large"), \
        status
    assert [r["kind"] for r in metrics(run_dir)].count("epoch") == 1  # what was written before stays readable
    assert not (run_dir / "model").exists() and not (run_dir / "model.tmp").exists()


# ---------------------------------------------------------------- two runs at once under a cap of one

def test_two_runs_started_at_once_queue_under_the_cap_and_both_finish(workers):
    first, second = workers.first, workers.second
    assert isinstance(workers.first_pid, int)
    assert workers.second_pid is None  # the cap held it back ...
    wait_until(lambda: runs.read_status(second)["state"] == "done", "the queued run to finish")
    a, b = runs.read_status(first), runs.read_status(second)
    assert a["state"] == "done", a
    assert b["started_at"] >= a["finished_at"]  # ... until the first worker handed its slot over on exit


# ---------------------------------------------------------------- the planted token (runs last)

def test_the_planted_hf_token_is_in_no_file_of_the_store_or_the_caches(workers):
    for run_dir in (workers.terminated, workers.disk_full, workers.second):
        wait_for_exit(run_dir)
    holders = [path for path in workers.base.rglob("*") if path.is_file() and TOKEN.encode() in path.read_bytes()]
    assert holders == []
    written = [p for p in workers.base.rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" for p in written) and any(p.name == "worker.log" for p in written)

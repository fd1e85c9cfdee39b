"""Managing runs that exist (distill_core.manage and its CLI commands): delete, rename, resume in the background,
the settings to clone.

The store rules are checked on runs made with runs.create_run (the states a worker leaves); resume runs a real
tiny pipeline in real worker processes: its teacher stage is stopped after its first epoch, then resumed in the
background while the job cap is held, and both stages reach done.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from runs_support import make_run

from distill_core import cli, jobs, manage, pipeline, runs, storage
from distill_core.config import DataConfig, TrainConfig
from distill_core.errors import UserError

WAIT_S = 600  # generous: a worker's imports alone can take a minute on a busy 2-core machine


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)
    return value


@pytest.fixture
def root(tmp_path) -> Path:
    return (tmp_path / "runs").resolve()


# ---------------------------------------------------------------- delete

def test_delete_removes_finished_runs_and_refuses_live_and_showcase_ones_all_at_once(root):
    done, failed = make_run(root, "done-run"), make_run(root, "failed-run", "failed")
    make_run(root, "queued-run", "queued")
    make_run(root, "gallery-run", showcase=True)
    with pytest.raises(UserError) as refused:
        manage.delete_runs(root, ["done-run", "queued-run", "gallery-run", "missing"])
    message = str(refused.value)
    assert "'queued-run' is queued: stop it first" in message
    assert "'gallery-run' belongs to the showcase and is read-only" in message
    assert "no run named 'missing'" in message
    assert done.is_dir(), "nothing is deleted when any run is refused"
    assert manage.delete_runs(root, ["done-run", "failed-run"]) == ["done-run", "failed-run"]
    assert not done.exists() and not failed.exists()
    assert [r["id"] for r in runs.list_runs(root)] == ["gallery-run", "queued-run"]


def test_delete_refuses_a_teacher_a_queued_stage_waits_for_and_notes_a_finished_student(root):
    teacher = make_run(root, "pipe-teacher")
    make_run(root, "pipe", "queued", teacher=str(teacher), depends_on="pipe-teacher")
    plan = manage.plan_delete(root, ["pipe-teacher"])
    assert plan.problems == ("run 'pipe-teacher' is used by 'pipe', still queued or running: stop those first",)
    assert manage.stop_runs(root, ["pipe", "pipe-teacher"]) == ["pipe"]
    assert runs.read_status(root / "pipe")["state"] == "cancelled"
    plan = manage.plan_delete(root, ["pipe-teacher"])
    assert not plan.problems and "teacher of 'pipe'" in plan.notes[0]
    assert not manage.plan_delete(root, ["pipe-teacher", "pipe"]).notes, "deleting both leaves nothing behind"
    manage.delete_runs(root, ["pipe-teacher"])
    assert (root / "pipe").is_dir() and not teacher.exists()


# ---------------------------------------------------------------- rename

@pytest.mark.parametrize("new_name, words", [
    ("bad name", "--to: invalid run name 'bad name'"),
    ("x" * 65, "use 1-64 characters"),
    ("../escape", "--to: invalid run name"),
    ("other", "--to: a run named 'other' already exists"),
    ("old", "--to: the run is already called 'old'"),
], ids=["blank", "too-long", "traversal", "in-use", "same"])
def test_rename_refuses_bad_or_taken_names_in_the_words_of_the_field(root, new_name, words):
    make_run(root, "old")
    make_run(root, "other")
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(".", r"\.")):
        manage.rename_run(root, "old", new_name)
    assert (root / "old").is_dir()


def test_rename_refuses_live_and_showcase_runs_and_a_teacher_a_live_run_reads(root):
    make_run(root, "running", "running", pid=os.getpid())  # this test process stands in for its worker
    make_run(root, "gallery", showcase=True)
    teacher = make_run(root, "teacher")
    make_run(root, "student", "queued", teacher=str(teacher / "model"))
    for name, words in [("running", "is running: stop it first"), ("gallery", "showcase and is read-only"),
                        ("teacher", "used by 'student', still queued or running")]:
        with pytest.raises(UserError, match=words):
            manage.rename_run(root, name, "renamed", field="New name")
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "gallery", "running", "student", "teacher"]


def test_rename_moves_the_run_and_updates_the_runs_that_name_it(root):
    teacher = make_run(root, "pipe-teacher")
    make_run(root, "pipe", "cancelled", teacher=str(teacher), depends_on="pipe-teacher")
    make_run(root, "student-2", teacher=str(teacher / runs.MODEL_DIR))
    make_run(root, "unrelated", teacher="org/some-hub-teacher")
    runs.append_metric(teacher, {"kind": "epoch", "epoch": 1, "valid_accuracy": 0.5})
    new_dir, updated = manage.rename_run(root, "pipe-teacher", "better-teacher")
    assert new_dir == root / "better-teacher" and updated == ["pipe", "student-2"]
    assert not teacher.exists() and runs.read_metrics(new_dir)[0]["valid_accuracy"] == 0.5
    assert storage.read_json(root / "pipe" / runs.CONFIG_FILE)["teacher"] == str(new_dir)
    assert runs.read_status(root / "pipe")["depends_on"] == "better-teacher"
    assert storage.read_json(root / "student-2" / runs.CONFIG_FILE)["teacher"] == str(new_dir / runs.MODEL_DIR)
    assert storage.read_json(root / "unrelated" / runs.CONFIG_FILE)["teacher"] == "org/some-hub-teacher"


# ---------------------------------------------------------------- resume, clone

def test_why_not_resume_names_the_reason():
    assert manage.why_not_resume("interrupted", has_checkpoint=True) is None
    assert manage.why_not_resume("failed", has_checkpoint=True) is None
    assert "no checkpoint" in manage.why_not_resume("cancelled", has_checkpoint=False)
    assert manage.why_not_resume("done", has_checkpoint=True) == "it has finished"
    assert manage.why_not_resume("running", has_checkpoint=True) == "it is running"
    assert "read-only" in manage.why_not_resume("cancelled", has_checkpoint=True, showcase=True)


def test_the_worker_command_resumes_when_the_status_says_so(root):
    run_dir = make_run(root, "later", "queued")
    assert "--resume" not in jobs.default_worker_argv(run_dir)
    runs.update_status(run_dir, resume=True)
    assert jobs.default_worker_argv(run_dir)[-3:] == ["--run-dir", str(run_dir), "--resume"]


def test_resume_refuses_a_run_without_a_checkpoint(root):
    make_run(root, "early-stop", "cancelled")
    with pytest.raises(UserError, match="'early-stop' cannot be resumed: it stopped before its first epoch"):
        manage.resume_in_background(root, "early-stop")


@pytest.fixture
def tiny_pipeline(monkeypatch, root, tiny_data_dir, tiny_teacher_dir):
    """The configs of a tiny pipeline: fine-tune the tiny teacher for 2 epochs, then distil it into truncate:1."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("KD_MAX_JOBS", "1")
    data = DataConfig(source=str(tiny_data_dir), max_length=24)
    common = dict(batch_size=16, lr=1e-4, patience=None, log_every_steps=1, eval_batch_size=64)
    distill = TrainConfig(mode="distill", data=data, student="truncate:1", teacher=str(tiny_teacher_dir),
                          epochs=1, **common)
    teacher = pipeline.teacher_stage_config(distill, str(tiny_teacher_dir), epochs=2, lr=1e-4)
    yield teacher, distill
    for run_dir in runs.iter_run_dirs(root):
        pipeline.stop_run(run_dir)  # never leave a worker behind


def test_a_stopped_pipeline_resumes_in_the_background_even_when_the_cap_holds_it(root, tiny_pipeline):
    teacher_dir, distill_dir = pipeline.start_pipeline(root, "pipe", *tiny_pipeline).runs
    wait_until(lambda: (teacher_dir / runs.CHECKPOINT_DIR / runs.TRAINER_STATE_FILE).is_file(),
               "the teacher stage's first checkpoint")
    assert manage.stop_runs(root, ["pipe-teacher"]) == ["pipe-teacher"]
    wait_until(lambda: runs.read_status(teacher_dir)["state"] == "cancelled", "the teacher stage to stop")
    wait_until(lambda: not jobs.is_alive(runs.read_status(teacher_dir)["pid"]), "the stopped worker to exit")
    assert runs.read_status(distill_dir)["state"] == "cancelled"  # nothing to distil from

    # Another run holds the only slot: the resumed run waits, then the scheduler starts it with --resume.
    blocker = make_run(root, "blocker", "queued")
    assert jobs.start_job(blocker, argv=[sys.executable, "-c", "import time; time.sleep(600)"]) is not None
    resumed = manage.resume_in_background(root, "pipe-teacher")
    assert resumed.pid is None and resumed.requeued == ("pipe",)
    assert runs.read_status(teacher_dir)["waiting"] is True and not runs.stop_requested(teacher_dir)
    assert runs.read_status(distill_dir)["state"] == "queued"
    pipeline.stop_run(blocker)
    wait_until(lambda: pipeline.tick(root) is not None and runs.read_status(teacher_dir).get("pid"),
               "the scheduler to start the resumed teacher stage")

    wait_until(lambda: runs.read_status(distill_dir)["state"] in runs.TERMINAL_STATES, "the distillation stage")
    for run_dir in (teacher_dir, distill_dir):
        assert runs.read_status(run_dir)["state"] == "done", runs.log_path(run_dir).read_text()[-2000:]
    rows = runs.read_metrics(teacher_dir)
    assert [r["from_epoch"] for r in rows if r["kind"] == "resume"] == [1]
    assert [r["epoch"] for r in rows if r["kind"] == "epoch" and not r.get("partial")] == [1, 2]
    assert storage.read_json(distill_dir / runs.EVAL_FILE)["student"]["accuracy"] is not None


def test_clone_settings_gives_the_config_and_a_pipeline_stage_its_teacher_recipe(root, tiny_pipeline):
    teacher_config, distill_config = tiny_pipeline
    teacher = runs.create_run(root, "p-teacher", pipeline.run_record(teacher_config))
    stage = runs.create_run(root, "p", pipeline.run_record(distill_config), depends_on="p-teacher")
    clone = manage.clone_settings(root, "p")
    assert clone["config"]["student"] == "truncate:1" and "provenance" not in clone["config"]
    assert clone["teacher_stage"] == {"base": teacher_config.student, "epochs": 2, "lr": 1e-4}
    assert manage.clone_settings(root, "p-teacher")["teacher_stage"] is None
    for run_dir in (teacher, stage):
        runs.set_status(run_dir, "cancelled")
    manage.delete_runs(root, ["p-teacher"])
    assert manage.clone_settings(root, "p")["teacher_stage"] is None


# ---------------------------------------------------------------- the CLI

def run_cli(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_cli_delete_rename_and_resume_background(root, capsys, monkeypatch):
    make_run(root, "a")
    make_run(root, "b", teacher=str(root / "a"))
    make_run(root, "live", "queued")
    code, _, err = run_cli(capsys, "delete", "--run", str(root / "b"))
    assert code == 2 and err.startswith("error: delete needs --yes") and (root / "b").is_dir()
    code, _, err = run_cli(capsys, "delete", "--run", str(root / "live"), "--run", str(root / "nope"), "--yes")
    assert code == 2 and "'live' is queued: stop it first" in err and "no run named 'nope'" in err
    assert len(err.strip().splitlines()) == 1

    code, result, _ = run_cli(capsys, "rename", "--run", str(root / "a"), "--to", "a2")
    assert code == 0 and result == {"run": str(root / "a2"), "references_updated": ["b"]}
    code, _, err = run_cli(capsys, "rename", "--run", str(root / "a2"), "--to", "no/slash")
    assert code == 2 and err.startswith("error: --to: invalid run name 'no/slash'")

    monkeypatch.setenv("KD_RUNS_DIR", str(root))  # a bare name is looked up in $KD_RUNS_DIR
    code, result, err = run_cli(capsys, "delete", "--run", "b", "--yes")
    assert code == 0 and result == {"deleted": ["b"]} and not (root / "b").exists()
    code, _, err = run_cli(capsys, "resume", "--run", "a2", "--background")
    assert code == 2 and err.strip() == "error: run 'a2' cannot be resumed: it has finished"

"""distill_core.pipeline and preflight: runs from creation to their end, with nothing waiting on a browser.

The stand-in tests replace only the process launch (jobs.start_job) to check the bookkeeping quickly; the
`slow` tests start real workers (`python -m distill_core worker`) and the real CLI, and nobody watches them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill_core import jobs, pipeline, runs
from distill_core.config import DataConfig, TrainConfig, load_train_config
from distill_core.errors import UserError
from distill_core.preflight import check_run

WORKER_TIMEOUT_S = 300


def distill_config(source: str, **overrides) -> TrainConfig:
    return TrainConfig(mode="distill", data=DataConfig(source=source), student=overrides.pop("student", "truncate:1"),
                       teacher=overrides.pop("teacher", "bundled:minilm-l6"), **overrides)


def quick(config: TrainConfig) -> TrainConfig:
    """Two optimiser steps on the tiny data: enough to finish a real run in seconds."""
    return TrainConfig(**{**config.__dict__, "epochs": 1, "max_steps": 2, "batch_size": 16, "log_every_steps": 1,
                          "patience": None})


@pytest.fixture
def launches(monkeypatch) -> list[str]:
    """Names of the runs whose worker would have been started (no process is started)."""
    started: list[str] = []
    monkeypatch.setattr(jobs, "start_job", lambda run_dir, **_: started.append(Path(run_dir).name))
    monkeypatch.setattr(jobs, "start_queued", lambda root, **_: [])
    return started


def wait_for_states(run_dirs: list[Path], timeout_s: float = WORKER_TIMEOUT_S) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = [runs.read_status(d).get("state") for d in run_dirs]
        if all(s in runs.TERMINAL_STATES or s == "interrupted" for s in states):
            if states != ["done"] * len(run_dirs):
                pytest.fail(_explain(run_dirs, "did not all finish 'done'"))
            return states
        time.sleep(0.5)
    pytest.fail(_explain(run_dirs, f"did not finish in {timeout_s} s"))


def _explain(run_dirs: list[Path], what: str) -> str:
    logs = {d.name: runs.log_path(d).read_text(errors="replace")[-1500:] for d in run_dirs if runs.log_path(d).exists()}
    return f"runs {what}: {[runs.read_status(d) for d in run_dirs]}\n{logs}"


# ---------------------------------------------------------------- preflight and creation
def test_start_run_writes_a_config_the_worker_accepts(data_root, tmp_path, tiny_teacher_dir, launches):
    config = distill_config(str(data_root / "tiny"), teacher=str(tiny_teacher_dir))
    started = pipeline.start_run(tmp_path / "runs", "ui-run", config)
    assert launches == ["ui-run"] and started.runs == (started.follow,) and started.follow.name == "ui-run"
    assert load_train_config(started.follow / "config.json") == config
    provenance = json.loads((started.follow / "config.json").read_text())["provenance"]
    assert provenance["created_by"] == "dashboard" and provenance["split_sizes"]["test"] == 80


@pytest.mark.parametrize("overrides, message", [
    ({"alpha": 2.0}, "alpha=2.0"),
    ({"teacher": "bundled:minilm-l6"}, "no classification head: fine-tune it first"),
    ({"student": "truncate:9"}, "but the teacher has 2"),
    ({"teacher": "/no/such/folder"}, "does not exist"),
    ({"max_length": 4096}, "exceeds what teacher"),
], ids=["alpha", "untrained-teacher", "too-many-layers", "missing-teacher", "too-long"])
def test_preflight_refuses_bad_input_before_a_run_exists(data_root, tmp_path, tiny_teacher_dir, launches, overrides,
                                                         message):
    data = DataConfig(source=str(data_root / "tiny"), max_length=overrides.pop("max_length", 150))
    config = TrainConfig(mode="distill", data=data, student=overrides.pop("student", "truncate:1"),
                         teacher=overrides.pop("teacher", str(tiny_teacher_dir)), **overrides)
    with pytest.raises(UserError, match=message):
        check_run(config)
    with pytest.raises(UserError, match=message):
        pipeline.start_run(tmp_path / "runs", "refused", config)
    assert not (tmp_path / "runs" / "refused").exists() and launches == []


def test_train_prepare_refuses_what_preflight_refuses(data_root, tiny_teacher_dir):
    from distill_core.train import prepare

    config = distill_config(str(data_root / "tiny"), teacher=str(tiny_teacher_dir), student="truncate:9")
    with pytest.raises(UserError) as from_preflight:
        check_run(config)
    with pytest.raises(UserError) as from_prepare:
        prepare(config)
    assert str(from_prepare.value) == str(from_preflight.value)


# ---------------------------------------------------------------- stages, bookkeeping only
def test_pipeline_waits_in_status_then_starts_or_cancels(data_root, tmp_path, launches):
    root = tmp_path / "runs"
    distill = distill_config(str(data_root / "tiny"), student="truncate:2")
    teacher = pipeline.teacher_stage_config(distill, "bundled:minilm-l6", epochs=1, lr=1e-4)
    started = pipeline.start_pipeline(root, "pipe", teacher, distill)
    teacher_dir, distill_dir = started.runs
    assert launches == ["pipe-teacher"] and started.follow == teacher_dir
    assert runs.read_status(distill_dir)[pipeline.DEPENDS_ON] == "pipe-teacher"
    saved = json.loads((distill_dir / "config.json").read_text())
    assert saved["teacher"] == str(teacher_dir) and "after_run" not in saved["extra"]  # not in the config
    assert pipeline.next_stage(teacher_dir) == distill_dir and pipeline.depends_on(distill_dir) == "pipe-teacher"

    pipeline.finish_run(teacher_dir)  # the teacher is still queued: nothing happens
    assert launches == ["pipe-teacher"]
    runs.set_status(teacher_dir, "done")
    pipeline.finish_run(teacher_dir)  # what the teacher's worker does as it exits
    assert launches == ["pipe-teacher", "pipe"]

    second = pipeline.start_pipeline(root, "pipe2", teacher, distill)
    runs.set_status(second.runs[0], "failed", error="boom")
    pipeline.finish_run(second.runs[0])
    status = runs.read_status(second.runs[1])
    assert status["state"] == "cancelled" and "pipe2-teacher" in status["error"] and "failed" in status["error"]


def test_stopping_a_queued_teacher_cancels_its_distillation(data_root, tmp_path, launches):
    distill = distill_config(str(data_root / "tiny"), student="truncate:2")
    teacher = pipeline.teacher_stage_config(distill, "bundled:minilm-l6", epochs=1, lr=1e-4)
    teacher_dir, distill_dir = pipeline.start_pipeline(tmp_path / "runs", "stopped", teacher, distill).runs
    assert pipeline.stop_run(teacher_dir) is True
    assert runs.read_status(teacher_dir)["state"] == "cancelled"
    assert runs.read_status(distill_dir)["state"] == "cancelled"


def test_tick_settles_a_stage_whose_teacher_died_without_a_worker_to_say_so(data_root, tmp_path, launches):
    distill = distill_config(str(data_root / "tiny"), student="truncate:2")
    teacher = pipeline.teacher_stage_config(distill, "bundled:minilm-l6", epochs=1, lr=1e-4)
    root = tmp_path / "runs"
    teacher_dir, distill_dir = pipeline.start_pipeline(root, "killed", teacher, distill).runs
    runs.set_status(teacher_dir, "interrupted")  # as read_status reports a worker killed with -9
    assert pipeline.tick(root) == ["killed"]
    assert "ended interrupted" in runs.read_status(distill_dir)["error"]


@pytest.mark.parametrize("length", [10, 56, 57, 64])
def test_a_long_pipeline_name_still_follows_a_run_that_exists(data_root, tmp_path, launches, length):
    distill = distill_config(str(data_root / "tiny"), student="truncate:2")
    teacher = pipeline.teacher_stage_config(distill, "bundled:minilm-l6", epochs=1, lr=1e-4)
    started = pipeline.start_pipeline(tmp_path / "runs", "p" * length, teacher, distill)
    assert started.follow.is_dir() and started.runs[1].name == "p" * length
    assert runs.read_status(started.runs[1])[pipeline.DEPENDS_ON] == started.follow.name


# ---------------------------------------------------------------- real workers, nobody watching
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distill_core", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=WORKER_TIMEOUT_S, env={**os.environ, "KD_MAX_JOBS": "1"}, check=False)


PIPELINE_FLAGS = ("--student", "truncate:1", "--epochs", "1", "--max-steps", "2", "--batch-size", "16",
                  "--teacher-epochs", "1", "--patience", "0", "--quiet")


@pytest.mark.slow
def test_pipelines_run_both_stages_with_no_page_and_no_watcher(data_root, tmp_path, tiny_teacher_dir):
    """The Train page's call and `pipeline --background` both return at once; the teacher's worker starts the
    distillation stage by itself. No tick(), no page, no process of the test's polls the scheduler."""
    distill = quick(distill_config(str(data_root / "tiny"), teacher=str(tiny_teacher_dir)))
    teacher = quick(pipeline.teacher_stage_config(distill, str(tiny_teacher_dir), epochs=1, lr=1e-4))
    from_page = pipeline.start_pipeline(tmp_path / "page-runs", "from-page", teacher, distill)

    cli = _cli("pipeline", "--data", str(data_root / "tiny"), "--base", str(tiny_teacher_dir), "--out",
               str(tmp_path / "cli-runs" / "from-cli"), "--background", *PIPELINE_FLAGS, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    answer = json.loads(cli.stdout)
    cli_runs = [Path(answer["teacher_run"]), Path(answer["distill_run"])]
    assert answer["follow"] == answer["teacher_run"] and cli_runs[1].name == "from-cli"

    assert wait_for_states([*from_page.runs, *cli_runs]) == ["done"] * 4
    for distill_dir in (from_page.runs[1], cli_runs[1]):
        evaluation = json.loads(runs.eval_path(distill_dir).read_text())
        assert "teacher" in evaluation and evaluation["student"]["n_examples"] == 80


@pytest.mark.slow
def test_cli_pipeline_in_the_foreground_runs_both_stages_then_returns(data_root, tmp_path, tiny_teacher_dir):
    result = _cli("pipeline", "--data", str(data_root / "tiny"), "--base", str(tiny_teacher_dir), "--out",
                  str(tmp_path / "runs" / "fg"), *PIPELINE_FLAGS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["state"] == "done" and [Path(r["run"]).name for r in answer["runs"]] == ["fg-teacher", "fg"]
    assert [runs.read_status(Path(r["run"]))["state"] for r in answer["runs"]] == ["done", "done"]
    assert isinstance(answer["runs"][1]["teacher_test_accuracy"], float)


def test_cli_pipeline_refuses_bad_input_with_one_line_and_creates_nothing(data_root, tmp_path, tiny_teacher_dir):
    result = _cli("pipeline", "--data", str(data_root / "tiny"), "--base", str(tiny_teacher_dir), "--student",
                  "truncate:9", "--out", str(tmp_path / "runs" / "bad"), "--background", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "but the teacher has 2" in result.stderr and not (tmp_path / "runs").exists()

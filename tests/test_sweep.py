"""Sweeps (distill_core.sweep): the grid, its limits, every cell checked before anything exists, a real foreground
sweep through the CLI (one JSON entry per cell; only the first cell runs the teacher), and the series rules that
run a background sweep's cells one at a time."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from distill_core import cli, pipeline, runs, storage, sweep
from distill_core.config import DataConfig, TrainConfig
from distill_core.errors import UserError

BASE = TrainConfig(mode="distill", data=DataConfig(source="tiny"), student="truncate:1", teacher="teacher")


def plan(temperatures=(1.0, 2.0), alphas=(0.25, 0.5, 0.75), seeds=(), methods=()) -> sweep.SweepConfig:
    return sweep.SweepConfig(BASE, tuple(temperatures), tuple(alphas), tuple(seeds), tuple(methods))


def test_cells_expand_the_grid_seed_minor_with_names_and_overrides():
    grid = sweep.cells(plan(seeds=(1, 2)))
    assert len(grid) == 2 * 3 * 2
    assert [(c.temperature, c.alpha, c.seed) for c in grid[:3]] == [(1.0, 0.25, 1), (1.0, 0.25, 2), (1.0, 0.5, 1)]
    assert grid[0].run_name("g") == "g-T1-a0.25-s1"
    assert (grid[-1].config.temperature, grid[-1].config.alpha, grid[-1].config.seed) == (2.0, 0.75, 2)
    assert grid[-1].config.student == BASE.student  # everything not swept is the base's

    methods = sweep.cells(plan(temperatures=(2.0,), alphas=(0.5,), methods=("logits", "tinybert")))
    assert [c.run_name("g") for c in methods] == ["g-T2-a0.5-s42-logits", "g-T2-a0.5-s42-tinybert"]
    assert methods[1].config.hidden_weight > 0 and methods[0].config.hidden_weight == 0
    assert methods[1].config.temperature == 2.0  # a method sets loss terms, never the swept T


def test_a_sweep_over_the_cap_or_of_zero_cells_is_refused_in_the_flags_words():
    too_big = plan(temperatures=(1, 2, 3, 4, 5), alphas=(0.1, 0.3, 0.5, 0.7, 0.9), seeds=(1, 2, 3))
    assert too_big.size() == 75 > sweep.MAX_CELLS
    found = sweep.problems(too_big)
    assert len(found) == 1 and f"at most {sweep.MAX_CELLS}" in found[0] and "--temperatures" in found[0]

    empty = plan(temperatures=())
    assert empty.size() == 0
    with pytest.raises(UserError, match="--temperatures is empty"):
        sweep.check(empty)
    assert sweep.problems(plan(alphas=(0.5, 0.5))) == ["--alphas lists 0.5 more than once: give each value once"]


def test_every_bad_cell_is_named_once_by_its_list(tmp_path):
    found = sweep.problems(plan(temperatures=(0.0, 2.0), alphas=(0.5, 1.5)))
    assert any(p.startswith("--alphas must be within [0, 1]") and "1.5" in p for p in found)
    assert any(p.startswith("--temperatures must be > 0") for p in found)
    assert len(found) == len(set(found)) == 2  # four bad cells, two problems


def test_cli_bad_alpha_exits_2_with_one_line_and_creates_nothing(tmp_path, capsys, tiny_data_dir,
                                                                 tiny_teacher_dir):
    root = tmp_path / "runs"
    code = cli.main(["sweep", "--data", str(tiny_data_dir), "--teacher", str(tiny_teacher_dir), "--student",
                     "truncate:1", "--out", str(root / "grid"), "--temperatures", "1", "2", "--alphas", "0.5", "1.5",
                     "--epochs", "0"])
    err = capsys.readouterr().err.strip()
    assert code == cli.EXIT_USAGE
    assert len(err.splitlines()) == 1 and "--alphas must be within [0, 1]" in err and "--epochs" in err
    assert not root.exists()


def phases_of(run_dir: Path) -> list[str]:
    return [row["phase"] for row in runs.read_metrics(run_dir) if row.get("kind") == "phase_end"]


def test_foreground_sweep_prints_each_cell_and_only_the_first_runs_the_teacher(
        tmp_path, monkeypatch, capsys, tiny_data_dir, tiny_teacher_dir, one_torch_thread):
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))  # a cold teacher-logit cache
    root = tmp_path / "runs"
    code = cli.main(["sweep", "--data", str(tiny_data_dir), "--teacher", str(tiny_teacher_dir), "--student",
                     "truncate:1", "--out", str(root / "grid"), "--temperatures", "1", "4", "--alphas", "0.5",
                     "--epochs", "1", "--max-steps", "2", "--batch-size", "16", "--max-length", "24",
                     "--eval-samples", "40", "--log-every", "1", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(c["T"], c["alpha"], c["seed"]) for c in out["cells"]] == [(1.0, 0.5, 42), (4.0, 0.5, 42)]
    for cell in out["cells"]:
        assert cell["state"] == "done" and Path(cell["run"]).is_dir()
        assert 0 <= cell["valid_accuracy"] <= 1 and 0 <= cell["test_accuracy"] <= 1
    assert out["best"]["run"] in [c["run"] for c in out["cells"]]
    first, second = (Path(c["run"]) for c in out["cells"])
    assert "teacher_logits" in phases_of(first)
    assert "teacher_logits" not in phases_of(second)  # the cache made by the first cell served the second
    record = storage.read_json(root / "grid" / sweep.GROUP_FILE)
    assert [c["run"] for c in record["cells"]] == [first.name, second.name]
    assert {r["id"] for r in runs.list_runs(root)} == {first.name, second.name}  # the group folder is no run


@pytest.fixture
def queued_group(tmp_path, tiny_data_dir, tiny_teacher_dir):
    """A created, not started, 3-cell sweep of the tiny data (no worker runs)."""
    base = TrainConfig(mode="distill", data=DataConfig(source=str(tiny_data_dir), max_length=24),
                       student="truncate:1", teacher=str(tiny_teacher_dir), epochs=1)
    return sweep.create_group(tmp_path / "runs", "grid", sweep.SweepConfig(base, (1.0, 2.0, 4.0), (0.5,)))


def test_a_series_starts_nothing_while_a_cell_is_live_and_a_stop_cancels_every_queued_cell(queued_group):
    first, second, third = queued_group.run_dirs
    runs.set_status(first, "running", pid=os.getpid())  # a live cell (this process stands in for its worker)
    assert pipeline.start_series(queued_group.root, "grid") is None
    assert runs.read_status(second)["state"] == "queued" and not runs.read_status(second).get("pid")

    runs.set_status(first, "failed", error="boom")
    runs.request_stop(second)  # stopped while queued: skipped, the next queued cell is the one to start
    assert sweep.stop_group(queued_group.root, "grid") == [second.name, third.name]
    assert [runs.read_status(d)["state"] for d in queued_group.run_dirs] == ["failed", "cancelled", "cancelled"]
    assert pipeline.tick(queued_group.root) == [] and pipeline.start_series(queued_group.root, "grid") is None


def test_cells_owned_by_a_cli_that_died_are_cancelled_not_started(tmp_path, queued_group):
    dead = 2 ** 22 + 12345  # above pid_max's usual limit: no such process
    for run_dir in queued_group.run_dirs:
        runs.update_status(run_dir, **{pipeline.CLAIMED_BY: dead})
    assert pipeline.start_series(queued_group.root, "grid") is None
    assert {runs.read_status(d)["state"] for d in queued_group.run_dirs} == {"cancelled"}


def test_a_taken_name_or_a_second_sweep_of_the_same_name_creates_nothing(queued_group, tmp_path):
    before = sorted(p.name for p in queued_group.root.iterdir())
    with pytest.raises(UserError, match=r"--out: grid.* already exist"):
        sweep.create_group(queued_group.root, "grid", plan(temperatures=(1.0,), alphas=(0.5,)))
    assert sorted(p.name for p in queued_group.root.iterdir()) == before


def test_sigterm_stops_a_foreground_sweep_not_just_its_running_cell(tmp_path, tiny_data_dir, tiny_teacher_dir):
    """`kill` (or `docker stop`) of `sweep` ends the process: the running cell is cancelled at its next step and
    the cells after it are cancelled unrun, instead of the sweep moving on to the next cell."""
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "runs"
    env = {**os.environ, "KD_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "distill_core", "sweep", "--data", str(tiny_data_dir), "--teacher",
         str(tiny_teacher_dir), "--student", "truncate:1", "--out", str(root / "grid"), "--temperatures", "1", "2",
         "4", "--alphas", "0.5", "--epochs", "100", "--batch-size", "8", "--max-length", "24", "--log-every", "1",
         "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = root / "grid-T1-a0.5-s42"
    try:
        deadline = time.monotonic() + 300
        while not any(r.get("kind") == "step" for r in runs.read_metrics(first)) if first.is_dir() else True:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the first cell never logged a step"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    states = {Path(c["run"]).name: c["state"] for c in json.loads(out)["cells"]}
    assert states == {"grid-T1-a0.5-s42": "cancelled", "grid-T2-a0.5-s42": "cancelled",
                      "grid-T4-a0.5-s42": "cancelled"}
    assert not runs.read_metrics(root / "grid-T2-a0.5-s42"), "the second cell never started"
    assert "ended before this cell ran" in runs.read_status(root / "grid-T4-a0.5-s42")["error"]

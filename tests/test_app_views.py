"""distill_core.app.views: a run as the live panel shows it, read from the store."""
from __future__ import annotations

import pytest

from distill_core import runs
from distill_core.app import views


def test_live_view_reports_progress_and_eta(tmp_path):
    run_dir = runs.create_run(tmp_path, "live", {"mode": "distill"})
    runs.append_metric(run_dir, {"kind": "step", "step": 10, "total_steps": 100, "time": 100.0})
    runs.append_metric(run_dir, {"kind": "step", "step": 30, "total_steps": 100, "time": 110.0})
    runs.append_metric(run_dir, {"kind": "epoch", "epoch": 1, "valid_accuracy": 0.5})
    view = views.live_view(run_dir)
    assert view.progress == pytest.approx(0.3)
    assert view.eta_s == pytest.approx(35.0)  # 70 steps left at 2 steps/s
    assert len(view.epoch_rows) == 1 and view.state == "queued"
    assert views.run_epoch_rows(tmp_path, "live") == view.epoch_rows


def test_live_view_of_a_run_without_steps_has_no_eta(tmp_path):
    run_dir = runs.create_run(tmp_path, "fresh", {"mode": "finetune"})
    view = views.live_view(run_dir)
    assert (view.step, view.total_steps, view.eta_s, view.progress) == (None, None, None, 0.0)
    assert views.worker_log_tail(run_dir) == "" and views.run_evaluation(tmp_path, "fresh") is None

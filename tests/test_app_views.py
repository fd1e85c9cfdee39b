"""distill_core.app.views: a run as the live panel shows it, read from the store."""
from __future__ import annotations

from pathlib import Path

import pytest

from distill_core import pipeline, progress, runs
from distill_core.app import views

CONFIG = {"mode": "finetune", "data": {"source": "nowhere"}, "student": "config:L2-H64", "epochs": 2,
          "batch_size": 8}


def test_a_running_view_tells_its_phase_elapsed_time_and_eta(tmp_path):
    run_dir = runs.create_run(tmp_path, "live", CONFIG)
    runs.set_status(run_dir, "running", sizes={"train": 80, "validation": 20, "test": 20})
    started = runs.read_status(run_dir)["started_at"]
    snapshot = progress.Snapshot(phase="training", message="training", done=10, total=20, epoch=1, epochs=2,
                                 steps=10, total_steps=20, phase_started_at=started + 5,
                                 spent={"preparing": 5.0}, passes={"preparing": 1})
    runs.update_status(run_dir, progress=snapshot.as_dict())
    runs.append_metric(run_dir, {"kind": "epoch", "epoch": 1, "valid_accuracy": 0.5, "partial": True})
    view = views.live_view(run_dir, now=started + 25)
    assert view.phase_text == "training · step 10 / 20 · epoch 1 / 2"
    assert view.elapsed_s == pytest.approx(25)
    # 10 steps in 20 s: 20 s of training left, plus the validation, saving and test evaluation still to come
    assert view.eta_s is not None and view.eta_s > 20
    assert 0 < view.progress < 1 and view.stage is None and view.epochs_done == 0


def test_a_queued_run_shows_how_long_it_waited(tmp_path):
    run_dir = runs.create_run(tmp_path, "fresh", CONFIG)
    created = runs.read_status(run_dir)["created_at"]
    view = views.live_view(run_dir, now=created + 7)
    assert view.waited_s == pytest.approx(7) and view.elapsed_s is None and view.phase_text == "starting"
    assert views.worker_log_tail(run_dir) == "" and views.run_evaluation(tmp_path, "fresh") is None


def test_a_pipeline_is_one_job_with_two_stages(tmp_path):
    teacher_name, distill_name = pipeline.stage_names("job")
    teacher_dir = runs.create_run(tmp_path, teacher_name, CONFIG)
    distill_dir = runs.create_run(tmp_path, distill_name, {**CONFIG, "mode": "distill", "student": "truncate:1",
                                                          "teacher": str(tmp_path / teacher_name)},
                                  depends_on=teacher_name)
    runs.set_status(teacher_dir, "running", sizes={"train": 80, "validation": 20, "test": 20})
    started = runs.read_status(teacher_dir)["started_at"]
    first = views.live_view(teacher_dir, now=started + 10)
    alone = views._left_s(teacher_dir, runs.read_status(teacher_dir), started + 10)
    assert str(first.stage) == "stage 1/2: fine-tune the teacher"
    assert first.eta_s is not None and alone is not None and first.eta_s > alone  # the second stage is counted
    runs.set_status(teacher_dir, "done")
    runs.set_status(distill_dir, "running")
    second = views.live_view(distill_dir, now=started + 100)
    assert str(second.stage) == "stage 2/2: distil" and second.elapsed_s == pytest.approx(100)


def test_a_finished_view_carries_its_summary(tmp_path):
    run_dir = runs.create_run(tmp_path, "finished", CONFIG)
    runs.set_status(run_dir, "running")
    runs.set_status(run_dir, "done", wall_s=42.5, train_samples_per_s=12.0)
    runs.append_metric(run_dir, {"kind": "epoch", "epoch": 1, "valid_accuracy": 0.5, "partial": False})
    view = views.live_view(run_dir)
    assert (view.wall_s, view.train_samples_per_s, view.progress, view.eta_s) == (42.5, 12.0, 1.0, None)
    assert views.run_epoch_rows(tmp_path, "finished") == view.epoch_rows and view.epochs_done == 1


# ----------------------------------------------------------------------------------------------------------------
# the live panel on Train (AppTest): the address names a run, and only a run

def open_train(monkeypatch, tmp_path, query: dict | None = None):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KD_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "streamlit_app.py"), default_timeout=180)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def test_an_address_naming_no_run_gets_a_clear_warning(monkeypatch, tmp_path):
    runs.create_run(tmp_path / "runs", "present", CONFIG)
    at = open_train(monkeypatch, tmp_path, {"run": "gone"})
    assert not at.exception, at.exception
    assert any("No run named 'gone' in this runs folder: it may have been deleted or renamed" in w.value
               for w in at.warning), [w.value for w in at.warning]
    assert "run" not in at.query_params


def test_the_run_picker_shows_bare_names_so_only_a_name_reaches_the_address(monkeypatch, tmp_path):
    # Streamlit sends a selectbox's value back as its label: a label with the run's state in it became the value
    # (and the address) once the state changed. The labels are the names themselves.
    runs.create_run(tmp_path / "runs", "quickstart-2", CONFIG)
    at = open_train(monkeypatch, tmp_path, {"run": "quickstart-2"})
    picker = at.selectbox(key="run")
    assert list(picker.options) == ["quickstart-2"] and picker.value == "quickstart-2"
    assert at.query_params["run"] == ["quickstart-2"] or at.query_params["run"] == "quickstart-2"

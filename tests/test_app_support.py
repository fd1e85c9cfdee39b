"""distill_core.app_support: what the dashboard pages rely on, tested without Streamlit."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import plotly.graph_objects as go
import pytest

from distill_core import app_support as app
from distill_core import runs
from distill_core.config import DataConfig, TrainConfig
from distill_core.errors import UserError


@pytest.fixture
def data_root(monkeypatch, tmp_path, tiny_data_dir) -> Path:
    root = tmp_path / "data"
    shutil.copytree(tiny_data_dir, root / "tiny")
    (root / "loose.csv").write_text("text,label\nhello,0\nworld,1\n", encoding="utf-8")
    (root / "notes.txt").write_text("not data", encoding="utf-8")
    (root / "empty-folder").mkdir()
    monkeypatch.setenv("KD_DATA_DIR", str(root))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    return root


def distill_config(source: str, **overrides) -> TrainConfig:
    return TrainConfig(mode="distill", data=DataConfig(source=source), student=overrides.pop("student", "truncate:1"),
                       teacher=overrides.pop("teacher", "bundled:minilm-l6"), **overrides)


# ---------------------------------------------------------------- data folders and uploads
def test_local_datasets_lists_dataset_folders_and_data_files_only(data_root):
    found = {Path(d.path).name: d.kind for d in app.local_datasets()}
    assert found == {"tiny": "folder", "loose.csv": "file"}


def test_save_upload_keeps_the_file_under_the_uploads_folder(data_root):
    path = app.save_upload("../../My Data!.csv", b"text,label\nhi,0\n")
    assert path.parent == app.uploads_dir() and path.suffix == ".csv" and path.name.startswith("My-Data-")
    assert app.save_upload("../../My Data!.csv", b"text,label\nhi,0\n") == path  # idempotent
    assert any(d.kind == "upload" for d in app.local_datasets())


@pytest.mark.parametrize("name, content, message", [
    ("data.exe", b"x", "unsupported file type"),
    ("data.csv", b"  \n", "is empty"),
    ("big.csv", b"x" * 1_100_001, "over the 1 MB upload limit"),
], ids=["type", "empty", "too-big"])
def test_save_upload_refuses_bad_files(data_root, monkeypatch, name, content, message):
    monkeypatch.setenv("KD_MAX_UPLOAD_MB", "1")
    with pytest.raises(UserError, match=message):
        app.save_upload(name, content)
    assert not any(app.uploads_dir().iterdir())


def test_estimate_rows_counts_local_files_and_knows_ag_news(data_root):
    assert app.estimate_rows(str(data_root / "tiny")) == (240, 80)
    assert app.estimate_rows(str(data_root / "loose.csv")) == (2, None)
    assert app.estimate_rows("ag_news") == (120_000, 7_600)
    assert app.estimate_rows("no/such-dataset") == (None, None)


def test_every_setting_has_a_one_line_help():
    import dataclasses

    settings = {f.name for cls in (TrainConfig, DataConfig) for f in dataclasses.fields(cls)}
    settings -= {"mode", "data", "student", "teacher", "extra"}  # chosen by dedicated widgets, not numbers
    assert settings <= set(app.FIELD_HELP)
    assert all(text and "\n" not in text for text in app.FIELD_HELP.values())


# ---------------------------------------------------------------- estimates
def test_split_sizes_follow_fractions_and_subsamples():
    config = distill_config("x", epochs=1)
    assert app.split_sizes(config, 1000, 500) == (800, 200, 500)
    small = TrainConfig(**{**config.__dict__, "data": DataConfig(source="x", train_samples=100, eval_samples=50)})
    assert app.split_sizes(small, 1000, 500) == (100, 50, 50)
    assert app.split_sizes(config, 1000, None) == (640, 160, 200)  # a single file: test carved first


def test_eta_scales_with_model_size_and_epochs():
    reference = app.train_samples_per_s((6, 384))
    assert reference == pytest.approx(app.REF_SAMPLES_PER_S)
    assert app.train_samples_per_s((12, 768)) == pytest.approx(reference / 8)
    one = app.estimate_seconds(distill_config("x", epochs=1), (1000, 100, 100))
    two = app.estimate_seconds(distill_config("x", epochs=2), (1000, 100, 100))
    assert two > one > app.STARTUP_S


@pytest.mark.parametrize("spec, teacher, shape", [
    ("google/bert_uncased_L-4_H-256_A-4", None, (4, 256)),
    ("config:L2-H128", None, (2, 128)),
    ("truncate:3", "bundled:minilm-l6", (3, 384)),
    ("bundled:minilm-l6", None, (6, 384)),
    ("odunola/bert-base-uncased-ag-news-finetuned-2", None, (12, 768)),
    ("someone/unknown-model", None, None),
])
def test_model_shape_without_loading_weights(spec, teacher, shape):
    assert app.model_shape(spec, teacher) == shape


def test_model_facts_read_from_safetensors_headers(tiny_teacher_dir):
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    facts = app.model_facts(str(tiny_teacher_dir))
    assert facts["parameters"] == sum(p.numel() for p in model.parameters())
    assert facts["size_mb"] == pytest.approx(facts["parameters"] * torch.finfo(torch.float32).bits / 8 / 1e6, rel=0.01)


@pytest.mark.parametrize("seconds, text", [(42, "42 s"), (125, "2 min 05 s"), (3720, "1 h 02 min"), (None, "unknown")])
def test_format_duration(seconds, text):
    assert app.format_duration(seconds) == text


# ---------------------------------------------------------------- runs from the UI
def test_start_run_writes_a_config_the_worker_accepts(data_root, tmp_path, tiny_teacher_dir, monkeypatch):
    from distill_core import jobs
    from distill_core.config import load_train_config

    started = []
    monkeypatch.setattr(jobs, "start_job", lambda run_dir, **_: started.append(run_dir))
    config = distill_config(str(data_root / "tiny"), teacher=str(tiny_teacher_dir))
    run_dir = app.start_run(tmp_path / "runs", "ui-run", config)
    assert started == [run_dir]
    assert load_train_config(run_dir / "config.json") == config
    provenance = json.loads((run_dir / "config.json").read_text())["provenance"]
    assert provenance["created_by"] == "dashboard" and provenance["split_sizes"]["test"] == 80


@pytest.mark.parametrize("overrides, message", [
    ({"alpha": 2.0}, "alpha=2.0"),
    ({"teacher": "bundled:minilm-l6"}, "no trained classification head"),
    ({"student": "truncate:9"}, "teacher has only 2"),
    ({"teacher": "/no/such/folder"}, "does not exist"),
], ids=["alpha", "untrained-teacher", "too-many-layers", "missing-teacher"])
def test_check_config_refuses_bad_input_before_a_run_exists(data_root, tiny_teacher_dir, overrides, message):
    config = distill_config(str(data_root / "tiny"), teacher=overrides.pop("teacher", str(tiny_teacher_dir)),
                            **{k: v for k, v in overrides.items() if k != "student"})
    if "student" in overrides:
        config = TrainConfig(**{**config.__dict__, "student": overrides["student"]})
    with pytest.raises(UserError, match=message):
        app.check_config(config)


def test_pipeline_starts_teacher_first_then_distils_or_cancels(data_root, tmp_path, monkeypatch):
    from distill_core import jobs

    started = []
    monkeypatch.setattr(jobs, "start_job", lambda run_dir, **_: started.append(Path(run_dir).name))
    monkeypatch.setattr(jobs, "start_queued", lambda root, **_: [])
    root = tmp_path / "runs"
    distill = distill_config(str(data_root / "tiny"), student="truncate:2")
    teacher = app.teacher_stage_config(distill, "bundled:minilm-l6", epochs=1, lr=1e-4)
    teacher_dir, distill_dir = app.start_pipeline(root, "pipe", teacher, distill)
    assert started == ["pipe-teacher"]
    saved = json.loads((distill_dir / "config.json").read_text())
    assert saved["teacher"] == str(teacher_dir) and saved["extra"]["after_run"] == "pipe-teacher"
    assert app.successor(root, "pipe-teacher") == "pipe"

    app.poll(root)  # the teacher is still queued: nothing happens
    assert started == ["pipe-teacher"]
    runs.set_status(teacher_dir, "done")
    app.poll(root)
    assert started == ["pipe-teacher", "pipe"]

    _, second = app.start_pipeline(root, "pipe2", teacher, distill)
    runs.set_status(root / "pipe2-teacher", "failed", error="boom")
    app.advance_pipelines(root)
    status = runs.read_status(second)
    assert status["state"] == "cancelled" and "pipe2-teacher" in status["error"]


def test_live_view_reports_progress_and_eta(tmp_path):
    run_dir = runs.create_run(tmp_path, "live", {"mode": "distill"})
    runs.append_metric(run_dir, {"kind": "step", "step": 10, "total_steps": 100, "time": 100.0})
    runs.append_metric(run_dir, {"kind": "step", "step": 30, "total_steps": 100, "time": 110.0})
    runs.append_metric(run_dir, {"kind": "epoch", "epoch": 1, "valid_accuracy": 0.5})
    view = app.live_view(run_dir)
    assert view.progress == pytest.approx(0.3)
    assert view.eta_s == pytest.approx(35.0)  # 70 steps left at 2 steps/s
    assert len(view.epoch_rows) == 1 and view.state == "queued"


# ---------------------------------------------------------------- reports and playground helpers
def test_html_report_is_self_contained_and_escapes_cells():
    page = app.html_report("Bench <1>", [go.Figure(go.Bar(x=[1], y=[2])), go.Figure()],
                           [{"model": "<script>", "latency_ms_p50": 1.23456}])
    assert page.count("plotly.js v") == 1 and '<script src="http' not in page  # plotly.js inlined, once
    assert "&lt;script&gt;" in page and "1.235" in page and "Bench &lt;1&gt;" in page


def test_rows_to_csv_has_a_header_of_all_keys():
    assert app.rows_to_csv([{"a": 1}, {"a": 2, "b": 3}]).splitlines() == ["a,b", "1,", "2,3"]


def test_sample_texts_cover_every_class(data_root):
    samples = app.sample_texts(str(data_root / "tiny"), n=4)
    assert len(samples) == 4 and len(set(samples)) == 4


def test_softened_distribution_flattens_with_temperature():
    sharp, soft = app.softened([4.0, 0.0, -1.0], 1.0), app.softened([4.0, 0.0, -1.0], 4.0)
    assert sum(soft) == pytest.approx(1.0) and max(soft) < max(sharp) and soft.index(max(soft)) == 0

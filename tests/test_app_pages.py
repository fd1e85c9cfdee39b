"""Every dashboard page through Streamlit's AppTest, offline: empty store, a store with a finished distillation
run, and bad form input (which must show an error and create no run)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from distill_core import bench_jobs, jobs, presets, runs, storage
from distill_core.data import EMBEDDED_DATA_DIR

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"
PAGES = ["app_pages/train.py", "app_pages/compare.py", "app_pages/benchmark.py", "app_pages/playground.py"]
TITLES = {"app_pages/train.py": "Train", "app_pages/compare.py": "Compare", "app_pages/benchmark.py": "Benchmark",
          "app_pages/playground.py": "Playground"}
# Config fields whose Train widget key is not t_<field>.
TRAIN_WIDGETS = {"batch_size": "t_batch", "log_every_steps": "t_log_every", "warmup_ratio": "t_warmup",
                 "weight_decay": "t_wd", "eval_batch_size": "t_eval_batch"}
TIMEOUT_S = 180  # first loads import torch/transformers; generous for a busy 2-core machine


@pytest.fixture
def app_env(monkeypatch, tmp_path, tiny_data_dir, tiny_teacher_dir):
    """A private runs folder, a data folder holding the tiny dataset, and the tiny teacher as an extra model."""
    data_root = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data_root / "tiny")
    monkeypatch.setenv("KD_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("KD_DATA_DIR", str(data_root))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("KD_EXTRA_MODELS", str(tiny_teacher_dir))
    return SimpleNamespace(runs=tmp_path / "runs", data=data_root / "tiny", teacher=tiny_teacher_dir)


def open_page(page: str, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    if page != "app_pages/train.py":
        at.switch_page(page).run()
    return at


def make_finished_run(env, name: str = "tiny-distill") -> Path:
    """A finished distillation run as the worker leaves it (the tiny teacher's weights stand in for the student)."""
    labels = ["World", "Sports", "Business", "Sci/Tech"]
    metrics = {"accuracy": 0.75, "macro_f1": 0.74, "ece": 0.05, "n_examples": 80, "label_names": labels,
               "confusion_matrix": [[15, 2, 2, 1], [1, 17, 1, 1], [3, 1, 14, 2], [2, 1, 3, 14]],
               "per_class": {n: {"precision": 0.7, "recall": 0.7, "f1": 0.7, "support": 20} for n in labels}}
    config = {"mode": "distill", "data": {"source": str(env.data), "eval_samples": None}, "student": "truncate:1",
              "teacher": str(env.teacher), "epochs": 2}
    run_dir = runs.create_run(env.runs, name, config)
    shutil.copytree(env.teacher, run_dir / "model")
    for epoch in (1, 2):
        runs.append_metric(run_dir, {"kind": "step", "step": epoch * 5, "total_steps": 10, "loss": 1.0 / epoch})
        runs.append_metric(run_dir, {"kind": "epoch", "epoch": epoch, "training_accuracy": 0.5 + epoch / 10,
                                     "valid_accuracy": 0.6 + epoch / 10, "training_loss": 1.0 / epoch,
                                     "valid_loss": 1.1 / epoch})
    storage.write_json_atomic(runs.eval_path(run_dir), {
        "split": "test", "label_names": labels,
        "student": {**metrics, "agreement": 0.8, "spec": "truncate:1"},
        "teacher": {**metrics, "accuracy": 0.8, "spec": str(env.teacher)}})
    runs.set_status(run_dir, "done")
    return run_dir


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: Path(p).stem)
def test_page_renders_offline_with_an_empty_store(app_env, page):
    at = open_page(page)
    assert not at.exception, at.exception
    assert at.title[0].value == TITLES[page]
    assert not at.error


def test_sidebar_says_offline_mode(app_env):
    # AppTest keeps the router's sidebar only on the first page it runs (switch_page drops it), so check here.
    at = open_page("app_pages/train.py")
    assert "Offline mode" in texts(at.sidebar.markdown)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: Path(p).stem)
def test_page_renders_with_a_finished_run(app_env, page):
    make_finished_run(app_env)
    at = open_page(page)
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)


def test_sidebar_lists_runs_folder_local_data_and_bundled_model(app_env):
    at = open_page("app_pages/train.py")
    sidebar = texts(at.sidebar.markdown) + texts(at.sidebar.code)
    assert str(app_env.runs) in sidebar
    assert "tiny" in sidebar and "bundled:minilm-l6" in sidebar


def test_offline_train_page_defaults_to_the_offline_quick_start(app_env):
    at = open_page("app_pages/train.py")
    assert at.selectbox(key="t_preset").value == "Offline quick start"
    assert at.radio(key="t_mode").value == "pipeline"
    assert any("Estimated time" in i.value for i in at.info)


def test_the_padding_field_starts_at_auto_and_says_what_auto_does(app_env):
    field = open_page("app_pages/train.py").number_input(key="t_pad_multiple")
    assert field.value == 0 and field.min == 0  # 0 = auto (None in the config): 16 under bf16, else 1
    assert "auto: 16 when the run trains in bf16" in field.help


def test_selecting_the_seed_recipe_offline_warns_that_it_needs_the_hub(app_env):
    at = open_page("app_pages/train.py")
    at.selectbox(key="t_preset").set_value("Seed recipe").run()
    assert any("Hugging Face Hub" in w.value for w in at.warning)



@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_each_preset_sets_the_form_to_its_recipe(app_env, name):
    # The Train page holds no recipes of its own: it maps distill_core.presets onto its widgets.
    preset = presets.PRESETS[name]
    at = open_page("app_pages/train.py")
    at.selectbox(key="t_preset").set_value(name).run()
    assert not at.exception, at.exception
    for field, value in {**preset.train, **preset.data}.items():
        key = TRAIN_WIDGETS.get(field, f"t_{field}")
        # None is 0 in an optional count; in attention dropout it is an empty field (the model's own)
        unset = None if field == "attention_dropout" else 0
        assert at.session_state[key] == (unset if value is None else value), field
    if preset.kind == "method":  # loss settings only: the first visit's mode stays
        assert at.radio(key="t_mode").value == "pipeline"
    else:
        assert at.radio(key="t_mode").value == ("pipeline" if preset.teacher_stage else "distill")
    if preset.data_source is None:  # local data: the embedded AG News sample, found with no configuration
        assert at.radio(key="t_source_kind").value == "Local dataset"
        assert at.selectbox(key="t_local").value == str((EMBEDDED_DATA_DIR / "ag_news_sample").resolve())
    else:
        assert at.text_input(key="t_hub_id").value == preset.data_source


def test_a_started_pipeline_is_followed_from_its_teacher_stage_and_can_be_stopped(app_env, monkeypatch):
    started: list[str] = []
    monkeypatch.setattr(jobs, "start_job", lambda run_dir, **_: started.append(Path(run_dir).name))
    at = open_page("app_pages/train.py")
    assert at.radio(key="t_mode").value == "pipeline"  # the offline quick start
    at.text_input(key="t_name").set_value("pipe").run()
    next(b for b in at.button if b.label == "Start").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert started == ["pipe-teacher"]
    assert at.query_params["run"] == "pipe-teacher"  # Started.follow: the stage that runs first
    at.selectbox(key="run").set_value("pipe").run()
    assert any("Waits for its teacher run **pipe-teacher**" in i.value for i in at.info), texts(at.info)
    at.selectbox(key="run").set_value("pipe-teacher").run()
    at.button(key="live_stop").click().run()
    assert runs.read_status(app_env.runs / "pipe-teacher")["state"] == "cancelled"
    assert runs.read_status(app_env.runs / "pipe")["state"] == "cancelled"  # nothing left to distil from

@pytest.mark.parametrize("key, field", [("t_alpha", "alpha"), ("t_temperature", "temperature"),
                                        ("t_epochs", "epochs"), ("t_lr", "lr"), ("t_batch", "batch_size")])
def test_number_widgets_carry_the_configs_bounds(app_env, key, field):
    """A widget cannot hold a value its config field refuses: its min and max are the field's bounds."""
    from distill_core.config import bounds_of

    at = open_page("app_pages/train.py")
    widget = at.number_input(key=key)
    low, high = bounds_of(field)
    assert (widget.proto.min, widget.proto.max) == pytest.approx((low, high))


def test_settings_the_widgets_allow_but_the_config_refuses_are_listed_at_once(app_env):
    at = open_page("app_pages/train.py")
    at.number_input(key="t_train_samples").set_value(1)
    at.number_input(key="t_eval_samples").set_value(1).run()
    at.button[0].click().run()
    errors = " ".join(e.value for e in at.error)
    assert "2 settings to fix before Start" in errors, texts(at.error)
    assert "Train samples" in errors and "Eval samples" in errors, errors
    assert errors.count("\n- ") >= 2, errors  # every problem in one list, named by the form's labels
    assert runs.list_runs(app_env.runs) == []


def test_hub_dataset_while_offline_shows_an_error_and_creates_no_run(app_env):
    at = open_page("app_pages/train.py")
    at.radio(key="t_source_kind").set_value("Hugging Face Hub").run()
    at.button[0].click().run()
    assert any("cannot reach the Hugging Face Hub" in e.value for e in at.error), texts(at.error)
    assert runs.list_runs(app_env.runs) == []


def test_truncating_more_layers_than_the_teacher_has_is_refused(app_env):
    at = open_page("app_pages/train.py")
    at.radio(key="t_mode").set_value("distill").run()
    assert at.selectbox(key="t_teacher").value == str(app_env.teacher)
    at.number_input(key="t_trunc_n").set_value(5).run()  # the tiny teacher has 2 layers
    at.button[0].click().run()
    assert any("but the teacher has 2" in e.value for e in at.error), texts(at.error)
    assert runs.list_runs(app_env.runs) == []


def test_bad_run_name_is_refused(app_env):
    at = open_page("app_pages/train.py")
    at.radio(key="t_mode").set_value("distill").run()
    at.number_input(key="t_trunc_n").set_value(1).run()
    at.text_input(key="t_name").set_value("../escape").run()
    at.button[0].click().run()
    assert any("invalid run name" in e.value for e in at.error), texts(at.error)
    assert runs.list_runs(app_env.runs) == []


def test_live_panel_shows_the_run_named_in_the_address(app_env):
    run_dir = runs.create_run(app_env.runs, "failing-run", {"mode": "distill", "epochs": 2, "data": {}})
    runs.append_metric(run_dir, {"kind": "step", "step": 4, "total_steps": 10, "loss": 0.9, "samples_per_s": 50.0,
                                 "time": time.time()})
    runs.set_status(run_dir, "failed", error="could not load model 'nope'")
    at = open_page("app_pages/train.py", query={"run": "failing-run"})
    assert not at.exception, at.exception
    assert at.selectbox(key="run").value == "failing-run"
    assert any("could not load model 'nope'" in e.value for e in at.error)
    assert any("step 4 / 10" in str(p.proto.text) for p in at.get("progress"))


def test_compare_lists_the_run_and_its_teacher(app_env):
    make_finished_run(app_env)
    at = open_page("app_pages/compare.py")
    table = at.dataframe[0].value
    assert list(table["model"]) == ["run tiny-distill", "teacher of tiny-distill"]
    assert table["test_accuracy"].tolist() == ["75.0%", "80.0%"]  # shown in percent, as text (never "None")


def test_playground_predicts_with_teacher_and_student(app_env):
    make_finished_run(app_env)
    at = open_page("app_pages/playground.py")
    assert not at.exception, at.exception
    assert len(at.multiselect(key="p_models").value) == 2
    predictions = [m for m in at.metric if m.label == "Prediction"]
    assert len(predictions) == 2
    assert all(p.value in ("World", "Sports", "Business", "Sci/Tech") for p in predictions)


def test_compare_computes_and_caches_disagreements(app_env):
    run_dir = make_finished_run(app_env)
    at = open_page("app_pages/compare.py")
    at.button[0].click().run()
    assert not at.exception, at.exception
    cached = json.loads((run_dir / "predictions.json").read_text(encoding="utf-8"))
    assert len(cached["text"]) == len(cached["teacher_pred"]) == 80
    # The student is a copy of the teacher: they never disagree.
    assert any("0 of 80" in c.value for c in at.caption)


def test_benchmark_measures_the_models_and_keeps_the_run_rows(app_env):
    run_dir = make_finished_run(app_env)
    at = open_page("app_pages/benchmark.py")
    at.multiselect(key="b_batch").set_value([1])
    at.multiselect(key="b_seq").set_value([16])
    at.number_input(key="b_repeats").set_value(10)
    at.number_input(key="b_warmup").set_value(0).run()
    next(b for b in at.button if b.label == "Run benchmark").click().run()
    assert not at.exception and not at.error, at.exception or texts(at.error)
    # Measured in its own process (distill_core.bench_jobs), never in the page's: wait for it, then look again.
    deadline = time.monotonic() + TIMEOUT_S
    while (job := bench_jobs.latest(app_env.runs)) and job["state"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(1.0)
    at.run()
    assert not at.exception and not at.error, at.exception or texts(at.error)
    assert len(at.dataframe[0].value) == 1  # the paired speed-up of the student over the teacher
    assert len(at.dataframe[-1].value) == 2  # the table: teacher and student, one cell each
    assert len(json.loads((run_dir / "bench.json").read_text(encoding="utf-8"))) == 1

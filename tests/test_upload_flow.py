"""Train's form through Streamlit's AppTest: an upload judged on arrival (every problem at once, columns picked
from the file, nothing kept when refused), settings checked all at once in the form's words, widget bounds taken
from the config, warnings for outlandish settings, and a run's settings cloned into the form."""
from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from distill_core import pipeline, runs
from distill_core.app import datasets
from distill_core.config import DataConfig, TrainConfig, bounds_of
from distill_core.data import load_data

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"
TIMEOUT_S = 180  # the first load imports the engine; generous for a busy 2-core machine


@pytest.fixture
def store(monkeypatch, tmp_path, tiny_data_dir, tiny_teacher_dir):
    """A private runs folder, the tiny dataset as the only local data (data/tiny), an empty uploads folder."""
    shutil.copytree(tiny_data_dir, tmp_path / "data" / "tiny")
    monkeypatch.setenv("KD_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("KD_EXTRA_MODELS", str(tiny_teacher_dir))
    return tmp_path


def open_train(state: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.run()
    if state:
        for key, value in state.items():
            at.session_state[key] = value
        at.run()
    assert not at.exception, at.exception
    return at


def upload(at: AppTest, name: str, content: bytes) -> AppTest:
    at.radio(key="t_source_kind").set_value("Upload a file").run()
    at.file_uploader(key="t_upload").upload(name, content).run()
    assert not at.exception, at.exception
    return at


def csv_bytes(header: str, rows: list[str]) -> bytes:
    return (header + "\n" + "\n".join(rows) + "\n").encode()


def balanced(n: int = 12, classes: int = 2) -> list[tuple[str, int]]:
    return [(f"example sentence number {i}", i % classes) for i in range(n)]


def errors(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)


def press_start(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Start").click().run()
    assert not at.exception, at.exception
    return at


def kept(store: Path) -> list[str]:
    folder = store / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------- uploads
def test_a_file_without_a_label_column_is_refused_on_upload_and_not_kept(store):
    at = upload(open_train(), "reviews.csv", csv_bytes("text,stars_text", [f"{t},x" for t, _ in balanced()]))
    shown = errors(at)
    assert "reviews.csv cannot be used" in shown and "Label column" in shown
    assert "'text', 'stars_text'" in shown  # the file's own columns, to pick from
    assert at.multiselect(key="t_upload_text").value == ["text"]
    assert at.selectbox(key="t_upload_label").options == ["text", "stars_text"]
    press_start(at)
    assert runs.list_runs(store / "runs") == [] and kept(store) == []


def test_a_binary_file_renamed_csv_is_refused_on_upload(store):
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("sheet.xml", "<x>" * 500)
    at = upload(open_train(), "sheet.csv", payload.getvalue())
    assert "sheet.csv is not a text file but binary data" in errors(at)
    assert kept(store) == []


def test_every_problem_of_a_file_is_listed_at_once_naming_the_users_file(store):
    rows = [",0", ",0", ",0"] + [f"text {i},0" for i in range(9)]  # three empty texts, and one class only
    at = upload(open_train(), "My Data.csv", csv_bytes("text,label", rows))
    shown = errors(at)
    assert "My Data.csv cannot be used yet** (2 problems" in shown
    assert "3 row(s) of My Data.csv have empty text in Text columns" in shown
    assert "Label column 'label' has only one class ('0')" in shown
    assert "My-Data-" not in shown  # never the name it would be stored under
    assert kept(store) == []


def test_a_class_too_small_to_split_is_named(store):
    rows = [f"{t},{y}" for t, y in balanced()] + ["rare one,2", "rare two,2"]
    at = upload(open_train(), "rare.csv", csv_bytes("text,label", rows))
    assert ("classes with fewer than 5 rows cannot be split into train/validation/test (too few rows): '2' "
            "(2 rows)") in errors(at)
    assert kept(store) == []


def test_several_text_columns_are_joined_and_the_accepted_file_is_kept_and_listed(store):
    rows = [f"Title {i},Body of story {i},{i % 2}" for i in range(12)]
    at = upload(open_train(), "news.csv", csv_bytes("title,description,topic", rows))
    assert not at.error, errors(at)
    assert at.multiselect(key="t_upload_text").value == ["title", "description"]  # guessed: title + description
    assert at.selectbox(key="t_upload_label").value == "topic"
    assert at.session_state["t_text_col"] == "title+description"
    assert at.session_state["t_label_col"] == "topic"
    assert any("news.csv is accepted: 12 rows, 2 classes" in s.value for s in at.success)
    [stored] = kept(store)
    assert stored.startswith("news-") and stored.endswith(".csv")
    loaded = load_data(DataConfig(source=str(store / "uploads" / stored), text_column="title+description",
                                  label_column="topic"), seed=0)  # what Start would load: the joined text
    assert loaded.splits["train"][0]["text"].startswith("Title ") and " Body of story " in \
        loaded.splits["train"][0]["text"]
    at.radio(key="t_source_kind").set_value("Local dataset").run()
    local = at.selectbox(key="t_local")
    assert local.value == str(store / "uploads" / stored)  # listed, and chosen
    assert f"news.csv (uploaded, {stored[-12:-4]})" in local.options


def test_the_label_column_is_picked_from_the_files_columns(store):
    rows = [f"a sentence {i},{i % 3},{i}" for i in range(15)]
    at = upload(open_train(), "plain.csv", csv_bytes("sentence,polarity,row_id", rows))
    assert at.selectbox(key="t_upload_label").value is None  # no usual label name: the user picks
    assert "Label column: plain.csv has no column named like a label" in errors(at)
    at.selectbox(key="t_upload_label").set_value("polarity").run()
    assert not at.error, errors(at)
    assert at.session_state["t_label_col"] == "polarity" and at.session_state["t_text_col"] == "sentence"
    assert len(kept(store)) == 1
    at.multiselect(key="t_upload_text").set_value(["sentence", "polarity"]).run()  # the class inside the text
    assert "is also one of the Text columns" in errors(at)


# ---------------------------------------------------------------- settings
def test_widgets_carry_the_configs_bounds(store):
    at = open_train()
    for key, field in [("t_epochs", "epochs"), ("t_lr", "lr"), ("t_batch", "batch_size"),
                       ("t_temperature", "temperature"), ("t_alpha", "alpha")]:
        widget = at.number_input(key=key)
        assert (widget.min, widget.max) == bounds_of(field), field
    assert at.number_input(key="t_train_samples").min == 0  # 0 = all rows
    assert (bounds_of("epochs"), bounds_of("lr"), bounds_of("batch_size"), bounds_of("temperature")) == \
        ((1, 100), (1e-7, 1.0), (1, 1024), (0.1, 50.0))


def test_bad_settings_are_listed_all_at_once_in_the_forms_words_and_start_is_held(store):
    at = open_train()
    at.number_input(key="t_train_samples").set_value(1)
    at.number_input(key="t_eval_samples").set_value(1).run()
    shown = errors(at)
    assert "2 settings to fix before Start" in shown
    assert "Train samples must be between 2 and 100,000,000 or unset (got 1)" in shown
    assert "Eval samples must be between 2 and 100,000,000 or unset (got 1)" in shown
    assert "train_samples" not in shown  # the form's label, not the config's field name
    press_start(at)
    assert "2 settings to fix before Start" in errors(at)
    assert runs.list_runs(store / "runs") == []


def test_outlandish_settings_are_warned_about_before_start(store):
    at = open_train()
    at.number_input(key="t_lr").set_value(0.5)
    at.number_input(key="t_epochs").set_value(50).run()
    warning = "\n".join(w.value for w in at.warning)
    assert "Learning rate 0.5 is far above" in warning and "Epochs 50 is many passes" in warning
    assert not at.error  # a warning, not an error: Start would go


# ---------------------------------------------------------------- clone
def make_run(store: Path, name: str, config: TrainConfig, **status) -> Path:
    """A finished run's folder as the store keeps it (finished: the page's scheduler pass must not start it)."""
    run_dir = runs.create_run(store / "runs", name, pipeline.run_record(config), **status)
    runs.set_status(run_dir, "done")
    return run_dir


def test_clone_fills_the_form_from_a_distillation_run(store, tiny_teacher_dir):
    tiny = store / "data" / "tiny"
    config = TrainConfig(mode="distill", data=DataConfig(source=str(tiny), max_length=64, train_samples=100),
                         student="truncate:1", teacher=str(tiny_teacher_dir), temperature=4.0, alpha=0.25, epochs=3,
                         lr=1e-4, batch_size=16, patience=None, kd_loss="mse")
    make_run(store, "older-run", config)
    at = open_train({"t_clone": "older-run"})
    assert any(i.value == "Settings copied from run older-run." for i in at.info), [i.value for i in at.info]
    assert at.selectbox(key="t_preset").value == "Custom"
    assert at.radio(key="t_mode").value == "distill"
    assert at.selectbox(key="t_teacher").value == str(tiny_teacher_dir)
    assert at.selectbox(key="t_local").value == str(tiny)
    assert at.number_input(key="t_trunc_n").value == 1
    widgets = {"t_temperature": 4.0, "t_alpha": 0.25, "t_epochs": 3, "t_lr": 1e-4, "t_batch": 16, "t_patience": 0,
               "t_max_length": 64, "t_train_samples": 100}
    assert {key: at.number_input(key=key).value for key in widgets} == widgets
    assert at.selectbox(key="t_kd_loss").value == "mse"
    assert at.text_input(key="t_name").value != "older-run"  # a fresh name: that one is taken
    assert "t_clone" not in at.session_state


def test_clone_of_a_pipeline_restores_its_teacher_stage(store):
    data = DataConfig(source=str(store / "data" / "tiny"))
    teacher = pipeline.teacher_stage_config(
        TrainConfig(mode="distill", data=data, student="truncate:1", teacher="bundled:minilm-l6"),
        "bundled:minilm-l6", epochs=4, lr=3e-4)
    teacher_name, distill_name = pipeline.stage_names("pipe")
    make_run(store, teacher_name, teacher)
    distill = TrainConfig(mode="distill", data=data, student="truncate:2",
                          teacher=str(store / "runs" / teacher_name), epochs=2)
    make_run(store, distill_name, distill, depends_on=teacher_name)
    at = open_train({"t_clone": distill_name})
    assert at.radio(key="t_mode").value == "pipeline"
    assert at.selectbox(key="t_base").value == "bundled:minilm-l6"
    assert (at.number_input(key="t_teacher_epochs").value, at.number_input(key="t_teacher_lr").value) == (4, 3e-4)
    assert (at.number_input(key="t_trunc_n").value, at.number_input(key="t_epochs").value) == (2, 2)


def test_clone_of_a_run_that_no_longer_exists_says_so(store):
    at = open_train({"t_clone": "gone-run"})
    assert "Cannot copy the settings of run 'gone-run'" in errors(at)
    assert at.selectbox(key="t_preset").value != "Custom"


def test_an_upload_is_listed_under_its_own_name(store):
    path = datasets.save_upload("reviews.csv", b"text,label\nhi,0\n", store / "uploads")
    assert datasets.upload_label(path) == f"reviews.csv (uploaded, {path.stem[-8:]})"

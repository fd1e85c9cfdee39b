"""Train's sections for the distillation methods: the intermediate-layer terms, transfer text and training
precision, the method presets that fill them, and bad settings that must show an error and start nothing."""
from __future__ import annotations

import pytest
from test_app_pages import open_page, texts

from distill_core import presets, runs


@pytest.fixture
def train_env(monkeypatch, tmp_path, tiny_data_dir, tiny_teacher_dir):
    monkeypatch.setenv("KD_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("KD_EXTRA_MODELS", str(tiny_teacher_dir))
    return tmp_path / "runs"


def start(at):
    next(b for b in at.button if b.label == "Start").click().run()
    return at


def test_the_new_settings_have_widgets_with_the_configs_help(train_env):
    from distill_core.config import help_for

    at = open_page("app_pages/train.py")
    assert not at.exception, at.exception
    for key, field in (("t_hidden_weight", "hidden_weight"), ("t_attention_weight", "attention_weight"),
                       ("t_cosine_weight", "cosine_weight")):
        assert at.number_input(key=key).value == 0.0
        assert at.number_input(key=key).help == help_for(field)
    assert at.text_input(key="t_layer_map").value == ""
    assert at.selectbox(key="t_mixed_precision").value == "auto"
    assert at.number_input(key="t_attention_dropout").value == 0.0  # fused attention, no stored matrix
    assert at.radio(key="t_transfer_kind").value == "none"
    assert "teacher run on every training batch" in texts(at.caption)
    assert any(e.label.startswith("Intermediate layers") for e in at.expander)


def test_a_method_preset_fills_the_layer_terms_and_keeps_data_and_models(train_env):
    at = open_page("app_pages/train.py")
    kept = {key: at.session_state[key] for key in ("t_mode", "t_trunc_n", "t_local", "t_epochs", "t_lr")}
    at.selectbox(key="t_preset").set_value("TinyBERT-style (layers)").run()
    assert not at.exception, at.exception
    tinybert = presets.PRESETS["TinyBERT-style (layers)"].train
    assert at.number_input(key="t_hidden_weight").value == tinybert["hidden_weight"] == 1.0
    assert at.number_input(key="t_attention_weight").value == tinybert["attention_weight"] == 1.0
    assert at.number_input(key="t_temperature").value == tinybert["temperature"]
    assert {key: at.session_state[key] for key in kept} == kept
    assert "arXiv:1909.10351" in texts(at.caption)  # the preset names its source
    at.selectbox(key="t_preset").set_value("Offline quick start").run()  # a recipe switches the layer terms off
    assert at.number_input(key="t_hidden_weight").value == 0.0
    assert at.number_input(key="t_attention_weight").value == 0.0


def test_the_seed_recipe_keeps_berts_attention_dropout_and_the_next_recipe_does_not_inherit_it(train_env):
    at = open_page("app_pages/train.py")
    at.selectbox(key="t_preset").set_value("Seed recipe").run()
    assert not at.exception, at.exception
    assert at.number_input(key="t_attention_dropout").value is None  # empty: the model's own, as the article
    at.selectbox(key="t_preset").set_value("Offline quick start").run()
    assert at.number_input(key="t_attention_dropout").value == 0.0


def test_a_bad_layer_map_is_listed_in_the_forms_words_and_starts_nothing(train_env):
    at = open_page("app_pages/train.py")
    at.text_input(key="t_layer_map").set_value("2,x").run()
    start(at)
    errors = texts(at.error)
    assert "Layer map must list teacher layers" in errors, errors
    assert runs.list_runs(train_env) == []


def test_transfer_rest_without_a_subsample_says_so_at_the_field_and_starts_nothing(train_env):
    at = open_page("app_pages/train.py")
    at.number_input(key="t_train_samples").set_value(0)
    at.radio(key="t_transfer_kind").set_value("rest").run()
    field_error = "Transfer text 'rest' is the training rows that the train subsample leaves out"
    assert field_error in texts(at.error) and "Set Train samples under More settings" in texts(at.error)
    start(at)
    assert "setting to fix before Start" in texts(at.error) and field_error in texts(at.error)
    assert runs.list_runs(train_env) == []
    at.number_input(key="t_train_samples").set_value(200).run()  # a subsample leaves rows over: no error
    assert field_error not in texts(at.error)


def test_frozen_embeddings_of_a_fresh_student_are_refused_in_the_forms_words(train_env):
    at = open_page("app_pages/train.py")
    at.selectbox(key="t_student_kind").set_value("Fresh small BERT").run()
    at.checkbox(key="t_freeze_embeddings").check().run()
    start(at)
    errors = texts(at.error)
    assert "Freeze word embeddings keeps a fresh config: student's random embeddings" in errors, errors
    assert runs.list_runs(train_env) == []
    at.selectbox(key="t_student_kind").set_value("Truncate the teacher").run()  # pretrained embeddings: allowed
    assert "random embeddings" not in texts(at.error)


@pytest.mark.parametrize("name", list(presets.METHOD_PRESETS))
def test_a_method_preset_on_the_cli_sets_the_loss_and_keeps_the_models_given(name):
    from distill_core.cli_args import build_parser, config_from_args

    method = presets.METHOD_PRESETS[name]
    models = ["--data", "d", "--student", "truncate:2", "--out", "runs/x"]
    distill = config_from_args(build_parser().parse_args(["distill", "--preset", name, "--teacher", "t", *models]))
    pipeline = config_from_args(build_parser().parse_args(["pipeline", "--preset", name, "--base", "b", *models,
                                                           "--alpha", "0.6"]))
    for config in (distill, pipeline):
        assert config.student == "truncate:2" and config.data.source == "d"
        assert {field: getattr(config, field) for field in method.train if field != "alpha" or config is distill} \
            == {field: value for field, value in method.train.items() if field != "alpha" or config is distill}
        assert config.extra == {"preset": name}
        config.validate()
    assert (distill.teacher, pipeline.teacher, pipeline.alpha) == ("t", "b", 0.6)  # a flag given wins
    estimate = build_parser().parse_args(["estimate", "--preset", name, "--teacher", "t", *models[:4]])
    assert estimate.preset == name

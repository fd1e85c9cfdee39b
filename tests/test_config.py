"""Config: seed-recipe defaults, a lossless JSON round trip, unknown keys refused, and one clear error per bad value."""
from __future__ import annotations

import dataclasses
import json

import pytest

from distill_core.config import (
    SETTINGS_BEFORE_THEY_EXISTED,
    DataConfig,
    TrainConfig,
    config_to_dict,
    load_train_config,
    train_config_from_dict,
)
from distill_core.errors import UserError


def make_config(**overrides) -> TrainConfig:
    data_overrides = overrides.pop("data", {})
    base = dict(mode="distill", data=DataConfig(source="ag_news", **data_overrides), student="truncate:1",
                teacher="./teacher")
    base.update(overrides)
    return TrainConfig(**base)


def test_defaults_equal_the_seed_recipe():
    config = make_config()
    assert (config.temperature, config.alpha) == (2.0, 0.5)
    assert config.lr == 2e-5
    assert config.batch_size == 64
    assert config.epochs == 5
    assert config.dropout == 0.3
    assert config.kd_loss == "kl"
    assert config.data.max_length == 150
    assert config.data.valid_fraction == 0.2
    assert (config.data.text_column, config.data.label_column) == ("text", "label")
    config.validate()  # the defaults themselves are valid


def test_configs_are_frozen():
    config = make_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.data.source = "other"  # type: ignore[misc]


def test_json_round_trip_is_lossless():
    config = make_config(temperature=4.0, alpha=0.25, kd_loss="mse", epochs=3, lr=1e-4, batch_size=16,
                         dropout=None, patience=None, max_steps=7, extra={"preset": "seed"},
                         data={"text_column": "title+description", "train_samples": 100, "eval_samples": 50,
                               "max_length": 64, "valid_fraction": 0.1})
    text = json.dumps(config_to_dict(config))
    assert train_config_from_dict(json.loads(text)) == config


def test_round_trip_ignores_saved_provenance():
    raw = config_to_dict(make_config())
    raw["provenance"] = {"torch": "2.x", "label_names": ["a", "b"]}
    assert train_config_from_dict(raw) == make_config()


def test_a_run_saved_before_a_setting_existed_loads_with_what_it_trained_with():
    """An older run's config.json lacks the settings added since: it trained with the model's own attention dropout
    and batches padded to their longest row, so that is what a resume or a copy of it gets; a hand-written config
    (no provenance) gets today's defaults."""
    raw = config_to_dict(make_config())
    for name in SETTINGS_BEFORE_THEY_EXISTED:
        del raw[name]
    saved_by_a_run = train_config_from_dict({**raw, "provenance": {"kd_studio": "0.1"}})
    assert (saved_by_a_run.attention_dropout, saved_by_a_run.pad_to_multiple_of) == (None, 1)
    assert train_config_from_dict(raw) == make_config()


def test_load_train_config_reads_and_validates_a_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_to_dict(make_config(epochs=2))), encoding="utf-8")
    assert load_train_config(path).epochs == 2
    path.write_text(json.dumps(config_to_dict(make_config(epochs=0))), encoding="utf-8")
    with pytest.raises(UserError, match="epochs=0"):
        load_train_config(path)


@pytest.mark.parametrize("content, match", [
    (None, "does not exist"),
    ("{not json", "not valid JSON"),
], ids=["missing-file", "broken-json"])
def test_load_train_config_bad_files(tmp_path, content, match):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=match):
        load_train_config(path)


@pytest.mark.parametrize("where", ["top", "data"], ids=["unknown-top-level-key", "unknown-data-key"])
def test_unknown_keys_are_rejected(where):
    raw = config_to_dict(make_config())
    if where == "top":
        raw["learning_rate"] = 0.1  # a typo of "lr" must not be silently ignored
    else:
        raw["data"]["max_len"] = 64
    with pytest.raises(UserError, match=r"unknown .*(learning_rate|max_len)"):
        train_config_from_dict(raw)


@pytest.mark.parametrize("raw, match", [
    ({"mode": "distill", "student": "x"}, "no 'data' section"),
    ({"mode": "distill", "data": {"source": "x"}}, "incomplete"),
], ids=["no-data-section", "no-student"])
def test_incomplete_configs_are_rejected(raw, match):
    with pytest.raises(UserError, match=match):
        train_config_from_dict(raw)


BAD_VALUES = [
    (dict(mode="pretrain"), "mode='pretrain'"),
    (dict(student=" "), "student"),
    (dict(teacher=None), "needs a teacher"),
    (dict(mode="finetune", teacher=None, student="truncate:2"), "built from a teacher"),
    (dict(temperature=0.0), "temperature=0.0"),
    (dict(temperature=-1.0), "temperature=-1.0"),
    (dict(temperature=float("nan")), "temperature=nan"),
    (dict(temperature=float("inf")), "temperature=inf"),
    (dict(alpha=1.5), "alpha=1.5"),
    (dict(alpha=-0.1), "alpha=-0.1"),
    (dict(kd_loss="cosine"), "kd_loss='cosine'"),
    (dict(optimizer="sgd"), "optimizer='sgd'"),
    (dict(epochs=0), "epochs=0"),
    (dict(lr=0.0), "lr=0.0"),
    (dict(lr=-1e-5), "lr=-1e-05"),
    (dict(lr=float("nan")), "lr=nan"),
    (dict(batch_size=0), "batch_size=0"),
    (dict(eval_batch_size=0), "eval_batch_size=0"),
    (dict(pad_to_multiple_of=0), "pad_to_multiple_of=0"),
    (dict(warmup_ratio=1.0), "warmup_ratio=1.0"),
    (dict(weight_decay=-0.1), "weight_decay=-0.1"),
    (dict(weight_decay=float("nan")), "weight_decay=nan"),
    (dict(weight_decay=float("inf")), "weight_decay=inf"),
    (dict(dropout=1.0), "dropout=1.0"),
    (dict(patience=0), "patience=0"),
    (dict(max_steps=0), "max_steps=0"),
    (dict(log_every_steps=0), "log_every_steps=0"),
    (dict(data={"valid_fraction": 0.0}), "valid_fraction=0.0"),
    (dict(data={"valid_fraction": 0.95}), "valid_fraction=0.95"),
    (dict(data={"test_fraction": 1.0}), "test_fraction=1.0"),
    (dict(data={"train_samples": 1}), "train_samples=1"),
    (dict(data={"eval_samples": 0}), "eval_samples=0"),
    (dict(data={"max_length": 4}), "max_length=4"),
    (dict(data={"text_column": ""}), "column"),
    (dict(data={"label_column": " "}), "column"),
]
BAD_IDS = ["mode", "empty-student", "distill-without-teacher", "finetune-truncate-without-teacher", "T-zero",
           "T-negative", "T-nan", "T-inf", "alpha-above-1", "alpha-negative", "kd-loss", "optimizer", "epochs-0",
           "lr-zero", "lr-negative", "lr-nan", "batch-0", "eval-batch-0", "pad-multiple-0", "warmup-1",
           "weight-decay-negative", "weight-decay-nan", "weight-decay-inf",
           "dropout-1", "patience-0", "max-steps-0", "log-every-0", "valid-fraction-0", "valid-fraction-0.95",
           "test-fraction-1", "train-samples-1", "eval-samples-0", "max-length-4", "empty-text-column",
           "blank-label-column"]


@pytest.mark.parametrize("overrides, match", BAD_VALUES, ids=BAD_IDS)
def test_validate_names_the_bad_value(overrides, match):
    config = make_config(**overrides)
    with pytest.raises(UserError, match=match) as info:
        config.validate()
    assert "\n" not in str(info.value)  # the CLI prints it as one line


@pytest.mark.parametrize("key, value, match", [
    ("epochs", "5", "epochs='5' must be an integer"),
    ("epochs", 2.5, "epochs=2.5 must be an integer"),
    ("epochs", True, "epochs=True must be an integer"),
    ("lr", None, "lr=None must be a number"),
    ("lr", "2e-5", "lr='2e-5' must be a number"),
    ("dropout", "0.3", "dropout='0.3' must be a number or null"),
    ("patience", 1.5, "patience=1.5 must be an integer or null"),
    ("teacher_cache", "yes", "teacher_cache='yes' must be true or false"),
    ("student", 3, "student=3 must be a string"),
    ("extra", [], "extra=\\[\\] must be an object"),
    ("data.max_length", "150", "max_length='150' must be an integer"),
    ("data.source", None, "source=None must be a string"),
    ("data.valid_fraction", "0.2", "valid_fraction='0.2' must be a number"),
], ids=["epochs-string", "epochs-float", "epochs-bool", "lr-null", "lr-string", "dropout-string", "patience-float",
        "teacher-cache-string", "student-number", "extra-list", "max-length-string", "source-null",
        "valid-fraction-string"])
def test_json_values_of_the_wrong_type_are_rejected(key, value, match):
    """A hand-written config.json (--config, the worker) names the field instead of failing with a TypeError."""
    raw = config_to_dict(make_config())
    if key.startswith("data."):
        raw["data"][key.split(".", 1)[1]] = value
    else:
        raw[key] = value
    with pytest.raises(UserError, match=match):
        train_config_from_dict(raw).validate()


@pytest.mark.parametrize("raw", [[1, 2], "config", None, {"mode": "distill", "data": "ag_news", "student": "x"}],
                         ids=["list", "string", "null", "data-is-a-string"])
def test_config_that_is_not_an_object_is_rejected(raw):
    with pytest.raises(UserError):
        train_config_from_dict(raw).validate()


def test_empty_data_source_is_rejected():
    with pytest.raises(UserError, match="data source is empty"):
        TrainConfig(mode="finetune", data=DataConfig(source="  "), student="./m").validate()


@pytest.mark.parametrize("overrides", [
    dict(alpha=0.0), dict(alpha=1.0), dict(temperature=0.5), dict(dropout=None), dict(dropout=0.0),
    dict(patience=None), dict(optimizer="adam"), dict(kd_loss="mse"), dict(data={"max_length": 512}),
], ids=["alpha-0", "alpha-1", "T-0.5", "dropout-none", "dropout-0", "no-early-stop", "adam", "mse",
        "max-length-512"])
def test_boundary_values_are_accepted(overrides):
    make_config(**overrides).validate()


# ---------------------------------------------------------------- help text: one source per setting
def test_every_field_carries_one_line_of_help():
    from distill_core.config import FIELD_HELP, help_for

    data_names = {f.name for f in dataclasses.fields(DataConfig)}
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert not data_names & train_names  # FIELD_HELP is one flat namespace over both dataclasses
    assert set(FIELD_HELP) == data_names | train_names
    for name, text in FIELD_HELP.items():
        assert text.strip() and "\n" not in text, name
        assert help_for(name) == text
    # The keys the Train page looks up are there.
    assert {"source", "text_column", "teacher_cache", "max_steps", "kd_loss"} <= set(FIELD_HELP)


def test_help_lives_in_the_field_metadata():
    from distill_core.config import FIELD_HELP, config_field

    assert config_field("lr").metadata["help"] == FIELD_HELP["lr"]
    assert config_field("source").metadata["help"] == FIELD_HELP["source"]
    assert config_field("max_length").default == DataConfig(source="x").max_length


def test_help_for_an_unknown_name_says_so():
    from distill_core.config import help_for

    with pytest.raises(KeyError, match="learning_rate"):
        help_for("learning_rate")


# ---------------------------------------------------------------- every problem at once, bounds, form words
def test_validate_lists_every_problem_at_once_on_one_line():
    config = make_config(epochs=0, batch_size=0, data={"valid_fraction": 0.95, "text_column": ""})
    with pytest.raises(UserError) as info:
        config.validate()
    message = str(info.value)
    assert message.startswith("4 settings to fix: ") and "\n" not in message
    for part in ("epochs=0", "batch_size=0", "valid_fraction=0.95", "column names must not be empty"):
        assert part in message
    assert sorted(p.field for p in info.value.problems) == ["batch_size", "epochs", "text_column", "valid_fraction"]


def test_problems_are_named_as_the_face_names_them():
    from distill_core.config import settings_problems

    config = make_config(epochs=999, teacher=None)
    labels = {"epochs": "Epochs", "teacher": "Teacher"}
    assert settings_problems(config, labels) == [
        "Teacher is empty: a distillation learns from a fine-tuned teacher",
        "Epochs must be between 1 and 100 (got 999)"]
    flags = {"epochs": "--epochs"}
    assert "--epochs must be between 1 and 100 (got 999)" in settings_problems(config, flags)


def test_a_field_of_the_wrong_type_is_not_also_range_checked():
    raw = config_to_dict(make_config())
    raw["epochs"], raw["lr"] = "5", 0.0
    with pytest.raises(UserError) as info:
        train_config_from_dict(raw).validate()
    assert [p.text() for p in info.value.problems] == [
        "epochs='5' must be an integer", "lr=0.0 must be > 0: between 1e-07 and 1 (typical: 2e-5 .. 1e-4)"]


@pytest.mark.parametrize("name, inside, outside", [
    ("epochs", 100, 101), ("lr", 1.0, 1.5), ("batch_size", 1024, 1025), ("temperature", 50.0, 51.0),
    ("max_length", 8192, 8193), ("seed", 0, -1),
], ids=["epochs", "lr", "batch", "T", "max-length", "seed"])
def test_bounds_in_the_metadata_are_the_bounds_validation_uses(name, inside, outside):
    from distill_core.config import bounds_of

    low, high = bounds_of(name)
    assert inside in (low, high)
    data_field = name in {f.name for f in dataclasses.fields(DataConfig)}
    ok = make_config(data={name: inside}) if data_field else make_config(**{name: inside})
    ok.validate()
    bad = make_config(data={name: outside}) if data_field else make_config(**{name: outside})
    with pytest.raises(UserError, match=f"{name}="):
        bad.validate()


def test_every_number_setting_has_bounds_except_free_form_ones():
    from distill_core.config import bounds_of

    for spec in [*dataclasses.fields(DataConfig), *dataclasses.fields(TrainConfig)]:
        if str(spec.type).removesuffix(" | None") in ("int", "float"):
            assert bounds_of(spec.name) is not None, spec.name
            low, high = bounds_of(spec.name)
            if spec.default is not None:
                assert low <= spec.default <= high, spec.name  # the defaults sit inside their own bounds


def test_outlandish_settings_are_warnings_not_errors():
    from distill_core.preflight import setting_warnings

    config = make_config(lr=0.9, epochs=99, alpha=1.0)
    config.validate()  # valid
    warnings = setting_warnings(config, {"lr": "Learning rate"})
    assert any(w.startswith("Learning rate 0.9 is far above") for w in warnings)
    assert any(w.startswith("epochs 99 is many passes") for w in warnings)  # no label given: the field's name
    assert any("no weight on the teacher" in w for w in warnings)
    assert setting_warnings(make_config()) == []  # the seed recipe is not outlandish

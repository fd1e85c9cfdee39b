"""Train's settings table: which widget holds which config field, under which label, within which bounds, and how a
widget value becomes a config value (and back). No drawing of sections here: train_form.py draws them."""
from __future__ import annotations

from typing import Any

import streamlit as st

from distill_core import presets, specs
from distill_core.config import FIELD_HELP as HELP
from distill_core.config import MIXED_PRECISIONS, DataConfig, TrainConfig, bounds_of

SEED = TrainConfig(mode="distill", data=DataConfig(source=""), student="")  # TrainConfig defaults = the seed recipe
# The widget (session-state key) of each config field the form sets directly; presets map onto these too.
TRAIN_KEYS = {"temperature": "t_temperature", "alpha": "t_alpha", "kd_loss": "t_kd_loss", "epochs": "t_epochs",
              "lr": "t_lr", "batch_size": "t_batch", "optimizer": "t_optimizer", "dropout": "t_dropout",
              "attention_dropout": "t_attention_dropout",
              "warmup_ratio": "t_warmup", "weight_decay": "t_wd", "patience": "t_patience", "seed": "t_seed",
              "eval_batch_size": "t_eval_batch", "log_every_steps": "t_log_every", "max_steps": "t_max_steps",
              "teacher_cache": "t_teacher_cache", "hidden_weight": "t_hidden_weight",
              "attention_weight": "t_attention_weight", "cosine_weight": "t_cosine_weight",
              "layer_map": "t_layer_map", "mixed_precision": "t_mixed_precision",
              "freeze_embeddings": "t_freeze_embeddings", "pad_to_multiple_of": "t_pad_multiple"}
DATA_KEYS = {"text_column": "t_text_col", "label_column": "t_label_col", "valid_fraction": "t_valid_fraction",
             "test_fraction": "t_test_fraction", "train_samples": "t_train_samples",
             "eval_samples": "t_eval_samples", "max_length": "t_max_length", "transfer_samples": "t_transfer_samples"}
# None in a config is 0 in its widget.
OPTIONAL = {"patience", "max_steps", "train_samples", "eval_samples", "transfer_samples", "pad_to_multiple_of"}
# None in a config is an empty widget: the model's own value.
MODELS_OWN_WHEN_EMPTY = {"attention_dropout"}
# Rows of four inputs: (label, config field, step, or the options of a selectbox[, number format]).
MAIN_ROWS = [
    [("Temperature T", "temperature", 0.5), ("α (label weight)", "alpha", 0.05), ("KD loss", "kd_loss", ["kl", "mse"]),
     ("Epochs", "epochs", 1)],
    [("Learning rate", "lr", 1e-5, "%.0e"), ("Batch size", "batch_size", 8),
     ("Optimizer", "optimizer", ["adamw", "adam"]), ("Student dropout", "dropout", 0.05)],
]
MORE_ROWS = [
    [("Train samples", "train_samples", 100), ("Eval samples", "eval_samples", 100),
     ("Max length (tokens)", "max_length", 8), ("Validation fraction", "valid_fraction", 0.05)],
    [("Warm-up ratio", "warmup_ratio", 0.05), ("Weight decay", "weight_decay", 0.01),
     ("Early-stopping patience", "patience", 1), ("Test fraction", "test_fraction", 0.05)],
    [("Seed", "seed", 1), ("Eval batch size", "eval_batch_size", 32), ("Log every N steps", "log_every_steps", 1),
     ("Max steps", "max_steps", 10)],
    [("Attention dropout", "attention_dropout", 0.05), ("Pad batches to a multiple of", "pad_to_multiple_of", 8)],
]
LAYER_ROWS = [
    [("Hidden-state MSE weight", "hidden_weight", 0.1), ("Attention KL weight", "attention_weight", 0.1),
     ("Cosine (last hidden) weight", "cosine_weight", 0.05)],
]
WIDGET_KEYS = {**TRAIN_KEYS, **DATA_KEYS}
# The form's words for every config field, so a bad setting is named as the user sees it ("Epochs", not epochs).
FORM_LABELS = {field: label for rows in (MAIN_ROWS, MORE_ROWS, LAYER_ROWS) for row in rows
               for label, field, *_ in row} | {
    "source": "Dataset", "text_column": "Text column", "label_column": "Label column", "student": "Student",
    "teacher": "Teacher", "teacher_cache": "Cache teacher logits", "layer_map": "Layer map",
    "mixed_precision": "Training precision", "freeze_embeddings": "Freeze word embeddings", "transfer": "Transfer text",
    "transfer_samples": "Transfer rows"}
# A pipeline's teacher fine-tune: its own epochs, learning rate and model come from the teacher widgets.
TEACHER_STAGE_LABELS = FORM_LABELS | {"epochs": "Teacher epochs", "lr": "Teacher learning rate",
                                      "student": "Teacher base model"}
SHAPE_BOUNDS = {"t_trunc_n": (1, 48), "t_cfg_layers": (1, 48), "t_cfg_hidden": (64, 4096)}  # student shapes
PRECISION_WORDS = {"auto": "auto: bf16 where the hardware computes it natively", "no": "fp32 (no mixed precision)",
                   "bf16": "bf16 autocast", "fp16": "fp16 autocast (CUDA only)"}
assert set(PRECISION_WORDS) == set(MIXED_PRECISIONS)


def widget_bounds(field: str) -> tuple[float, float] | None:
    """The min and max of a field's widget: the config's own bounds, with 0 allowed where 0 means unset."""
    bounds = bounds_of(field)
    if bounds is None:
        return None
    low, high = bounds
    return (0, high) if field in OPTIONAL else (low, high)


def clamped(field: str, value: Any) -> Any:
    """A value a widget can hold (Streamlit refuses a widget value outside its min/max)."""
    bounds = widget_bounds(field)
    if bounds is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return value
    return type(value)(min(max(value, bounds[0]), bounds[1]))


# Widgets whose value is a float although a preset or a config.json may hold an int there (alpha 0, weight 1):
# Streamlit refuses a number_input whose value and bounds mix int and float.
FLOAT_FIELDS = {name for name in TRAIN_KEYS if isinstance(getattr(SEED, name), float)} | {
    name for name in DATA_KEYS if isinstance(getattr(SEED.data, name), float)}


def widget_value(field: str, value: Any) -> Any:
    """A config value as its widget holds it: None is 0 in an optional count, numbers within the bounds."""
    if value is None and field in OPTIONAL:
        return 0
    if field in FLOAT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return clamped(field, value)


FORM_DEFAULTS: dict[str, Any] = {
    "t_hub_id": "ag_news", "t_mode": "distill", "t_teacher_hub": "", "t_base": presets.OFFLINE_BASE,
    "t_base_hub": "bert-base-uncased", "t_teacher_epochs": 3, "t_teacher_lr": 5e-5,
    "t_student_kind": "Truncate the teacher", "t_trunc_n": 3, "t_cfg_layers": 4, "t_cfg_hidden": 256,
    "t_compact": specs.SEED_STUDENT, "t_student_spec": "", "t_transfer_kind": "none", "t_transfer_path": "",
    **{key: widget_value(field, getattr(SEED, field)) for field, key in TRAIN_KEYS.items()},
    **{key: widget_value(field, getattr(SEED.data, field)) for field, key in DATA_KEYS.items()},
}
def min_max(field: str) -> dict[str, Any]:
    """number_input's min_value/max_value for a config field, typed like its default (Streamlit refuses a mix)."""
    bounds = widget_bounds(field)
    if bounds is None:
        return {}
    kind = type(FORM_DEFAULTS.get(WIDGET_KEYS.get(field, ""), bounds[0]))
    kind = int if kind is int else float
    return {"min_value": kind(bounds[0]), "max_value": kind(bounds[1])}


def shape_bounds(key: str) -> dict[str, int]:
    low, high = SHAPE_BOUNDS[key]
    st.session_state[key] = min(max(int(st.session_state.get(key, low)), low), high)
    return {"min_value": low, "max_value": high}


def field_inputs(rows: list[list[tuple]]) -> None:
    """One row of four columns per row of (label, field, step or options[, format]): help from the config."""
    for row in rows:
        for column, (label, field, step, *number_format) in zip(st.columns(4), row, strict=False):
            key, help = WIDGET_KEYS[field], HELP[field]
            if isinstance(step, list):
                column.selectbox(label, step, key=key, help=help)
            else:
                # An empty field keeps the model's own value (attention dropout): say so in it.
                own = {"placeholder": "the model's own"} if field in MODELS_OWN_WHEN_EMPTY else {}
                column.number_input(label, step=step, key=key, help=help, format=next(iter(number_format), None),
                                    **min_max(field), **own)


def _typed(field: str, key: str, value: Any) -> Any:
    """A widget value in the type of its default; an empty field that means the model's own stays None."""
    if value is None and field in MODELS_OWN_WHEN_EMPTY:
        return None
    return type(FORM_DEFAULTS[key])(value)


def form_values(keys: dict[str, str]) -> dict[str, Any]:
    """Config fields from their widgets, in the types of the defaults (0 in an optional field is None)."""
    values = {field: _typed(field, key, st.session_state[key]) for field, key in keys.items()}
    return {field: (value or None) if field in OPTIONAL else value for field, value in values.items()}

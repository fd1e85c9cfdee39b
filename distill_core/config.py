"""Typed, frozen run configuration: validated once, saved as JSON with every run.

Defaults follow the seed recipe (T=2, alpha=0.5, lr 2e-5, batch 64, 5 epochs, max length 150, student dropout 0.3,
20% validation carved from train) except where the seed had a defect: padding is dynamic, so `max_length` is only
a truncation limit.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import UserError

MODES = ("finetune", "distill")
KD_LOSS_NAMES = ("kl", "mse")
OPTIMIZERS = ("adamw", "adam")

_T = TypeVar("_T")


def _setting(default: _T, help_text: str) -> _T:
    """A field with a default and its one line of help, shown beside its dashboard widget and in its CLI flag's
    --help (typed like dataclasses.field: as the default's type, so type checkers see a field with a default)."""
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class DataConfig:
    # Each field's "help" is the one line shown beside its dashboard widget and in its CLI flag's --help.
    source: str = field(metadata={
        "help": "Hub dataset id, a folder with train/test files, or one file (then split into train/test)."})
    text_column: str = _setting("text", "Column holding the text; join several with + (e.g. title+description).")
    label_column: str = _setting("label", "Column holding the class (integer ids or names).")
    valid_fraction: float = _setting(
        0.2, "Share of the training rows held out for validation (seeded, stratified; seed: 0.2).")
    test_fraction: float = _setting(
        0.2, "Only for a single file without a test split: share held out as the test split.")
    # The UI and the CLI take 0 for "unset" (None) in the optional counts below; a config.json holds null.
    train_samples: int | None = _setting(None, "Use a stratified subsample of this many training rows (0 = all rows).")
    eval_samples: int | None = _setting(
        None, "Use a stratified subsample of this many validation and test rows (0 = all rows).")
    max_length: int = _setting(150, "Truncation limit in tokens; batches are padded only to their longest row.")

    def validate(self) -> None:
        _check_types(self)
        if not str(self.source).strip():
            raise UserError("data source is empty: give a Hub dataset id, a folder with train/test files, or a file")
        if not self.text_column.strip() or not self.label_column.strip():
            raise UserError("text and label column names must not be empty")
        for name in ("valid_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 0.9:
                raise UserError(f"{name}={value} is out of range: use a fraction between 0 and 0.9, e.g. 0.2")
        for name in ("train_samples", "eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise UserError(f"{name}={value} is too small: use at least 2 (or leave it unset for all rows)")
        if not 8 <= self.max_length <= 8192:
            raise UserError(f"max_length={self.max_length} is out of range: use 8..512 for BERT-style models")


@dataclass(frozen=True)
class TrainConfig:
    mode: str = field(metadata={"help": "finetune: train on the labels only; distill: learn from a teacher too."})
    data: DataConfig = field(metadata={"help": "Where the rows come from and how they are split and cut."})
    student: str = field(metadata={
        "help": "Model spec of the model being trained: Hub id, folder, bundled:NAME, or (from the teacher) "
                "truncate:N or config:L<n>-H<h>."})
    teacher: str | None = _setting(None, "Model spec of the fine-tuned teacher classifier (required for distill).")
    temperature: float = _setting(2.0, "Softens teacher and student distributions in the KD term (seed: 2).")
    alpha: float = _setting(0.5, "Weight of the label (CE) loss; 1 - alpha weights the teacher (KD) loss (seed: 0.5).")
    kd_loss: str = _setting("kl", "kl: T^2 * KL(teacher || student) on softened outputs; mse: squared error on logits.")
    epochs: int = _setting(5, "Passes over the training rows (seed: 5); early stopping may end sooner.")
    lr: float = _setting(2e-5, "Peak learning rate (seed: 2e-5; small students and short runs like 1e-4).")
    batch_size: int = _setting(64, "Training examples per optimiser step (seed: 64).")
    optimizer: str = _setting("adamw", "adamw: warm-up + linear decay; adam: the seed recipe's constant-rate Adam.")
    warmup_ratio: float = _setting(0.1, "Share of all steps spent warming the learning rate up (adamw only).")
    weight_decay: float = _setting(0.01, "Decoupled weight decay, not applied to biases and LayerNorm (adamw only).")
    # None keeps the model's own dropout (what a teacher fine-tune uses).
    dropout: float | None = _setting(0.3, "Student dropout override (seed: 0.3); 0 switches dropout off.")
    patience: int | None = _setting(2, "Stop after this many epochs without a better validation accuracy (0 = never).")
    seed: int = _setting(42, "Seeds the split, the subsample, the student head and the batch order.")
    # Inference keeps no activations for the backward pass, so its batches can be larger than training's.
    eval_batch_size: int = _setting(128, "Batch size for validation, test and teacher logits (inference only).")
    log_every_steps: int = _setting(10, "A step point (loss, throughput) is written every this many steps.")
    max_steps: int | None = _setting(None, "Stop after this many optimiser steps (0 = no limit); for time-boxed runs.")
    teacher_cache: bool = _setting(True, "Reuse teacher logits computed by earlier runs on the same examples.")
    extra: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "Free-form notes saved with the run, e.g. the preset used."})

    def validate(self) -> None:
        if not isinstance(self.data, DataConfig):
            raise UserError(f"config 'data' must be an object like {{'source': ...}}, not {self.data!r}")
        self.data.validate()
        _check_types(self)
        if self.mode not in MODES:
            raise UserError(f"mode={self.mode!r} is unknown: use one of {', '.join(MODES)}")
        if not self.student.strip():
            raise UserError("student model spec is empty")
        if self.mode == "distill" and not (self.teacher or "").strip():
            raise UserError("distill needs a teacher: pass --teacher SPEC (a fine-tuned classifier)")
        if self.mode == "finetune" and self.student.startswith(("truncate:", "config:")) and not self.teacher:
            raise UserError(f"student spec {self.student!r} is built from a teacher: pass --teacher or use distill")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise UserError(f"temperature={self.temperature} must be > 0 (the seed recipe uses 2)")
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"alpha={self.alpha} must be within [0, 1]: weight of the label loss (seed: 0.5)")
        if self.kd_loss not in KD_LOSS_NAMES:
            raise UserError(f"kd_loss={self.kd_loss!r} is unknown: use one of {', '.join(KD_LOSS_NAMES)}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer={self.optimizer!r} is unknown: use one of {', '.join(OPTIMIZERS)}")
        if self.epochs < 1 or self.epochs > 1000:
            raise UserError(f"epochs={self.epochs} must be between 1 and 1000")
        if not (self.lr > 0 and self.lr < 1 and math.isfinite(self.lr)):
            raise UserError(f"lr={self.lr} must be > 0 and < 1 (typical: 2e-5 .. 1e-4)")
        if self.batch_size < 1 or self.batch_size > 4096:
            raise UserError(f"batch_size={self.batch_size} must be between 1 and 4096")
        if self.eval_batch_size < 1:
            raise UserError(f"eval_batch_size={self.eval_batch_size} must be >= 1")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise UserError(f"warmup_ratio={self.warmup_ratio} must be within [0, 1)")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):  # NaN compares False to everything
            raise UserError(f"weight_decay={self.weight_decay} must be >= 0")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout={self.dropout} must be within [0, 1)")
        if self.patience is not None and self.patience < 1:
            raise UserError(f"patience={self.patience} must be >= 1 (or unset to disable early stopping)")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"max_steps={self.max_steps} must be >= 1")
        if self.log_every_steps < 1:
            raise UserError(f"log_every_steps={self.log_every_steps} must be >= 1")


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def train_config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Build a TrainConfig from JSON data, rejecting unknown keys so a typo is not silently ignored."""
    if not isinstance(raw, dict):
        raise UserError(f"config must be a JSON object like {{'mode': 'distill', 'data': {{...}}}}, not "
                        f"{type(raw).__name__}")
    raw = dict(raw)
    data_raw = raw.pop("data", None)
    if not isinstance(data_raw, dict):
        raise UserError("config has no 'data' section: expected {'data': {'source': ...}, ...}")
    _reject_unknown(data_raw, DataConfig, "data")
    # Library versions and other provenance are saved beside the config; they are not settings.
    raw.pop("provenance", None)
    _reject_unknown(raw, TrainConfig, "config")
    try:
        return TrainConfig(data=DataConfig(**data_raw), **raw)
    except TypeError as exc:
        raise UserError(f"config is incomplete: {exc}") from None


def load_train_config(path: Path) -> TrainConfig:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"config file {path} is not valid JSON: {exc}") from None
    config = train_config_from_dict(raw)
    config.validate()
    return config


# Field annotation (a string under `from __future__ import annotations`) -> accepted types and how to say it.
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "an integer"), "float": ((int, float), "a number"), "str": ((str,), "a string"),
    "bool": ((bool,), "true or false"), "dict[str, Any]": ((dict,), "an object"),
}


def _check_types(config: Any) -> None:
    """A hand-written config.json may hold any JSON type in any field: name the field instead of failing later
    with a TypeError ("5" < 1) or, worse, training with it (epochs 2.5, weight_decay "0.01")."""
    for spec in dataclasses.fields(config):
        annotation = str(spec.type)
        optional = annotation.endswith(" | None")
        expected = _FIELD_TYPES.get(annotation.removesuffix(" | None"))
        value = getattr(config, spec.name)
        if expected is None or (optional and value is None):
            continue
        types, what = expected
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise UserError(f"{spec.name}={value!r} must be {what}{' or null' if optional else ''}")


def _reject_unknown(raw: dict[str, Any], cls: type, where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"unknown {where} keys {unknown}: known keys are {sorted(known)}")


def _fields_by_name() -> dict[str, dataclasses.Field]:
    # The two dataclasses share no field name (a test checks), so one flat namespace serves the UI and the CLI.
    return {f.name: f for cls in (DataConfig, TrainConfig) for f in dataclasses.fields(cls)}


# One line of help for every setting, shown next to its widget and its CLI flag; the dataclass fields own the text.
FIELD_HELP: dict[str, str] = {name: f.metadata["help"] for name, f in _fields_by_name().items()}


def config_field(name: str) -> dataclasses.Field:
    """The DataConfig or TrainConfig field called ``name`` (its type, default and help)."""
    try:
        return _fields_by_name()[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a DataConfig or TrainConfig field") from None


def help_for(name: str) -> str:
    """The one line of help of setting ``name``: the same words beside its widget and in its CLI flag's help."""
    return config_field(name).metadata["help"]

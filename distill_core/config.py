"""Typed, frozen run configuration: validated once, saved as JSON with every run.

Defaults follow the seed recipe (T=2, alpha=0.5, lr 2e-5, batch 64, 5 epochs, max length 150, student dropout 0.3,
20% validation carved from train) except where the seed had a defect: padding is dynamic, so `max_length` is only
a truncation limit.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import UserError

MODES = ("finetune", "distill")
KD_LOSS_NAMES = ("kl", "mse")
OPTIMIZERS = ("adamw", "adam")
# Training precision: auto = bf16 autocast where the hardware computes bf16 natively (CPU AMX / AVX512-BF16, a
# CUDA GPU with bf16), fp32 elsewhere; the choice made is recorded in the run's provenance.
MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")

_T = TypeVar("_T")
# Rule texts ({low}, {high}: the bounds) where the plain "must be between" would lose words users know.
FRACTION_RULE = "is out of range: use a fraction between {low} and {high}, e.g. 0.2"


def _setting(default: _T, help_text: str, bounds: tuple[float, float] | None = None, rule: str | None = None) -> _T:
    """A field with a default and its one line of help, shown beside its dashboard widget and in its CLI flag's
    --help (typed like dataclasses.field: as the default's type, so type checkers see a field with a default).
    ``bounds`` (inclusive) is the one range of a number: validation refuses what lies outside, and the
    dashboard's widget cannot leave it."""
    extra = {"bounds": bounds, **({"rule": rule} if rule else {})} if bounds else {}
    return field(default=default, metadata={"help": help_text, **extra})


@dataclass(frozen=True)
class DataConfig:
    # Each field's "help" is the one line shown beside its dashboard widget and in its CLI flag's --help.
    source: str = field(metadata={
        "help": "Hub dataset id, a folder with train/test files, or one file (then split into train/test)."})
    text_column: str = _setting("text", "Column holding the text; join several with + (e.g. title+description).")
    label_column: str = _setting("label", "Column holding the class (integer ids or names).")
    valid_fraction: float = _setting(
        0.2, "Share of the training rows held out for validation (seeded, stratified; seed: 0.2).", (0.01, 0.8),
        FRACTION_RULE)
    test_fraction: float = _setting(
        0.2, "Only for a single file without a test split: share held out as the test split.", (0.01, 0.8),
        FRACTION_RULE)
    # The UI and the CLI take 0 for "unset" (None) in the optional counts below; a config.json holds null.
    train_samples: int | None = _setting(
        None, "Use a stratified subsample of this many training rows (0 = all rows).", (2, 100_000_000))
    eval_samples: int | None = _setting(
        None, "Use a stratified subsample of this many validation and test rows (0 = all rows).", (2, 100_000_000))
    max_length: int = _setting(
        150, "Truncation limit in tokens; batches are padded only to their longest row.", (8, 8192),
        "is out of range: use 8..8192 (8..512 for BERT-style models)")
    # Unlabelled text the student learns from the teacher alone (its loss is the KD part only).
    transfer: str | None = _setting(
        None, "Unlabelled transfer text: 'rest' (training rows left out by the train subsample, labels dropped), "
              "a file or a Hub dataset id (its text column is used). The teacher labels it; empty = none.")
    transfer_samples: int | None = _setting(
        None, "Use at most this many transfer-text rows (seeded sample; 0 = all).", (1, 100_000_000))

    def problems(self) -> list[Problem]:
        """Every bad setting, not only the first (the dashboard lists them all at once)."""
        found = _type_problems(self)
        bad = {problem.field for problem in found}
        if "source" not in bad and not self.source.strip():
            found.append(Problem("source", self.source, "is empty: pick a dataset or give a Hub dataset id",
                                 plain="data source is empty: give a Hub dataset id, a folder with train/test "
                                       "files, or a file", show_value=False))
        for name, holds in (("text_column", "text"), ("label_column", "class")):
            if name not in bad and not getattr(self, name).strip():
                found.append(Problem(name, getattr(self, name), f"is empty: name the column that holds the {holds}",
                                     plain="text and label column names must not be empty", show_value=False))
        return found + _range_problems(self, bad)

    def validate(self, names: Mapping[str, str] | None = None) -> None:
        """Raise one SettingsError listing every problem; ``names`` says each field as its face does."""
        _raise_problems(self.problems(), names)


@dataclass(frozen=True)
class TrainConfig:
    mode: str = field(metadata={"help": "finetune: train on the labels only; distill: learn from a teacher too."})
    data: DataConfig = field(metadata={"help": "Where the rows come from and how they are split and cut."})
    student: str = field(metadata={
        "help": "Model spec of the model being trained: Hub id, folder, bundled:NAME, or (from the teacher) "
                "truncate:N or config:L<n>-H<h>."})
    teacher: str | None = _setting(None, "Model spec of the fine-tuned teacher classifier (required for distill).")
    temperature: float = _setting(
        2.0, "Softens teacher and student distributions in the KD term (seed: 2).", (0.1, 50.0),
        "must be > 0: between {low} and {high} (the seed recipe uses 2)")
    alpha: float = _setting(
        0.5, "Weight of the label (CE) loss; 1 - alpha weights the teacher (KD) loss (seed: 0.5).", (0.0, 1.0),
        "must be within [0, 1]: the weight of the label loss (seed: 0.5)")
    kd_loss: str = _setting("kl", "kl: T^2 * KL(teacher || student) on softened outputs; mse: squared error on logits.")
    # Intermediate-layer terms, added to the total with these weights (0 = off). Any of them makes the teacher run
    # on every training batch (its hidden states are too big to cache).
    hidden_weight: float = _setting(
        0.0, "Weight of the hidden-state MSE between mapped layers (TinyBERT/PKD; 0 = off).", (0.0, 1000.0))
    attention_weight: float = _setting(
        0.0, "Weight of the attention-distribution KL between mapped layers (TinyBERT/MiniLM; 0 = off).",
        (0.0, 1000.0))
    cosine_weight: float = _setting(
        0.0, "Weight of the cosine loss between last hidden states (DistilBERT; 0 = off).", (0.0, 1000.0))
    layer_map: str = _setting(
        "", "Teacher layer (1-based) matched by each student layer, comma-separated, e.g. 2,4,6; "
            "empty = evenly spaced.")
    mixed_precision: str = _setting(
        "auto", "Training precision: auto = bf16 autocast where the hardware has native bf16 (AMX/AVX512-BF16, "
                "CUDA), else fp32; no = fp32; bf16; fp16 (CUDA only).")
    epochs: int = _setting(5, "Passes over the training rows (seed: 5); early stopping may end sooner.", (1, 100))
    lr: float = _setting(
        2e-5, "Peak learning rate (seed: 2e-5; small students and short runs like 1e-4).", (1e-7, 1.0),
        "must be > 0: between {low} and {high} (typical: 2e-5 .. 1e-4)")
    batch_size: int = _setting(64, "Training examples per optimiser step (seed: 64).", (1, 1024))
    optimizer: str = _setting("adamw", "adamw: warm-up + linear decay; adam: the seed recipe's constant-rate Adam.")
    warmup_ratio: float = _setting(
        0.1, "Share of all steps spent warming the learning rate up (adamw only).", (0.0, 0.9))
    weight_decay: float = _setting(
        0.01, "Decoupled weight decay, not applied to biases and LayerNorm (adamw only).", (0.0, 1.0))
    # None keeps the model's own dropout (what a teacher fine-tune uses).
    dropout: float | None = _setting(
        0.3, "Student dropout override (seed: 0.3); 0 switches dropout off.", (0.0, 0.9))
    # Only the attention probabilities: hidden dropout is `dropout`. At 0, PyTorch's fused attention trains without
    # keeping the attention matrix for the backward pass (BENCHMARKS.md sections 4c, 4d and 4e: memory and step
    # time). Over 3 seeds at full size (section 9b) it cost truncate:2 nothing against BERT's 0.1; the fresh
    # config:L4-H256 student moved -0.61 +- 1.77 points (paired; -2.46, +1.07, -0.45), within its wider seed
    # spread, so 0 is the default.
    # None keeps the model's own (a truncated student's is its teacher's; a fresh config: student's is BERT's 0.1):
    # what a fine-tune uses.
    attention_dropout: float | None = _setting(
        0.0, "Student attention dropout. 0 lets fused attention skip storing the attention matrix: less memory, "
             "faster steps; empty keeps the model's own (BERT's: 0.1), which a fresh config: student may prefer "
             "(its seeds vary more: BENCHMARKS.md 9b).", (0.0, 0.9))
    # The word-embedding matrix is most of a small student's weights (11.7 M of truncate:3's 17.4 M): frozen, it
    # needs no gradient and no AdamW moments. BENCHMARKS.md sections 4c, 4d (memory, time) and 9b (accuracy).
    freeze_embeddings: bool = _setting(
        False, "Keep the student's word embeddings at their starting values (copied from the teacher or the "
               "pretrained model): no gradients or optimiser state for them; less memory and optimiser time. Not for a "
               "fresh config: student, whose embeddings start random.")
    patience: int | None = _setting(
        2, "Stop after this many epochs without a better validation accuracy (0 = never).", (1, 100))
    seed: int = _setting(42, "Seeds the split, the subsample, the student head and the batch order.", (0, 2**31 - 1))
    # Inference keeps no activations for the backward pass, so its batches can be larger than training's; but the
    # teacher's logit pass and validation hold a run's largest transient tensors, so not too large: 64 rather than
    # 128 lowers the run's peak memory (BENCHMARKS.md section 4e).
    eval_batch_size: int = _setting(
        64, "Batch size for validation, test and teacher logits (inference only).", (1, 4096))
    # Batch lengths in steps of 16 tokens let glibc's heap reuse the blocks each step frees instead of fragmenting
    # (shapes repeat). Under bf16 autocast that is free: peak RSS 1,840-1,876 -> 1,381-1,557 MB, time x0.99-1.03
    # (BENCHMARKS.md 4f, 4g: an AVX512-BF16 CPU); in fp32 the extra tokens cost x1.14 time for -150 to -190 MB
    # (4e). So "auto" (None; 0 on the CLI and the form) pads to 16 where the run trains in bf16/fp16 and to the
    # longest row elsewhere (batching.padding_for_run); a number is used as given.
    pad_to_multiple_of: int | None = _setting(
        None, "Pad each batch to a multiple of this many tokens (1 = to its longest row; 0 or empty = auto: 16 when "
              "the run trains in bf16, where the repeated shapes save memory at no cost in time, else 1).", (1, 512))
    log_every_steps: int = _setting(
        10, "A step point (loss, throughput) is written every this many steps.", (1, 100_000))
    max_steps: int | None = _setting(
        None, "Stop after this many optimiser steps (0 = no limit); for time-boxed runs.", (1, 10_000_000))
    teacher_cache: bool = _setting(True, "Reuse teacher logits computed by earlier runs on the same examples.")
    extra: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "Free-form notes saved with the run, e.g. the preset used."})

    def problems(self) -> list[Problem]:
        """Every bad setting of the run and its data, not only the first."""
        if not isinstance(self.data, DataConfig):
            return [Problem("data", self.data, "must be an object like {'source': ...}",
                            plain=f"config 'data' must be an object like {{'source': ...}}, not {self.data!r}")]
        found = self.data.problems() + _type_problems(self)
        bad = {problem.field for problem in found}
        for name, known in (("mode", MODES), ("kd_loss", KD_LOSS_NAMES), ("optimizer", OPTIMIZERS),
                            ("mixed_precision", MIXED_PRECISIONS)):
            if name not in bad and getattr(self, name) not in known:
                found.append(Problem(name, getattr(self, name), f"is unknown: use one of {', '.join(known)}"))
        if self.mixed_precision == "fp16" and "mixed_precision" not in bad:
            from .hardware import cuda_available  # imports torch: only for the one value that needs a GPU

            if not cuda_available():
                found.append(Problem("mixed_precision", "fp16", "fp16 needs a CUDA GPU and none is available: use "
                                     "auto, bf16 or no", plain="--mixed-precision fp16 needs a CUDA GPU and none "
                                     "is available: use auto, bf16 or no", show_value=False))
        student_ok = "student" not in bad and bool(self.student.strip())
        if "student" not in bad and not student_ok:
            found.append(Problem("student", self.student, "is empty: name the model to train",
                                 plain="student model spec is empty", show_value=False))
        if self.mode == "distill" and "teacher" not in bad and not (self.teacher or "").strip():
            found.append(Problem("teacher", self.teacher, "is empty: a distillation learns from a fine-tuned teacher",
                                 plain="distill needs a teacher: pass --teacher SPEC (a fine-tuned classifier)",
                                 show_value=False))
        if self.mode == "finetune" and student_ok and self.student.startswith(("truncate:", "config:")) \
                and not self.teacher:
            found.append(Problem("student", self.student, "is built from a teacher: name a teacher or distil",
                                 plain=f"student spec {self.student!r} is built from a teacher: pass --teacher or "
                                       "use distill"))
        if self.freeze_embeddings is True and student_ok and self.student.startswith("config:"):
            found.append(Problem("freeze_embeddings", True, "keeps a fresh config: student's random embeddings: "
                                 "untick it, or start from pretrained weights (truncate:N or a trained model)",
                                 plain=f"--freeze-embeddings would keep the random embeddings of {self.student} (a "
                                       "config: student starts from scratch): drop the flag, or use truncate:N or a "
                                       "trained model", show_value=False))
        if "layer_map" not in bad:
            found += layer_map_syntax_problems(self.layer_map)
        return found + _range_problems(self, bad)

    def validate(self, names: Mapping[str, str] | None = None) -> None:
        """Raise one SettingsError listing every problem; ``names`` says each field as its face does (the form's
        labels, the CLI's flags); without it a field is named as in config.json."""
        _raise_problems(self.problems(), names)


def layer_map_syntax_problems(text: str) -> list[Problem]:
    """A layer map before any model is known: empty (evenly spaced), or whole numbers >= 1 separated by commas.
    Its length and range depend on the two models: preflight.check_layer_terms checks those."""
    parts = [part.strip() for part in text.split(",")] if text.strip() else []
    bad = [part for part in parts if not (part.isascii() and part.isdigit() and int(part) >= 1)]
    if not bad:
        return []
    shown = ", ".join(repr(part) for part in bad)
    return [Problem("layer_map", text, f"must list teacher layers as whole numbers from 1, comma-separated, e.g. "
                                       f"2,4,6 (not {shown}); leave it empty for evenly spaced layers",
                    plain=f"--layer-map {text!r}: {shown} is not a teacher layer number: give whole numbers from 1, "
                          "comma-separated, e.g. 2,4,6, or leave it empty for evenly spaced layers")]


@dataclass(frozen=True)
class Problem:
    """One bad setting: which field, its value, and what is wrong, said after the field's name."""
    field: str
    value: Any
    rule: str                 # "must be between 1 and 100"
    plain: str | None = None  # the whole sentence where "field=value rule" would read badly
    show_value: bool = True   # False where the value says nothing ('' for an empty field)

    def text(self, names: Mapping[str, str] | None = None) -> str:
        if names and self.field in names:
            return f"{names[self.field]} {self.rule}" + (f" (got {_shown(self.value)})" if self.show_value else "")
        return self.plain or f"{self.field}={self.value!r} {self.rule}"


class SettingsError(UserError):
    """Bad settings, all of them: ``problems`` for a face that says them its own way."""

    def __init__(self, problems: list[Problem], names: Mapping[str, str] | None = None) -> None:
        texts = [problem.text(names) for problem in problems]
        super().__init__(texts[0] if len(texts) == 1 else f"{len(texts)} settings to fix: " + "; ".join(texts))
        self.problems = problems


def _raise_problems(problems: list[Problem], names: Mapping[str, str] | None) -> None:
    if problems:
        raise SettingsError(problems, names)


def settings_problems(config: TrainConfig, names: Mapping[str, str] | None = None) -> list[str]:
    """Every problem of ``config`` as one sentence each, fields named by ``names`` (e.g. the form's labels)."""
    return [problem.text(names) for problem in config.problems()]


def bounds_of(name: str) -> tuple[float, float] | None:
    """The inclusive range of number setting ``name`` (None for settings without one): validation and the
    dashboard's widgets read the same pair."""
    return config_field(name).metadata.get("bounds")


def _shown(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return repr(value) if isinstance(value, str) else str(value)
    return f"{value:g}" if isinstance(value, float) else f"{value:,}"


def _range_problems(config: Any, skip: set[str]) -> list[Problem]:
    """Numbers outside their field's bounds; NaN and infinities fail the comparison and are refused too."""
    found = []
    for spec in dataclasses.fields(config):
        bounds = spec.metadata.get("bounds")
        value = getattr(config, spec.name)
        if bounds is None or spec.name in skip or value is None:
            continue
        low, high = bounds
        if not low <= value <= high:
            unset = " or unset" if str(spec.type).endswith(" | None") and spec.default is None else ""
            rule = spec.metadata.get("rule", "must be between {low} and {high}" + unset)
            found.append(Problem(spec.name, value, rule.format(low=_shown(low), high=_shown(high))))
    return found


# A setting added later, and how runs trained before it existed. A run's saved config.json without it loads with
# this value, not today's default, so resuming or copying an older run trains as that run did. (A hand-written
# config, which carries no provenance, gets today's defaults.)
SETTINGS_BEFORE_THEY_EXISTED: dict[str, Any] = {"attention_dropout": None, "pad_to_multiple_of": 1}


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
    # Library versions and other provenance are saved beside the config; they are not settings. Their presence
    # says a run saved this file: settings it lacks did not exist yet, and it trained without them.
    if isinstance(raw.pop("provenance", None), dict):
        raw = {**SETTINGS_BEFORE_THEY_EXISTED, **raw}
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


def _type_problems(config: Any) -> list[Problem]:
    """A hand-written config.json may hold any JSON type in any field: name the field instead of failing later
    with a TypeError ("5" < 1) or, worse, training with it (epochs 2.5, weight_decay "0.01")."""
    found = []
    for spec in dataclasses.fields(config):
        annotation = str(spec.type)
        optional = annotation.endswith(" | None")
        expected = _FIELD_TYPES.get(annotation.removesuffix(" | None"))
        value = getattr(config, spec.name)
        if expected is None or (optional and value is None):
            continue
        types, what = expected
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            found.append(Problem(spec.name, value, f"must be {what}{' or null' if optional else ''}"))
    return found


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

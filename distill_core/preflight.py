"""The checks a run passes before anything is created: one set, used by every face.

pipeline.py runs :func:`check_run` before it creates a run (dashboard and CLI pipelines); train.prepare runs
:func:`check_specs` and :func:`check_models_fit` as it loads (CLI finetune/distill and the worker), so a bad
setting gets the same message whichever way it came in. Only model configs are read here (no torch): weights
load later, in train.prepare.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import hub, specs
from .config import TrainConfig
from .errors import UserError


def check_specs(config: TrainConfig) -> None:
    """Model specs resolve (local folders hold safetensors, Hub ids need the Hub), a truncated student keeps no
    more layers than its teacher has, and a distillation teacher has a trained classification head."""
    for role, spec in (("teacher", config.teacher), ("student", config.student)):
        if not spec:
            continue
        parsed = specs.parse_spec(spec)
        if parsed.kind in ("local", "bundled"):
            specs.resolve_folder(parsed)  # raises a UserError naming what is missing
        elif parsed.kind == "hub":
            hub.require_hub(f"{role} {spec}")
        elif parsed.kind == "truncate" and config.teacher:
            check_truncation(spec, config.teacher)
    if config.mode == "distill" and config.teacher:
        teacher_config = specs.read_model_config(config.teacher)  # None for Hub teachers: checked at load
        if teacher_config is not None and not specs.is_classifier_config(teacher_config):
            raise UserError(f"teacher {specs.spec_label(config.teacher)!r} has no classification head: fine-tune "
                            "it first (Train: 'Fine-tune a teacher first, then distil'; CLI: pipeline --base "
                            f"{config.teacher}) or pick a finished run")


def check_truncation(student: str, teacher: str | None) -> None:
    """``truncate:N`` keeps N of the teacher's layers: refuse N that is not below what a local teacher has."""
    parsed = specs.parse_spec(student) if student else None
    if parsed is None or parsed.kind != "truncate" or not teacher:
        return
    teacher_shape = specs.model_shape(teacher)
    # Keeping every layer would copy the teacher, not shrink it (models.build_student refuses it as well).
    if teacher_shape and parsed.layers >= teacher_shape[0]:
        layers = teacher_shape[0]
        raise UserError(f"student {student!r} keeps {parsed.layers} layers but the teacher has {layers}: use "
                        f"truncate:1 .. truncate:{layers - 1}")


def check_models_fit(config: TrainConfig, label_names: list[str]) -> None:
    """What the worker would refuse only after the run exists, refused before: a max length above a local
    model's position limit, and a trained classifier whose number of classes differs from the data's."""
    for role, spec in (("teacher", config.teacher), ("student", config.student)):
        model_config = specs.read_model_config(spec) if spec else None  # local and bundled specs only
        if not model_config:
            continue
        limit = model_config.get("max_position_embeddings")
        if isinstance(limit, int) and config.data.max_length > limit:
            raise UserError(f"max_length={config.data.max_length} exceeds what {role} {specs.spec_label(spec)!r} "
                            f"supports ({limit} positions): use at most {limit}")
        id2label = model_config.get("id2label")
        if specs.is_classifier_config(model_config) and isinstance(id2label, dict) \
                and len(id2label) != len(label_names):
            raise UserError(f"{role} {specs.spec_label(spec)!r} predicts {len(id2label)} classes but the data has "
                            f"{len(label_names)} ({', '.join(label_names)}): use a model fine-tuned on this data")


def check_run(config: TrainConfig) -> dict[str, Any]:
    """Every check cheap enough to run before a run exists; raises UserError on bad input.

    Validates the config, checks the model specs and loads the data (a Hub dataset only needs the Hub to
    answer). Returns provenance facts for config.json.
    """
    from .data import load_data, resolve_local

    config.validate()
    check_specs(config)
    source = config.data.source
    if resolve_local(source) is None:
        if not specs.is_hub_id(source):
            raise UserError(f"data source {source!r} does not exist: pick a local dataset, upload a file or give a "
                            "Hub dataset id")
        hub.require_hub(f"dataset {source}")
        return {"data": f"hub:{source}"}
    loaded = load_data(config.data, config.seed)
    check_models_fit(config, loaded.label_names)
    return {"data": loaded.description, "label_names": loaded.label_names,
            "split_sizes": {name: len(split) for name, split in loaded.splits.items()}}


# Settings that are valid but unusual enough that a run with them is probably a slip: (field, test, why).
# Warned about before Start, never refused: an expert may mean them.
_OUTLANDISH: list[tuple[str, Any, str]] = [
    ("lr", lambda v: v > 0.01, "is far above what fine-tunes a transformer (1e-5 .. 1e-4): the loss will likely "
                               "diverge and the model learn nothing"),
    ("lr", lambda v: v < 1e-6, "is so small that a few epochs will barely move the weights"),
    ("epochs", lambda v: v > 20, "is many passes for fine-tuning: it takes long and usually overfits (early "
                                 "stopping may end it sooner)"),
    ("batch_size", lambda v: v > 256, "is a large batch: it needs much memory and few optimiser steps are left"),
    ("temperature", lambda v: v > 10, "softens the teacher's outputs until they are nearly uniform (usual: 1 .. 5)"),
    ("dropout", lambda v: v is not None and v > 0.5, "drops most activations: the student will learn slowly"),
    ("warmup_ratio", lambda v: v > 0.5, "spends most of the run warming the learning rate up"),
    ("weight_decay", lambda v: v > 0.1, "is a strong weight decay (usual: 0 .. 0.1)"),
    ("max_length", lambda v: v > 512, "is more positions than BERT-style models have (512)"),
]


def setting_warnings(config: TrainConfig, names: Mapping[str, str] | None = None) -> list[str]:
    """Valid but outlandish settings of ``config``, one sentence each, fields named by ``names`` (the form's
    labels; the CLI's flags) or else by their config names. Pure: the page shows them above Start and the CLI
    can print them to stderr; neither refuses the run."""
    values = {**vars(config.data), **vars(config)}
    found = []
    for name, outlandish, why in _OUTLANDISH:
        value = values[name]
        if isinstance(value, (int, float)) and outlandish(value):
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            found.append(f"{(names or {}).get(name, name)} {shown} {why}.")
    if config.mode == "distill" and config.alpha == 1.0:
        found.append(f"{(names or {}).get('alpha', 'alpha')} 1 puts no weight on the teacher: this trains on the "
                     "labels only, which is fine-tuning, not distillation.")
    return found

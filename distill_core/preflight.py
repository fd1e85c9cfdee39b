"""The checks a run passes before anything is created: one set, used by every face.

pipeline.py runs :func:`check_run` before it creates a run (dashboard and CLI pipelines); train.prepare runs
:func:`check_specs` and :func:`check_models_fit` as it loads (CLI finetune/distill and the worker), so a bad
setting gets the same message whichever way it came in. Only model configs are read here (no torch): weights
load later, in train.prepare.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import hub, specs
from .config import Problem, SettingsError, TrainConfig
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
    check_layer_terms(config)


# ----------------------------------------------------------------------------------------------------------------
# intermediate-layer terms (objective.py): shapes that can be matched layer by layer

@dataclass(frozen=True)
class LayerShape:
    """What layer terms need to know of a model: layers, hidden width and attention heads (None: unknown)."""
    layers: int
    hidden: int
    heads: int | None


def _layer_shape(model_config: Mapping[str, Any] | None) -> LayerShape | None:
    layers, hidden, heads = ((model_config or {}).get(key)
                             for key in ("num_hidden_layers", "hidden_size", "num_attention_heads"))
    if not (isinstance(layers, int) and isinstance(hidden, int)):
        return None
    return LayerShape(layers, hidden, heads if isinstance(heads, int) else None)


def spec_layer_shape(spec: str | None, teacher: str | None = None) -> LayerShape | None:
    """The LayerShape of a model spec without loading weights (local and bundled config.json, truncate:N of such
    a teacher, config:L<n>-H<h>, a compact BERT's name); None when it cannot be known offline (a Hub model:
    checked once loaded, check_layer_terms_loaded)."""
    if not spec:
        return None
    parsed = specs.parse_spec(spec)
    if parsed.kind == "truncate":
        base = spec_layer_shape(teacher)
        return LayerShape(parsed.layers, base.hidden, base.heads) if base else None
    if parsed.kind == "config":  # models.build_student: one head per 64 dimensions
        return LayerShape(parsed.layers, parsed.hidden, parsed.hidden // 64)
    if shape := _layer_shape(specs.read_model_config(spec)):
        return shape
    compact = re.search(r"_L-(\d+)_H-(\d+)_A-(\d+)", spec)
    return LayerShape(int(compact[1]), int(compact[2]), int(compact[3])) if compact else None


def layer_term_problems(config: TrainConfig, student: LayerShape, teacher: LayerShape) -> list[Problem]:
    """Every reason the layer terms of ``config`` cannot match these two shapes: a layer map of the wrong length
    or out of the teacher's range, and attention KL between different head counts (hidden widths can always be
    matched: a learned projection maps the student's to the teacher's)."""
    from .objective import active_layer_terms

    terms = active_layer_terms(config)
    if not terms:
        return []
    from .layer_losses import layer_map_problems  # imports torch: only for runs with layer terms

    found = layer_map_problems(config.layer_map, student.layers, teacher.layers)
    if "attention" in terms and None not in (student.heads, teacher.heads) and student.heads != teacher.heads:
        found.append(Problem(
            "attention_weight", config.attention_weight,
            f"needs as many attention heads in the student ({student.heads}) as in the teacher ({teacher.heads}): "
            "heads are matched one to one; set it to 0 or pick a student with that many heads",
            plain=f"--attention-weight {config.attention_weight:g}: the student has {student.heads} attention heads "
                  f"and the teacher {teacher.heads}; attention maps are matched head by head, so they cannot be "
                  "distilled between these models: use --attention-weight 0 or a student with "
                  f"{teacher.heads} heads"))
    return found


def check_layer_terms(config: TrainConfig, teacher_spec: str | None = None) -> None:
    """Refuse layer terms the two models' shapes cannot match, from their configs (no weights loaded);
    ``teacher_spec``: the model the teacher will be made from (a pipeline's base), else config.teacher."""
    teacher_spec = teacher_spec or config.teacher
    student = spec_layer_shape(config.student, teacher_spec)
    teacher = spec_layer_shape(teacher_spec)
    if student is not None and teacher is not None:
        problems = layer_term_problems(config, student, teacher)
        if problems:
            raise SettingsError(problems)


def check_layer_terms_loaded(config: TrainConfig, student_config: Any, teacher_config: Any, *,
                             same_vocabulary: bool) -> None:
    """check_layer_terms on the loaded models' (transformers) configs, plus what only loaded models tell: layer
    terms compare the two models token by token, so both must tokenise the text the same way."""
    shapes = [_layer_shape(vars(c) if not isinstance(c, Mapping) else c) for c in (student_config, teacher_config)]
    problems = layer_term_problems(config, *shapes) if None not in shapes else []  # type: ignore[arg-type]
    if not same_vocabulary:
        problems.insert(0, Problem(
            "student", config.student, "uses another vocabulary than the teacher: layer terms compare the two "
                                       "models token by token; use a student built from the teacher (truncate:N, "
                                       "config:L<n>-H<h>) or set the layer weights to 0",
            plain=f"student {config.student!r} uses another vocabulary than the teacher: hidden, attention and "
                  "cosine terms compare the two models token by token; use a student built from the teacher "
                  "(truncate:N, config:L<n>-H<h>) or set --hidden-weight, --attention-weight and --cosine-weight "
                  "to 0"))
    if problems:
        raise SettingsError(problems)


# ----------------------------------------------------------------------------------------------------------------
# transfer text (transfer.py)

def transfer_problems(config: TrainConfig) -> list[Problem]:
    """What is wrong with the transfer settings on their own, before any data is read: transfer text needs a
    teacher, "rest" needs a train subsample to leave rows over, and a cap needs transfer text to cap."""
    from .transfer import REST, requested

    data, found = config.data, []
    if requested(data) and config.mode != "distill":
        found.append(Problem("transfer", data.transfer, "needs a teacher: transfer text has no labels and is "
                             "learnt from the teacher's outputs alone; distil, or leave it empty",
                             plain=f"--transfer {data.transfer}: fine-tuning has no teacher to label transfer text; "
                                   "use distill (or pipeline) with --teacher, or drop --transfer"))
    if (data.transfer or "").strip() == REST and data.train_samples is None:
        found.append(Problem("transfer", data.transfer, "'rest' is the training rows that the train subsample "
                             "leaves out: set the number of training rows too",
                             plain="--transfer rest needs --train-samples: 'rest' is the training rows that "
                                   "--train-samples leaves out, and without it every training row already has its "
                                   "label"))
    if data.transfer_samples and not requested(data):
        found.append(Problem("transfer_samples", data.transfer_samples, "caps transfer text, but none is set",
                             plain=f"--transfer-samples {data.transfer_samples} caps transfer text, but --transfer "
                                   "is not set: set --transfer or drop --transfer-samples"))
    return found


def check_transfer(config: TrainConfig, loaded: Any = None) -> Any:
    """Refuse bad transfer settings (all at once); with the loaded data, also load the transfer rows (a file that
    is empty or lacks the text column is refused here) and return them (transfer.TransferText, None if unset)."""
    problems = transfer_problems(config)
    if problems:
        raise SettingsError(problems)
    if loaded is None:
        return None
    from .transfer import load_transfer

    return load_transfer(config.data, config.seed, loaded)


def check_run(config: TrainConfig) -> dict[str, Any]:
    """Every check cheap enough to run before a run exists; raises UserError on bad input.

    Validates the config, checks the model specs and loads the data (a Hub dataset only needs the Hub to
    answer). Returns provenance facts for config.json.
    """
    from .data import load_data, resolve_local

    config.validate()
    check_specs(config)
    check_transfer(config)
    source = config.data.source
    if resolve_local(source) is None:
        if not specs.is_hub_id(source):
            raise UserError(f"data source {source!r} does not exist: pick a local dataset, upload a file or give a "
                            "Hub dataset id")
        hub.require_hub(f"dataset {source}")
        return {"data": f"hub:{source}"}
    loaded = load_data(config.data, config.seed)
    check_models_fit(config, loaded.label_names)
    transfer = check_transfer(config, loaded)
    return {"data": loaded.description, "label_names": loaded.label_names,
            "split_sizes": {name: len(split) for name, split in loaded.splits.items()},
            **({"transfer": transfer.record()} if transfer is not None else {})}


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

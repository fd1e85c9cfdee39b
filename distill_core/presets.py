"""Named recipes as data beside the config: the Train page's preset picker and the CLI's ``--preset`` read these.

A preset sets TrainConfig / DataConfig fields (and, for a pipeline, how to make the teacher); whatever it leaves
out keeps its default. Each one names where its settings come from.

Two kinds: a *recipe* is a whole run (data, teacher, student, hyperparameters); a *method* sets only how the
student learns (T, alpha, the KD loss, the intermediate-layer terms and their layer map) and keeps the user's data,
teacher and student, so one method can be tried on any pair of models.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .specs import SEED_STUDENT, SEED_TEACHER

OFFLINE_BASE = "bundled:minilm-l6"


@dataclass(frozen=True)
class TeacherStage:
    """How a pipeline makes its teacher: fine-tune ``base`` on the same data first."""
    base: str
    epochs: int
    lr: float


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str                      # one line for the picker's help and `--help`
    source: str                       # where the recipe comes from
    data_source: str | None           # a Hub dataset id, or None: the user picks local data
    teacher: str | None               # teacher spec; None when a teacher stage makes it (or a method keeps it)
    student: str | None               # None: a method preset keeps the user's student
    train: dict[str, Any] = field(default_factory=dict)   # TrainConfig fields
    data: dict[str, Any] = field(default_factory=dict)    # DataConfig fields besides the source
    teacher_stage: TeacherStage | None = None
    kind: str = "recipe"              # "recipe": a whole run; "method": loss settings only (METHOD_FIELDS)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        name="Offline quick start",
        summary="fine-tune the bundled MiniLM on 400 AG News rows, then distil it into 3 of its layers "
                "(a few minutes on CPU, no Hub needed)",
        source="KD Studio's offline smoke recipe: DistilBERT-style truncation (Sanh et al., 2019) of all-MiniLM-L6",
        data_source=None, teacher=None, student="truncate:3",
        train={"epochs": 2, "lr": 1e-4, "batch_size": 32, "optimizer": "adamw", "dropout": 0.1, "patience": None,
               "log_every_steps": 2, "temperature": 2.0, "alpha": 0.5, "kd_loss": "kl", "max_steps": None},
        data={"train_samples": 400, "eval_samples": 200, "max_length": 128},
        teacher_stage=TeacherStage(base=OFFLINE_BASE, epochs=2, lr=1e-4),
    ),
    Preset(
        name="Seed recipe",
        summary="the original article's setup: BERT-base AG News teacher -> Google's L-10 H-256 student (needs "
                "the Hub)",
        source="the seed article (Hinton et al., 2015 loss; T=2, alpha=0.5, Adam lr 2e-5, 5 epochs, batch 64)",
        data_source="ag_news", teacher=SEED_TEACHER, student=SEED_STUDENT,
        # The article kept BERT's own attention dropout (0.1).
        train={"epochs": 5, "lr": 2e-5, "batch_size": 64, "optimizer": "adam", "dropout": 0.3, "patience": None,
               "log_every_steps": 10, "temperature": 2.0, "alpha": 0.5, "kd_loss": "kl", "max_steps": None,
               "attention_dropout": None},
        data={"train_samples": None, "eval_samples": None, "max_length": 150},
    ),
)}


# What a method preset sets: every one of these, so switching methods never leaves a term of the last one on.
METHOD_FIELDS = ("temperature", "alpha", "kd_loss", "hidden_weight", "attention_weight", "cosine_weight", "layer_map")
# The total loss is alpha*CE + (1 - alpha)*KD + hidden_weight*hidden + attention_weight*attention
# + cosine_weight*cosine (KD = T^2 * KL(teacher || student) for kd_loss "kl"); each method below maps its paper's
# weights onto these terms, and says what it adapts.
NO_LAYER_TERMS = {"kd_loss": "kl", "hidden_weight": 0.0, "attention_weight": 0.0, "cosine_weight": 0.0,
                  "layer_map": ""}


def _method(name: str, summary: str, source: str, **terms: Any) -> Preset:
    """A method preset: the given loss terms over NO_LAYER_TERMS, so it sets every METHOD_FIELDS entry."""
    merged = {**NO_LAYER_TERMS, **terms}
    if set(merged) != set(METHOD_FIELDS):  # a typo here would silently leave a field to the last method
        raise ValueError(f"method preset {name!r} sets {sorted(merged)}, not exactly {METHOD_FIELDS}")
    train = {field_name: merged[field_name] for field_name in METHOD_FIELDS}
    return Preset(name=name, summary=summary, source=source, data_source=None, teacher=None, student=None,
                  kind="method", train=train)


METHOD_PRESETS: dict[str, Preset] = {p.name: p for p in (
    _method(
        name="DistilBERT-style",
        summary="soft-target KD + a cosine loss on the last hidden states (T=2; KD, labels and cosine weighted "
                "about 5:2:1 as the paper weighs soft targets, MLM and cosine; the teacher runs on every batch); "
                "pair it with a truncate:N student, which starts from evenly spaced teacher layers as "
                "DistilBERT's took one layer out of two",
        source="Sanh et al. 2019, DistilBERT, arXiv:1910.01108: triple loss 5*L_ce(soft targets, T=2) + 2*L_mlm + "
               "1*L_cos(hidden states), student initialised from one teacher layer out of two. Adapted: the "
               "masked-LM term becomes the label CE of this classification task, and the distillation is task-"
               "specific (the paper distils during pre-training)",
        # (1 - alpha) : alpha : cosine = 0.71 : 0.29 : 0.14, the paper's 5 : 2 : 1.
        temperature=2.0, alpha=0.29, cosine_weight=0.14,
    ),
    _method(
        name="TinyBERT-style (layers)",
        summary="hidden-state MSE + attention KL on every student layer, matched to evenly spaced teacher layers, "
                "with prediction-layer KD at T=1 and no label term (the teacher runs on every batch: slower); "
                "the paper's task distillation used lr 5e-5 (layers) then 3e-5 (predictions)",
        source="Jiao et al. 2020, TinyBERT, arXiv:1909.10351: task-specific distillation with hidden-state MSE and "
               "attention MSE per mapped layer (uniform map g(m) = m*N/M), then prediction-layer soft CE at T=1. "
               "Adapted: one stage with every term at once (the paper runs the layer stage first), attention "
               "compared as distributions with KL (MiniLM, Wang et al. 2020) rather than MSE on raw scores, the "
               "evenly spaced default map for the uniform one (type 2,4,6 as the layer map for the paper's map of 3 "
               "student layers onto 6), no embedding-layer term and no data augmentation (use transfer text)",
        temperature=1.0, alpha=0.0, hidden_weight=1.0, attention_weight=1.0,
    ),
    _method(
        name="Logits only (Hinton)",
        summary="classic knowledge distillation: T^2-scaled KL to the teacher's softened outputs at T=4 plus a "
                "small weight (0.1) on the labels; no intermediate layers",
        source="Hinton, Vinyals & Dean 2015, Distilling the Knowledge in a Neural Network, arXiv:1503.02531: "
               "soft targets at a raised temperature, gradients scaled by T^2, and 'a considerably lower weight' on "
               "the hard-label term. T=4 and alpha=0.1 are our picks inside the paper's range (it used T from 2 "
               "to 20, lower for smaller students)",
        temperature=4.0, alpha=0.1,
    ),
)}
PRESETS.update(METHOD_PRESETS)


def get_preset(name: str) -> Preset:
    from .errors import UserError

    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}: use one of {', '.join(repr(n) for n in PRESETS)}")
    return PRESETS[name]

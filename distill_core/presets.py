"""Named recipes as data beside the config: the Train page's preset picker and the CLI's ``--preset`` read these.

A preset sets TrainConfig / DataConfig fields (and, for a pipeline, how to make the teacher); whatever it leaves
out keeps its default. Each one names where its settings come from.
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
    teacher: str | None               # teacher spec; None when a teacher stage makes it
    student: str
    train: dict[str, Any] = field(default_factory=dict)   # TrainConfig fields
    data: dict[str, Any] = field(default_factory=dict)    # DataConfig fields besides the source
    teacher_stage: TeacherStage | None = None


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
        train={"epochs": 5, "lr": 2e-5, "batch_size": 64, "optimizer": "adam", "dropout": 0.3, "patience": None,
               "log_every_steps": 10, "temperature": 2.0, "alpha": 0.5, "kd_loss": "kl", "max_steps": None},
        data={"train_samples": None, "eval_samples": None, "max_length": 150},
    ),
)}


def get_preset(name: str) -> Preset:
    from .errors import UserError

    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}: use one of {', '.join(repr(n) for n in PRESETS)}")
    return PRESETS[name]

"""What one training batch is scored on: labels, the teacher's logits and, when asked, its intermediate layers.

``batch_loss`` is the per-batch objective of every run (loop.py calls it)::

    total = alpha * CE + (1 - alpha) * KD + hidden_weight * HIDDEN + attention_weight * ATTENTION
            + cosine_weight * COSINE

CE is on the gold labels (losses.py), KD on the teacher's logits (losses.KD_LOSSES: Hinton et al. 2015), and the
three layer terms are layer_losses.py's: hidden-state MSE and attention KL averaged over the mapped layer pairs
(``TrainConfig.layer_map``), and the cosine loss on the last hidden states. A fine-tune has no teacher: alpha is 1
and only CE is trained on.

Rows whose label is ``IGNORE_LABEL`` (-100, as in transformers) are unlabelled transfer text: CE averages over the
labelled rows of a batch only (0, never NaN, when it has none), while KD and the layer terms cover every row.
Nothing here turns a tensor into a Python number: a host sync per step would stall an accelerator's queue.
torch is imported where it is used: the estimate before Start and the pages read needs_teacher_forward.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config import TrainConfig

if TYPE_CHECKING:
    import torch
    from torch import Tensor

IGNORE_LABEL = -100  # transformers' and F.cross_entropy's mark of a row without a label
# The layer terms, their config weights and the names of their step/epoch rows.
LAYER_TERMS = {"hidden": "hidden_weight", "attention": "attention_weight", "cosine": "cosine_weight"}
TERMS = ("total", "ce", "kd", *LAYER_TERMS)
# Batch keys that are not model inputs (the collator adds them beside input_ids and attention_mask).
_NOT_INPUTS = ("labels", "teacher_logits")


def needs_teacher_forward(config: TrainConfig) -> bool:
    """True when a term needs the teacher's hidden states or attentions: too big to cache, so the teacher then
    runs on every training batch (under no_grad, in eval mode) instead of being read from the logit cache."""
    return config.mode == "distill" and any(
        weight > 0 for weight in (config.hidden_weight, config.attention_weight, config.cosine_weight))


def active_layer_terms(config: TrainConfig) -> tuple[str, ...]:
    """The layer terms a run trains on (weight > 0), in LAYER_TERMS order: the terms its rows log."""
    if config.mode != "distill":
        return ()
    return tuple(term for term, weight in LAYER_TERMS.items() if getattr(config, weight) > 0)


def needs_projection(config: TrainConfig, student_width: int, teacher_width: int) -> bool:
    """A learned projection is needed when a term compares hidden states of different widths."""
    compares_states = config.mode == "distill" and (config.hidden_weight > 0 or config.cosine_weight > 0)
    return compares_states and student_width != teacher_width


def make_projection(config: TrainConfig, student, teacher) -> torch.nn.Linear | None:
    """The learned linear map from the student's hidden width to the teacher's (TinyBERT's W_h, one for every
    layer pair), or None when none is needed. It trains with the student, is checkpointed with the run and is
    never part of the student's saved model."""
    if teacher is None:
        return None
    student_width, teacher_width = student.config.hidden_size, teacher.config.hidden_size
    if not needs_projection(config, student_width, teacher_width):
        return None
    import torch

    return torch.nn.Linear(student_width, teacher_width)


def ready_for_layer_terms(config: TrainConfig, student, teacher) -> None:
    """Set the two models up for the run's layer terms (call before the student is prepared).

    Attention KL needs the attention probabilities, and PyTorch's fused attention (sdpa, transformers' default)
    never materialises them: both models switch to the eager implementation for such runs (slower, the same
    maths). The student's attention dropout is switched off then too: dropped probabilities are zeros whose log
    is -inf, and the rescaled rows no longer sum to 1, so the KL would compare the teacher with noise. Hidden
    dropout stays as configured."""
    if "attention" not in active_layer_terms(config) or teacher is None:
        return
    import torch

    for model in (student, teacher):
        model.set_attn_implementation("eager")
    for name, module in student.named_modules():
        if name.endswith("attention.self") and isinstance(getattr(module, "dropout", None), torch.nn.Dropout):
            module.dropout.p = 0.0


@dataclass
class BatchLoss:
    """The loss of one batch: ``total`` is what backward() is called on; the other terms are unweighted, attached
    to the graph, and zero tensors when off. ``logits`` and ``labels`` give the training accuracy (labelled rows
    only) without another forward pass."""
    total: Tensor
    ce: Tensor
    kd: Tensor
    hidden: Tensor
    attention: Tensor
    cosine: Tensor
    logits: Tensor
    labels: Tensor


@functools.lru_cache(maxsize=32)
def _layer_map(text: str, n_student: int, n_teacher: int) -> tuple[int, ...]:
    from . import layer_losses

    return tuple(layer_losses.parse_layer_map(text, n_student, n_teacher))


def ce_over_labelled(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the rows that have a label; 0 for a batch of unlabelled rows only. (F.cross_entropy
    with ignore_index divides by the labelled count too, but gives 0/0 = NaN when it is 0.)"""
    import torch.nn.functional as F

    summed = F.cross_entropy(logits, labels, ignore_index=IGNORE_LABEL, reduction="sum")
    return summed / (labels != IGNORE_LABEL).sum().clamp_min(1)


def batch_loss(model, batch: dict[str, Tensor], teacher, projection, config: TrainConfig, *,
               autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext) -> BatchLoss:
    """Forward the student (and, for layer terms, the teacher) on ``batch`` and score it as the module docstring
    says. ``batch`` holds the model inputs, ``labels`` and, when distilling, cached ``teacher_logits``; it is not
    changed. ``autocast`` wraps the teacher's forward (the student's is wrapped by Accelerate already)."""
    import torch

    from .losses import KD_LOSSES

    labels = batch["labels"]
    inputs = {key: value for key, value in batch.items() if key not in _NOT_INPUTS}
    terms = active_layer_terms(config)
    wants_attention = "attention" in terms
    output_S = model(**inputs, output_hidden_states=bool(terms), output_attentions=wants_attention)
    logits = output_S.logits.float()
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    parts = dict.fromkeys(("kd", *LAYER_TERMS), zero)
    parts["ce"] = ce_over_labelled(logits, labels)
    distilling = config.mode == "distill"
    if distilling:
        output_T = None
        if terms:
            if teacher.training:  # teacher_cache or a caller may have left it in train mode: no dropout here
                teacher.eval()
            with torch.no_grad(), autocast():
                output_T = teacher(**inputs, output_hidden_states=True, output_attentions=wants_attention)
            teacher_logits = output_T.logits  # the cached logits, computed live: the teacher runs anyway
        else:
            teacher_logits = batch["teacher_logits"]
        parts["kd"] = KD_LOSSES[config.kd_loss](logits, teacher_logits, config.temperature)
        if output_T is not None:
            parts.update(_layer_parts(output_S, output_T, inputs, projection, config, terms))
    alpha = config.alpha if distilling else 1.0
    total = alpha * parts["ce"] + (1.0 - alpha) * parts["kd"]
    for term in terms:
        total = total + getattr(config, LAYER_TERMS[term]) * parts[term]
    return BatchLoss(total=total, ce=parts["ce"], kd=parts["kd"], hidden=parts["hidden"],
                     attention=parts["attention"], cosine=parts["cosine"], logits=logits, labels=labels)


def _layer_parts(output_S, output_T, inputs: dict[str, Tensor], projection, config: TrainConfig,
                 terms: tuple[str, ...]) -> dict[str, Tensor]:
    """The layer terms of one batch from the two models' outputs. hidden_states[0] is the embedding output, so
    student layer i (1-based) is hidden_states[i] and attentions[i - 1]."""
    import torch

    from . import layer_losses

    hidden_S, hidden_T = output_S.hidden_states, output_T.hidden_states
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones(hidden_S[0].shape[:2], dtype=torch.long, device=hidden_S[0].device)
    layer_map = _layer_map(config.layer_map, len(hidden_S) - 1, len(hidden_T) - 1)
    pairs = list(enumerate(layer_map, start=1))
    found: dict[str, Tensor] = {}
    # Averaged over the layer pairs (TinyBERT sums them): a weight then means the same for 2 or 6 student layers.
    if "hidden" in terms:
        found["hidden"] = torch.stack([layer_losses.hidden_mse(hidden_S[i], hidden_T[m], mask, projection)
                                       for i, m in pairs]).mean()
    if "attention" in terms:
        attn_S, attn_T = output_S.attentions, output_T.attentions
        found["attention"] = torch.stack([layer_losses.attention_kl(attn_S[i - 1], attn_T[m - 1], mask)
                                          for i, m in pairs]).mean()
    if "cosine" in terms:
        found["cosine"] = layer_losses.hidden_cosine(hidden_S[-1], hidden_T[-1], mask, projection)
    return found

"""Loss functions for fine-tuning and knowledge distillation (pure, torch only).

Naming follows TextBrewer: ``logits_S`` are the student's logits, ``logits_T`` the teacher's, both shaped
``[B, C]`` (batch, classes); ``labels`` are class indices shaped ``[B]``. Every function returns a scalar
tensor that is part of the autograd graph of the student logits, so each term really trains the student.

The KD objective is the one of Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural
Network", arXiv:1503.02531::

    total = alpha * CE(z_S, y) + (1 - alpha) * T^2 * KL(softmax(z_T / T) || softmax(z_S / T))

Teacher logits are always detached here, so a caller that forgets ``torch.no_grad()`` around the teacher
forward pass still cannot push gradients into the teacher.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distill_core.errors import UserError

__all__ = [
    "KD_LOSSES",
    "LossParts",
    "ce_loss",
    "distillation_loss",
    "kd_kl_loss",
    "kd_mse_loss",
]


@dataclass
class LossParts:
    """The loss of one batch, split into the parts that are logged.

    ``total`` is what ``backward()`` is called on; ``ce`` and ``kd`` are the unweighted terms (scalar tensors,
    attached to the graph) so that the run store can chart them separately.
    """

    total: Tensor  # alpha * ce + (1 - alpha) * kd, or ce alone when there is no teacher
    ce: Tensor  # cross-entropy against the gold labels
    kd: Tensor  # distillation term; a zero tensor when there is no teacher


def _upcast_half(logits: Tensor) -> Tensor:
    # bf16/fp16 logits from mixed precision lose the small log-probabilities in log_softmax; float64 stays.
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def ce_loss(logits_S: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of the student against the gold labels.

    ``CE = -(1/B) * sum_i log softmax(z_S[i])[y_i]``

    Args:
        logits_S: student logits, ``[B, C]``.
        labels: gold class indices, ``[B]`` (int64).

    Returns:
        Scalar tensor (nats). It is never turned into a Python float here: the seed article called
        ``.item()`` on this term, which silently removed it from the gradient.
    """
    return F.cross_entropy(_upcast_half(logits_S), labels)


def kd_kl_loss(logits_S: Tensor, logits_T: Tensor, temperature: float) -> Tensor:
    """Temperature-softened KL divergence from the teacher to the student, scaled by ``T^2``.

    ``KD = T^2 * (1/B) * sum_i KL(p_T[i] || p_S[i])`` with ``p_T = softmax(z_T / T)``,
    ``p_S = softmax(z_S / T)`` (Hinton et al. 2015, arXiv:1503.02531).

    The gradient of the unscaled KL with respect to ``z_S`` is ``(p_S - p_T) / (T * B)``, which shrinks
    roughly like ``1 / T^2`` as T grows; multiplying by ``T^2`` keeps the gradient magnitude comparable
    across temperatures, so alpha means the same thing at T=1 and T=8.

    Args:
        logits_S: student logits, ``[B, C]``.
        logits_T: teacher logits, ``[B, C]``; detached here.
        temperature: softening temperature ``T > 0``.

    Returns:
        Scalar tensor (nats), ``>= 0``, zero when the two logit rows give the same distribution.
    """
    logits_S = _upcast_half(logits_S)
    # Cached teacher logits may come back in another dtype than the student's; follow the student.
    logits_T = logits_T.detach().to(logits_S.dtype)
    log_probs_S = F.log_softmax(logits_S / temperature, dim=-1)
    log_probs_T = F.log_softmax(logits_T / temperature, dim=-1)
    # kl_div(input, target) computes KL(target || input): the student is the input, the teacher the target.
    # "batchmean" divides by B, which is the true KL per example; "mean" would also divide by C.
    kl = F.kl_div(log_probs_S, log_probs_T, reduction="batchmean", log_target=True)
    return kl * (temperature**2)


def kd_mse_loss(logits_S: Tensor, logits_T: Tensor, temperature: float = 1.0) -> Tensor:
    """Mean squared error between student and teacher logits.

    ``KD = (1/(B*C)) * sum_{i,c} (z_S[i,c] - z_T[i,c])^2``

    ``temperature`` is accepted so every entry of ``KD_LOSSES`` has the same signature, and is deliberately
    unused: dividing both logits by T and scaling by T^2 (as for KL) cancels out exactly. Matching logits
    directly is the high-temperature limit of the KL objective for zero-mean logits (Hinton et al. 2015,
    section 2.1).

    Args:
        logits_S: student logits, ``[B, C]``.
        logits_T: teacher logits, ``[B, C]``; detached here.
        temperature: ignored (see above).

    Returns:
        Scalar tensor (squared logit units).
    """
    del temperature
    logits_S = _upcast_half(logits_S)
    return F.mse_loss(logits_S, logits_T.detach().to(logits_S.dtype), reduction="mean")


KD_LOSSES: dict[str, Callable[[Tensor, Tensor, float], Tensor]] = {
    "kl": kd_kl_loss,
    "mse": kd_mse_loss,
}


def _validate_hyperparameters(alpha: float, temperature: float, kd: str) -> None:
    if not (isinstance(alpha, numbers.Real) and 0.0 <= alpha <= 1.0):
        raise UserError(f"alpha must be between 0 and 1 (weight of the CE term), got {alpha!r}; pick e.g. 0.5")
    if not (isinstance(temperature, numbers.Real) and math.isfinite(temperature) and temperature > 0):
        raise UserError(f"temperature must be a finite number > 0, got {temperature!r}; pick e.g. 2.0")
    if kd not in KD_LOSSES:
        raise UserError(f"unknown KD loss {kd!r}; choose one of {sorted(KD_LOSSES)}")


def _validate_shapes(logits_S: Tensor, labels: Tensor, logits_T: Tensor | None) -> None:
    if logits_S.dim() != 2:
        raise UserError(f"student logits must be [batch, classes], got shape {tuple(logits_S.shape)}")
    if labels.shape != logits_S.shape[:1]:
        raise UserError(
            f"labels must be [batch] = [{logits_S.shape[0]}], got shape {tuple(labels.shape)}; "
            "pass one class index per example"
        )
    if logits_T is not None and logits_T.shape != logits_S.shape:
        # Typically a teacher and student built with different label sets (the seed used 20 labels for 4).
        raise UserError(
            f"teacher logits have shape {tuple(logits_T.shape)} but student logits {tuple(logits_S.shape)}; "
            "teacher and student must have the same number of labels"
        )


def distillation_loss(
    logits_S: Tensor,
    labels: Tensor,
    logits_T: Tensor | None = None,
    *,
    alpha: float,
    temperature: float,
    kd: str = "kl",
) -> LossParts:
    """The training loss of one batch, for fine-tuning and for distillation.

    ``total = alpha * CE(z_S, y) + (1 - alpha) * KD(z_S, z_T)``, with KD chosen by ``kd`` from
    ``KD_LOSSES`` (``"kl"``: ``T^2 * KL(softmax(z_T/T) || softmax(z_S/T))``, Hinton et al. 2015,
    arXiv:1503.02531; ``"mse"``: MSE on logits).

    Without a teacher (``logits_T is None``, fine-tuning) the KD term is a zero tensor and
    ``total == CE`` whatever alpha is, so one training loop serves both modes.

    Args:
        logits_S: student logits, ``[B, C]``.
        labels: gold class indices, ``[B]``.
        logits_T: teacher logits, ``[B, C]``, or None; detached here, so no gradient reaches the teacher.
        alpha: weight of the CE term in ``[0, 1]``; ``1 - alpha`` weights the KD term.
        temperature: softening temperature ``T > 0`` (used by ``"kl"``).
        kd: key of ``KD_LOSSES``.

    Raises:
        UserError: alpha outside ``[0, 1]``, temperature not > 0, unknown ``kd``, or mismatched shapes.
    """
    _validate_hyperparameters(alpha, temperature, kd)
    _validate_shapes(logits_S, labels, logits_T)

    ce = ce_loss(logits_S, labels)
    if logits_T is None:
        kd_term = torch.zeros((), dtype=ce.dtype, device=ce.device)
        return LossParts(total=ce, ce=ce, kd=kd_term)

    kd_term = KD_LOSSES[kd](logits_S, logits_T, temperature)
    total = alpha * ce + (1.0 - alpha) * kd_term
    return LossParts(total=total, ce=ce, kd=kd_term)

"""Intermediate-layer distillation losses (pure, torch only) and the student -> teacher layer map.

Naming follows TextBrewer (``_S`` student, ``_T`` teacher). Shapes: ``hidden_*`` are one layer's hidden states
``[B, L, H]`` (batch, tokens, width; the student's width may differ from the teacher's when a ``projection`` maps
it), ``attn_*`` one layer's attention probabilities ``[B, A, L, L]`` (heads, query rows, key columns; each row sums
to 1 over the real keys), and ``mask`` the attention mask ``[B, L]`` (1 = real token, 0 = padding).

Every loss averages over real tokens only: padding is an artefact of batching, and counting it would make the
loss of a row depend on which rows it was batched with. Teacher tensors are detached here, so a caller that forgets
``torch.no_grad()`` around the teacher still cannot push gradients into it. Each returns a scalar tensor in the
student's autograd graph (and the projection's, when one is given).

Sources: TinyBERT (Jiao et al. 2020, arXiv:1909.10351) and Patient KD (Sun et al. 2019, arXiv:1908.09355) for
hidden-state MSE between mapped layers; TinyBERT and MiniLM (Wang et al. 2020, arXiv:2002.10957) for
self-attention distributions; DistilBERT (Sanh et al. 2019, arXiv:1910.01108) for the cosine loss.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .config import Problem, SettingsError, layer_map_syntax_problems

__all__ = [
    "attention_kl",
    "evenly_spaced_layer_map",
    "hidden_cosine",
    "hidden_mse",
    "layer_map_problems",
    "parse_layer_map",
]

# Attention probabilities of padded keys are exactly 0 (their scores are the dtype's minimum before the softmax);
# log(0) would turn 0 * log 0 into NaN in the forward and the backward pass, so the student's are clamped here.
_MIN_PROBABILITY = 1e-12

Projection = Callable[[Tensor], Tensor]


def _real_tokens(mask: Tensor, like: Tensor) -> Tensor:
    """The mask as ``like``'s float dtype, ``[B, L]``."""
    return mask.to(dtype=like.dtype, device=like.device)


def _float(tensor: Tensor) -> Tensor:
    # bf16/fp16 activations from mixed precision lose the small differences these losses are made of.
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def _check_tokens(name: str, student: Tensor, teacher: Tensor, mask: Tensor) -> None:
    if student.shape[:2] != teacher.shape[:2] or tuple(mask.shape) != tuple(student.shape[:2]):
        # Different tokenisations cannot be matched token by token (preflight refuses different vocabularies).
        raise ValueError(f"{name}: student {tuple(student.shape)}, teacher {tuple(teacher.shape)} and mask "
                         f"{tuple(mask.shape)} must share [batch, tokens]")


def hidden_mse(hidden_S: Tensor, hidden_T: Tensor, mask: Tensor, projection: Projection | None = None) -> Tensor:
    """Mean squared error between a student layer's hidden states and its mapped teacher layer's, over real tokens.

    ``MSE = sum_{b,t} m[b,t] * ||W h_S[b,t] - h_T[b,t]||^2 / (H_T * sum_{b,t} m[b,t])``

    TinyBERT's hidden-state loss (Jiao et al. 2020, eq. 8; PKD, Sun et al. 2019, matches the [CLS] state only):
    ``W`` is a learned linear map from the student's width to the teacher's (``projection``), needed when the
    widths differ.

    Args:
        hidden_S: student hidden states, ``[B, L, H_S]``.
        hidden_T: teacher hidden states, ``[B, L, H_T]``; detached here.
        mask: ``[B, L]``, 1 for real tokens.
        projection: maps ``[..., H_S] -> [..., H_T]``; None when ``H_S == H_T``.

    Returns:
        Scalar tensor (squared activation units per dimension), 0 when the projected states equal the teacher's.
    """
    _check_tokens("hidden_mse", hidden_S, hidden_T, mask)
    projected = projection(hidden_S) if projection is not None else hidden_S
    projected, target = _float(projected), _float(hidden_T.detach()).to(_float(projected).dtype)
    if projected.shape != target.shape:
        raise ValueError(f"hidden_mse: student width {hidden_S.shape[-1]} (after projection "
                         f"{projected.shape[-1]}) differs from the teacher's {target.shape[-1]}: pass a projection")
    real = _real_tokens(mask, projected)
    squared = ((projected - target) ** 2).sum(-1)  # [B, L]
    return (squared * real).sum() / (real.sum().clamp_min(1.0) * target.shape[-1])


def attention_kl(attn_S: Tensor, attn_T: Tensor, mask: Tensor) -> Tensor:
    """KL divergence of each teacher attention row to the student's, per head, averaged over real query rows.

    ``KL = sum_{b,a,q} m[b,q] * sum_k m[b,k] p_T[b,a,q,k] (log p_T[b,a,q,k] - log p_S[b,a,q,k])
    / (A * sum_{b,q} m[b,q])``

    MiniLM's self-attention distribution transfer (Wang et al. 2020, eq. 2; TinyBERT, Jiao et al. 2020, matches
    the same maps by MSE). A head of the student is matched to the head of the same index in the teacher, so both
    need the same number of heads (preflight refuses other pairs before a run exists).

    Args:
        attn_S: student attention probabilities, ``[B, A, L, L]``.
        attn_T: teacher attention probabilities, ``[B, A, L, L]``; detached here.
        mask: ``[B, L]``, 1 for real tokens (query rows and key columns alike).

    Returns:
        Scalar tensor (nats), ``>= 0``, zero when every real row of every head is the same distribution.
    """
    if attn_S.dim() != 4 or attn_S.shape != attn_T.shape:
        raise ValueError(f"attention_kl: student {tuple(attn_S.shape)} and teacher {tuple(attn_T.shape)} must both "
                         "be [batch, heads, tokens, tokens] with the same number of heads")
    batch, _, queries, keys = attn_S.shape
    if queries != keys or tuple(mask.shape) != (batch, keys):
        raise ValueError(f"attention_kl: maps {tuple(attn_S.shape)} must be [batch, heads, L, L] with the mask "
                         f"[batch, L], got mask {tuple(mask.shape)}")
    p_S = _float(attn_S)
    p_T = _float(attn_T.detach()).to(p_S.dtype)
    real = _real_tokens(mask, p_S)
    real_keys = real[:, None, None, :]  # [B, 1, 1, L]
    # xlogy gives 0 * log 0 = 0 for the teacher's own entropy term; the student's log is clamped (see above).
    per_key = torch.xlogy(p_T, p_T) - p_T * torch.log(p_S.clamp_min(_MIN_PROBABILITY))
    per_row = (per_key * real_keys).sum(-1)  # [B, A, L]
    real_queries = real[:, None, :]
    return (per_row * real_queries).sum() / (real.sum().clamp_min(1.0) * attn_S.shape[1])


def hidden_cosine(hidden_S: Tensor, hidden_T: Tensor, mask: Tensor, projection: Projection | None = None) -> Tensor:
    """One minus the cosine similarity of the student's and the teacher's last hidden states, over real tokens.

    ``COS = sum_{b,t} m[b,t] * (1 - cos(W h_S[b,t], h_T[b,t])) / sum_{b,t} m[b,t]``

    DistilBERT's cosine embedding loss (Sanh et al. 2019, section 3), which aligns the directions of the hidden
    state vectors; it needs equal widths or a learned projection ``W`` (``projection``).

    Args:
        hidden_S: student last-layer hidden states, ``[B, L, H_S]``.
        hidden_T: teacher last-layer hidden states, ``[B, L, H_T]``; detached here.
        mask: ``[B, L]``, 1 for real tokens.
        projection: maps ``[..., H_S] -> [..., H_T]``; None when ``H_S == H_T``.

    Returns:
        Scalar tensor in ``[0, 2]``, 0 when every real token's two vectors point the same way.
    """
    _check_tokens("hidden_cosine", hidden_S, hidden_T, mask)
    projected = _float(projection(hidden_S) if projection is not None else hidden_S)
    target = _float(hidden_T.detach()).to(projected.dtype)
    if projected.shape != target.shape:
        raise ValueError(f"hidden_cosine: student width {projected.shape[-1]} differs from the teacher's "
                         f"{target.shape[-1]}: pass a projection")
    real = _real_tokens(mask, projected)
    cosine = torch.nn.functional.cosine_similarity(projected, target, dim=-1, eps=1e-8)  # [B, L]
    return ((1.0 - cosine) * real).sum() / real.sum().clamp_min(1.0)


# ---- the layer map ---------------------------------------------------------------------------------------


def evenly_spaced_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """The teacher layer (1-based) each student layer learns from: TinyBERT's uniform map ``m(i) = ceil(i *
    n_T / n_S)``, so the last student layer always matches the last teacher layer (2 of 6 -> [3, 6]; 3 of 6 ->
    [2, 4, 6]; 4 of 6 -> [2, 3, 5, 6])."""
    if n_student < 1 or n_teacher < 1:
        raise ValueError(f"layer counts must be >= 1, got student {n_student} and teacher {n_teacher}")
    return [-(-i * n_teacher // n_student) for i in range(1, n_student + 1)]


def layer_map_problems(text: str, n_student: int, n_teacher: int) -> list[Problem]:
    """Every problem of layer map ``text`` for a student of ``n_student`` and a teacher of ``n_teacher`` layers."""
    found = layer_map_syntax_problems(text)
    if found or not text.strip():
        return found
    layers = [int(part) for part in text.split(",")]
    if len(layers) != n_student:
        example = ",".join(map(str, evenly_spaced_layer_map(n_student, n_teacher)))
        found.append(Problem(
            "layer_map", text, f"lists {len(layers)} teacher layers but the student has {_layers(n_student)}: give "
                               f"one per student layer, e.g. {example}",
            plain=f"--layer-map {text!r}: layer map: student has {_layers(n_student)} but "
                  f"{'1 teacher layer was' if len(layers) == 1 else f'{len(layers)} teacher layers were'} given: "
                  f"give one teacher layer per student layer, e.g. {example}"))
    outside = [layer for layer in layers if layer > n_teacher]
    if outside:
        which = ", ".join(map(str, outside))
        word = "layer" if len(outside) == 1 else "layers"
        found.append(Problem(
            "layer_map", text, f"names teacher {word} {which}, out of range 1..{n_teacher}",
            plain=f"--layer-map {text!r}: teacher {word} {which} {'is' if len(outside) == 1 else 'are'} out of "
                  f"range 1..{n_teacher} (the teacher has {n_teacher} layers)"))
    return found


def _layers(count: int) -> str:
    return f"{count} layer" if count == 1 else f"{count} layers"


def parse_layer_map(text: str, n_student: int, n_teacher: int) -> list[int]:
    """The teacher layer (1-based) for each student layer: ``text`` ("2,4,6"), or evenly spaced when empty.

    Raises:
        SettingsError: every problem at once (not numbers, wrong count, a layer out of range).
    """
    problems = layer_map_problems(text, n_student, n_teacher)
    if problems:
        raise SettingsError(problems)
    if not text.strip():
        return evenly_spaced_layer_map(n_student, n_teacher)
    return [int(part) for part in text.split(",")]

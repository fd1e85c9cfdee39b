"""What one training batch is scored on: labels, the teacher's logits and, when asked, its intermediate layers.

(Issue 12 grows this module: the per-batch loss with intermediate-layer terms lives here, loop.py calls it.)
"""
from __future__ import annotations

from .config import TrainConfig


def needs_teacher_forward(config: TrainConfig) -> bool:
    """True when a term needs the teacher's hidden states or attentions: too big to cache, so the teacher then
    runs on every training batch (under no_grad, in eval mode) instead of being read from the logit cache."""
    return config.mode == "distill" and any(
        weight > 0 for weight in (config.hidden_weight, config.attention_weight, config.cosine_weight))

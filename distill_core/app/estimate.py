"""How long a run will take, told before Start: from a measured CPU throughput scaled by model size."""
from __future__ import annotations

import math

from .. import specs
from ..config import TrainConfig

# Training throughput measured for all-MiniLM-L6-v2 (6 layers x 384 hidden) at batch 32 on AG News on the
# 2-core development VM: ~26 samples/s. Cost per sample scales roughly with layers * hidden^2 (the dense
# layers dominate at these lengths); inference is ~3x cheaper than a training step (no backward pass).
REF_SAMPLES_PER_S, REF_LAYERS, REF_HIDDEN = 26.0, 6, 384
MAX_SAMPLES_PER_S = 600.0          # tiny models are bound by per-batch overheads, not by FLOPs
STARTUP_S = 20.0                   # worker start: imports, model loading, tokenisation


def train_samples_per_s(shape: tuple[int, int] | None) -> float:
    """Estimated training throughput on this class of CPU for a model of (layers, hidden)."""
    layers, hidden = shape or (12, 768)  # unknown: assume BERT-base, the pessimistic common case
    rate = REF_SAMPLES_PER_S * (REF_LAYERS * REF_HIDDEN ** 2) / max(layers * hidden ** 2, 1)
    return min(rate, MAX_SAMPLES_PER_S)


def split_sizes(config: TrainConfig, train_rows: int | None, test_rows: int | None) -> tuple[int, int, int] | None:
    """(train, validation, test) rows a config will use, from the source's row counts."""
    if train_rows is None:
        return None
    data = config.data
    if test_rows is None:  # a single file: the test split is carved first
        test_rows = round(train_rows * data.test_fraction)
        train_rows -= test_rows
    valid = round(train_rows * data.valid_fraction)
    train = train_rows - valid
    if data.train_samples:
        train = min(train, data.train_samples)
    if data.eval_samples:
        valid, test_rows = min(valid, data.eval_samples), min(test_rows, data.eval_samples)
    return train, valid, test_rows


def estimate_seconds(config: TrainConfig, sizes: tuple[int, int, int]) -> float:
    """Rough wall time of a run: training epochs, validation each epoch, test evaluation, teacher logits."""
    train, valid, test = sizes
    student_rate = train_samples_per_s(specs.model_shape(config.student, config.teacher))
    examples = train * config.epochs
    if config.max_steps:
        examples = min(examples, config.max_steps * config.batch_size)
    seconds = STARTUP_S + examples / student_rate + (valid * config.epochs + test) / (3 * student_rate)
    if config.mode == "distill" and config.teacher:
        seconds += (train + test) / (3 * train_samples_per_s(specs.model_shape(config.teacher)))
    return seconds


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = max(round(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"

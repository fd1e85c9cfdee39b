"""Predictions and metrics: logits over a tokenized split, accuracy, macro-F1, per-class P/R/F1, confusion
matrix, teacher-student agreement and calibration (ECE).

Metric functions are pure numpy and return plain Python numbers, so their output goes straight into
``eval.json`` and the UI without conversion.
"""
from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from distill_core import allocator
from distill_core.errors import UserError

__all__ = [
    "MODEL_INPUT_COLUMNS",
    "classification_metrics",
    "expected_calibration_error",
    "predict_logits",
    "softmax_np",
]

# Columns a sequence classifier reads; everything else in a tokenized split (text, label, example_id) is
# dropped before batching, so the collator never sees strings and the model never computes a loss.
MODEL_INPUT_COLUMNS: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")

ProgressCallback = Callable[[int, int], None]


# ---- predictions -------------------------------------------------------------------------------------


def _model_device(model) -> Any:
    device = getattr(model, "device", None)
    if device is not None:
        return device
    try:
        return next(model.parameters()).device
    except StopIteration:
        return "cpu"


def _input_columns(model, dataset) -> list[str]:
    present = [name for name in MODEL_INPUT_COLUMNS if name in dataset.column_names]
    if "input_ids" not in present:
        raise UserError(
            f"dataset has no input_ids column (columns: {dataset.column_names}); tokenize it first "
            "(batching.tokenize_splits)"
        )
    parameters = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return present
    # DistilBERT-like models reject token_type_ids, which a teacher's tokenizer may still have produced.
    return [name for name in present if name in parameters]


def predict_logits(
    model,
    dataset,
    collator,
    *,
    batch_size: int = 128,
    on_progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Logits of ``model`` for every row of a tokenized ``datasets.Dataset``, in dataset order.

    Only the model's input columns are batched; the collator pads each batch to its own longest row
    (dynamic padding), and batches are moved to the model's device. The model runs in eval mode under
    ``torch.inference_mode()``; its previous train/eval mode is restored afterwards so a training loop can
    call this for validation mid-epoch.

    Args:
        model: a sequence classifier returning ``.logits`` of shape ``[batch, C]``.
        dataset: tokenized ``datasets.Dataset`` with at least ``input_ids``.
        collator: e.g. ``DataCollatorWithPadding``; turns a list of rows into a dict of tensors.
        batch_size: rows per forward pass.
        on_progress: called as ``on_progress(done_rows, total_rows)`` after every batch.

    Returns:
        float32 array ``[N, C]``; row ``i`` belongs to ``dataset[i]``.
    """
    from torch.utils.data import DataLoader

    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    columns = _input_columns(model, dataset)
    total_rows = len(dataset)
    num_labels = int(getattr(getattr(model, "config", None), "num_labels", 0) or 0)
    if total_rows == 0:
        return np.zeros((0, num_labels), dtype=np.float32)

    # Python-format rows: a torch format set by the caller would hand the collator pre-built tensors.
    rows = dataset.select_columns(columns).with_format(None)
    # Batches of similar length waste little on padding (measured 2.2x faster on AG News than dataset order);
    # the logits are put back in dataset order below, which keeps them aligned with cached teacher logits.
    lengths = np.fromiter((len(ids) for ids in rows["input_ids"]), dtype=np.int64, count=total_rows)
    order = np.argsort(-lengths, kind="stable")
    loader = DataLoader(rows, batch_size=batch_size, shuffle=False, collate_fn=collator, num_workers=0,
                        sampler=order.tolist())
    batches = _run_batches(model, loader, columns, total_rows, on_progress)
    allocator.release_free_heap()  # inference batches are a run's largest tensors: their pages go back now
    logits_sorted = np.concatenate(batches, axis=0).astype(np.float32, copy=False)
    logits_in_order = np.empty_like(logits_sorted)
    logits_in_order[order] = logits_sorted
    return logits_in_order


def _run_batches(model, loader, columns: list[str], total_rows: int,
                 on_progress: ProgressCallback | None) -> list[np.ndarray]:
    """float32 logits of every batch of ``loader``, in loader order; the model's train/eval mode is restored."""
    import torch

    device = _model_device(model)
    was_training = model.training
    model.eval()
    batches: list[np.ndarray] = []
    done_rows = 0
    try:
        with torch.inference_mode():
            for batch in loader:
                batch = {name: tensor.to(device) for name, tensor in batch.items() if name in columns}
                outputs = model(**batch)
                logits = outputs.logits if hasattr(outputs, "logits") else outputs[0]
                batches.append(logits.float().cpu().numpy())
                done_rows += logits.shape[0]
                if on_progress is not None:
                    on_progress(done_rows, total_rows)
    finally:
        model.train(was_training)
    return batches


def softmax_np(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)`` over the last axis, numerically stable, float64."""
    if not temperature > 0:
        raise UserError(f"temperature must be > 0, got {temperature!r}")
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    # Subtracting the row max avoids overflow in exp without changing the result.
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


# ---- metrics -----------------------------------------------------------------------------------------


def _as_class_indices(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise UserError(f"{name} must be a 1-D sequence of class indices, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer) and not np.all(np.equal(np.mod(array, 1), 0)):
        raise UserError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence (Guo et al. 2017, arXiv:1706.04599).

    ``ECE = sum_b (n_b / N) * |accuracy_b - mean_confidence_b|`` over ``n_bins`` equal-width bins
    ``((b-1)/n_bins, b/n_bins]`` of the confidence ``max_c probs[i, c]``; the prediction is the argmax.

    Args:
        probs: class probabilities ``[N, C]`` (rows sum to 1).
        labels: gold class indices ``[N]``.
        n_bins: number of equal-width confidence bins.

    Returns:
        ECE in ``[0, 1]`` as a Python float (0 is perfectly calibrated).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = _as_class_indices(labels, "labels")
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise UserError(f"probs must be [N, C] with N = len(labels) = {labels.shape[0]}, got shape {probs.shape}")
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise UserError(f"n_bins must be a positive integer, got {n_bins!r}")
    if probs.shape[0] == 0:
        raise UserError("cannot compute a calibration error on 0 examples; evaluate on a non-empty split")

    confidences = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    # side="left" puts a confidence equal to an edge in the lower bin: bins are (lo, hi], as in Guo et al.
    bin_index = np.searchsorted(inner_edges, confidences, side="left")

    bin_counts = np.bincount(bin_index, minlength=n_bins)
    correct_sum = np.bincount(bin_index, weights=correct, minlength=n_bins)
    confidence_sum = np.bincount(bin_index, weights=confidences, minlength=n_bins)
    occupied = bin_counts > 0
    gaps = np.abs(correct_sum[occupied] - confidence_sum[occupied]) / bin_counts[occupied]
    return float(np.sum(gaps * bin_counts[occupied]) / probs.shape[0])


def _confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    flat = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _safe_ratio(numerator: float, denominator: float) -> float:
    # zero_division=0, as in scikit-learn: a class never predicted (or never present) scores 0, not NaN.
    return float(numerator / denominator) if denominator else 0.0


def _checked_predictions(labels, preds, label_names: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The label names as strings and labels and preds as int64 arrays, after checking that they fit together."""
    label_names = [str(name) for name in label_names]
    num_classes = len(label_names)
    if num_classes == 0:
        raise UserError("label_names is empty; pass one name per class")
    if len(set(label_names)) != num_classes:
        raise UserError(f"label_names must be unique, got {label_names}")
    labels = _as_class_indices(labels, "labels")
    preds = _as_class_indices(preds, "preds")
    if labels.shape != preds.shape:
        raise UserError(f"labels and preds must have the same length, got {labels.shape[0]} and {preds.shape[0]}")
    if labels.shape[0] == 0:
        raise UserError("cannot compute metrics on 0 examples; evaluate on a non-empty split")
    for name, values in (("labels", labels), ("preds", preds)):
        if values.min() < 0 or values.max() >= num_classes:
            bad = int(values[(values < 0) | (values >= num_classes)][0])
            raise UserError(
                f"{name} holds class index {bad}, outside 0..{num_classes - 1} for label_names {label_names}; "
                "check that the model and the data use the same label set"
            )
    return label_names, labels, preds


def _per_class_scores(confusion: np.ndarray, label_names: list[str]) -> dict[str, dict[str, float | int]]:
    true_positives = np.diag(confusion)
    support = confusion.sum(axis=1)  # rows are the true class
    predicted = confusion.sum(axis=0)
    per_class: dict[str, dict[str, float | int]] = {}
    for index, name in enumerate(label_names):
        precision = _safe_ratio(true_positives[index], predicted[index])
        recall = _safe_ratio(true_positives[index], support[index])
        f1 = _safe_ratio(2 * precision * recall, precision + recall)
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(support[index])}
    return per_class


def classification_metrics(
    labels: Sequence[int] | np.ndarray,
    preds: Sequence[int] | np.ndarray,
    label_names: Sequence[str],
    *,
    probs: np.ndarray | None = None,
    reference_preds: Sequence[int] | np.ndarray | None = None,
) -> dict:
    """Metrics of one model on one split, as plain JSON-serialisable Python values.

    Accuracy is ``correct / N`` over all examples (not a mean of batch means). Macro-F1 averages the F1 of
    every class in ``label_names``, including classes absent from ``labels`` (their F1 is 0, as with
    scikit-learn's ``zero_division=0``).

    Args:
        labels: gold class indices ``[N]``.
        preds: predicted class indices ``[N]``.
        label_names: one name per class index.
        probs: optional class probabilities ``[N, C]``; adds ``"ece"``.
        reference_preds: optional predictions of a reference model (the teacher) ``[N]``; adds
            ``"agreement"``, the fraction of examples where both models predict the same class.

    Returns:
        ``{"n_examples", "accuracy", "macro_f1", "per_class": {name: {"precision", "recall", "f1",
        "support"}}, "confusion_matrix" (rows = true, cols = predicted), "label_names"[, "ece"][,
        "agreement"]}``.
    """
    label_names, labels, preds = _checked_predictions(labels, preds, label_names)
    n_examples, num_classes = int(labels.shape[0]), len(label_names)
    confusion = _confusion_matrix(labels, preds, num_classes)
    per_class = _per_class_scores(confusion, label_names)
    metrics: dict[str, Any] = {
        "n_examples": n_examples,
        "accuracy": float(np.diag(confusion).sum() / n_examples),
        "macro_f1": float(np.mean([scores["f1"] for scores in per_class.values()])),
        "per_class": per_class,
        "confusion_matrix": confusion.astype(int).tolist(),
        "label_names": label_names,
    }
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (n_examples, num_classes):
            raise UserError(f"probs must have shape ({n_examples}, {num_classes}), got {probs.shape}")
        metrics["ece"] = expected_calibration_error(probs, labels)
    if reference_preds is not None:
        reference_preds = _as_class_indices(reference_preds, "reference_preds")
        if reference_preds.shape != preds.shape:
            raise UserError(
                f"reference_preds must have {n_examples} entries like preds, got {reference_preds.shape[0]}"
            )
        metrics["agreement"] = float(np.mean(reference_preds == preds))
    return metrics


def prediction_record(label_names: list[str], texts: list[str], labels, student_logits: np.ndarray,
                      teacher_logits: np.ndarray | None = None) -> dict:
    """Per-example predictions and confidences of a student (and its teacher): what Compare browses.

    Written once per finished run (predictions.json), so the dashboard never re-runs a model to show them.
    """
    student_probs = softmax_np(student_logits)
    record = {"version": 1, "label_names": list(label_names), "text": list(texts),
              "label": [int(x) for x in labels], "student_pred": student_probs.argmax(-1).tolist(),
              "student_conf": np.round(student_probs.max(-1), 4).tolist()}
    if teacher_logits is not None:
        teacher_probs = softmax_np(teacher_logits)
        record["teacher_pred"] = teacher_probs.argmax(-1).tolist()
        record["teacher_conf"] = np.round(teacher_probs.max(-1), 4).tolist()
    return record

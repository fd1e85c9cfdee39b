"""The test report of a finished run: its saved best model scored on every test row, beside the teacher's logits
(a distillation), with their agreement -> eval.json and predictions.json. train.fit calls it last."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import runs, storage, teacher_cache
from .batching import Collator, tokenize_splits

if TYPE_CHECKING:
    from .train import EventHandler, Prepared


def evaluate_run(prepared: Prepared, run_dir: Path, on_event: EventHandler) -> dict[str, Any]:
    """Test metrics of the saved best model, the teacher's, and their agreement -> eval.json."""
    from transformers import AutoModelForSequenceClassification

    from .evaluate import classification_metrics, predict_logits, prediction_record, softmax_np

    test = prepared.data.splits["test"]
    model = AutoModelForSequenceClassification.from_pretrained(runs.model_dir(run_dir), use_safetensors=True)
    tokenized = tokenize_splits(prepared.data, prepared.tokenizer, prepared.config.data.max_length)["test"]
    labels = np.asarray(test["label"])
    logits = predict_logits(model, tokenized, Collator.for_fp32_pass(prepared.tokenizer, prepared.config),
                            batch_size=prepared.config.eval_batch_size,
                            on_progress=lambda d, t: on_event({"kind": "eval_progress", "done": d, "total": t}))
    preds = logits.argmax(-1)
    report: dict[str, Any] = {"split": "test", "label_names": prepared.data.label_names}
    teacher_logits = teacher_preds = None
    if prepared.teacher_key is not None:  # a distillation (its teacher may have been released after caching)
        teacher_logits = teacher_cache.logits_for(prepared, "test", on_event)
        teacher_preds = teacher_logits.argmax(-1)
        report["teacher"] = classification_metrics(labels, teacher_preds, prepared.data.label_names,
                                                   probs=softmax_np(teacher_logits))
        report["teacher"]["spec"] = prepared.config.teacher
    report["student"] = classification_metrics(labels, preds, prepared.data.label_names,
                                               probs=softmax_np(logits), reference_preds=teacher_preds)
    report["student"]["spec"] = prepared.config.student
    if teacher_preds is not None:
        report["accuracy_retained"] = report["student"]["accuracy"] / max(report["teacher"]["accuracy"], 1e-12)
    storage.write_json_atomic(run_dir / runs.PREDICTIONS_FILE, prediction_record(
        prepared.data.label_names, test["text"], labels, logits, teacher_logits))
    storage.write_json_atomic(runs.eval_path(run_dir), report)
    return report

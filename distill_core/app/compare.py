"""Runs side by side: the comparison table, and per-example test predictions of a student and its teacher."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import runs, specs, storage, teacher_cache
from ..config import DataConfig
from ..errors import UserError


def _latency_ms(run_dir: Path) -> float | None:
    """Batch-1 fp32 p50 latency of the run's model from its bench.json (shortest length measured)."""
    rows = storage.read_json(run_dir / runs.BENCH_FILE)
    if not isinstance(rows, list):
        return None
    candidates = [r for r in rows if isinstance(r, dict) and r.get("batch_size") == 1
                  and r.get("precision") == "fp32" and isinstance(r.get("latency_ms_p50"), (int, float))]
    return min(candidates, key=lambda r: r.get("seq_len", 0))["latency_ms_p50"] if candidates else None


def _row(model: str, role: str, spec: Any, facts: dict, metrics: dict, latency_ms: float | None,
         agreement: Any) -> dict[str, Any]:
    return {"model": model, "role": role, "spec": spec, "parameters": facts["parameters"],
            "size_mb": facts["size_mb"], "test_accuracy": metrics.get("accuracy"),
            "macro_f1": metrics.get("macro_f1"), "agreement": agreement, "ece": metrics.get("ece"),
            "latency_ms_b1": latency_ms, "n_test": metrics.get("n_examples")}


def comparison_rows(root: Path, run_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per selected run's model, plus one per distinct teacher, for the Compare table."""
    root = Path(root).resolve()
    table: list[dict[str, Any]] = []
    teachers_seen: set[str] = set()
    for name in run_names:
        run_dir = runs.resolve_run_dir(root, name)
        config = storage.read_json(run_dir / runs.CONFIG_FILE, {}) or {}
        evaluation = storage.read_json(runs.eval_path(run_dir), {}) or {}
        student = evaluation.get("student") or {}
        role = "student" if config.get("mode") == "distill" else "fine-tuned"
        table.append(_row(f"run {name}", role, config.get("student"), specs.model_facts(str(run_dir)), student,
                          _latency_ms(run_dir), student.get("agreement")))
        teacher, teacher_spec = evaluation.get("teacher"), config.get("teacher")
        if isinstance(teacher, dict) and teacher_spec and teacher_spec not in teachers_seen:
            teachers_seen.add(teacher_spec)
            teacher_dir = specs.model_folder(Path(teacher_spec))
            table.append(_row(f"teacher of {name}", "teacher", specs.spec_label(teacher_spec, root),
                              specs.model_facts(teacher_spec), teacher,
                              _latency_ms(teacher_dir.parent) if teacher_dir else None, 1.0))
    return table


def _predict(spec: str, data, config: DataConfig, label_names: list[str]):
    from ..batching import Collator, tokenize_splits
    from ..evaluate import predict_logits
    from ..inference import load_for_inference

    loaded = load_for_inference(spec, "fp32", label_names=label_names)
    tokenized = tokenize_splits(data, loaded.tokenizer, config.max_length)["test"]
    return predict_logits(loaded.model, tokenized, Collator(loaded.tokenizer), batch_size=128)


def _cached_teacher_logits(spec: str, ids: list[str], max_length: int):
    """Teacher logits from the cache the training run filled, if complete (None for Hub teachers: their
    fingerprint needs the loaded model, so they are computed instead)."""
    from .. import models

    try:
        if specs.parse_spec(spec).kind not in ("local", "bundled"):
            return None
        key = models.model_fingerprint(None, spec)
    except UserError:
        return None
    return teacher_cache.lookup(key, ids, max_length)


def run_predictions(run_dir: Path) -> dict[str, Any]:
    """Per-example test predictions of a run's student (and its teacher), from the run's predictions.json.

    Runs finished by a current worker already have the file; for older runs it is computed once here (one
    student pass over the test split; teacher logits from the training run's cache when they are there) and
    written to the run folder through storage.write_json_atomic.
    """
    from ..config import train_config_from_dict
    from ..data import load_data
    from ..evaluate import prediction_record

    run_dir = Path(run_dir)
    cached = storage.read_json(run_dir / runs.PREDICTIONS_FILE)
    if isinstance(cached, dict) and cached.get("version") == 1:
        return cached
    if runs.read_status(run_dir).get("state") != "done":
        raise UserError(f"run {run_dir.name!r} has not finished: predictions need its final model")
    config = train_config_from_dict(storage.read_json(run_dir / runs.CONFIG_FILE, {}))
    data = load_data(config.data, config.seed)
    test = data.splits["test"]
    student_logits = _predict(str(run_dir), data, config.data, data.label_names)
    teacher_logits = None
    if config.mode == "distill" and config.teacher:
        teacher_logits = _cached_teacher_logits(config.teacher, list(test["example_id"]), config.data.max_length)
        if teacher_logits is None:
            teacher_logits = _predict(config.teacher, data, config.data, data.label_names)
    record = prediction_record(data.label_names, test["text"], test["label"], student_logits, teacher_logits)
    storage.write_json_atomic(run_dir / runs.PREDICTIONS_FILE, record)
    return record


def disagreements(predictions: dict[str, Any], *, only_wrong_student: bool = False) -> list[dict[str, Any]]:
    """Test examples where student and teacher predict different classes (rows for a table)."""
    names = predictions["label_names"]
    teacher = predictions.get("teacher_pred")
    if teacher is None:
        return []
    rows = []
    for i, (text, label, s, t) in enumerate(zip(predictions["text"], predictions["label"],
                                                predictions["student_pred"], teacher, strict=True)):
        if s == t or (only_wrong_student and s == label):
            continue
        rows.append({"#": i, "text": text, "true": names[label], "teacher": names[t],
                     "teacher_conf": predictions["teacher_conf"][i], "student": names[s],
                     "student_conf": predictions["student_conf"][i],
                     "who is right": "teacher" if t == label else "student" if s == label else "neither"})
    return rows

"""Runs side by side: the comparison table, and per-example test predictions of a student and its teacher."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import runs, specs, storage, teacher_cache
from ..config import DataConfig
from ..errors import UserError

BENCH_BATCHES = (1, 32)  # interactive latency, and a batch of offline scoring


def _bench_row(run_dir: Path | None, batch_size: int) -> dict | None:
    """The fp32 row at ``batch_size`` of the run's bench.json (shortest length measured), or None."""
    rows = storage.read_json(run_dir / runs.BENCH_FILE) if run_dir is not None else None
    if not isinstance(rows, list):
        return None
    candidates = [r for r in rows if isinstance(r, dict) and r.get("batch_size") == batch_size
                  and r.get("precision") == "fp32" and isinstance(r.get("latency_ms_p50"), (int, float))]
    return min(candidates, key=lambda r: r.get("seq_len", 0)) if candidates else None


def _speed(run_dir: Path | None) -> dict[str, Any]:
    """Latency p50/p95, throughput and length at batch 1 and 32 (None where not measured), from bench.json."""
    speed: dict[str, Any] = {}
    for batch in BENCH_BATCHES:
        row = _bench_row(run_dir, batch) or {}
        speed.update({f"latency_ms_b{batch}": row.get("latency_ms_p50"),
                      f"latency_ms_p95_b{batch}": row.get("latency_ms_p95"),
                      f"samples_per_s_b{batch}": row.get("samples_per_s"), f"seq_len_b{batch}": row.get("seq_len")})
        if row and "bench" not in speed:
            speed["bench"] = {k: row.get(k) for k in ("threads", "torch_version", "machine", "repeats", "warmup")}
    return speed


def _row(model: str, role: str, spec: Any, facts: dict, metrics: dict, bench_dir: Path | None,
         agreement: Any, baseline: str | None = None) -> dict[str, Any]:
    return {"model": model, "role": role, "spec": spec, "parameters": facts["parameters"],
            "size_mb": facts["size_mb"], "test_accuracy": metrics.get("accuracy"),
            "macro_f1": metrics.get("macro_f1"), "agreement": agreement, "ece": metrics.get("ece"),
            "n_test": metrics.get("n_examples"), **_speed(bench_dir), "baseline": baseline}


def comparison_rows(root: Path, run_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per selected run's model, plus one per distinct teacher, for the Compare table."""
    root = Path(root).resolve()
    table: list[dict[str, Any]] = []
    teacher_rows: dict[str, str] = {}  # teacher spec -> the model name of its row
    for name in run_names:
        run_dir = runs.resolve_run_dir(root, name)
        config = storage.read_json(run_dir / runs.CONFIG_FILE, {}) or {}
        evaluation = storage.read_json(runs.eval_path(run_dir), {}) or {}
        student = evaluation.get("student") or {}
        role = "student" if config.get("mode") == "distill" else "fine-tuned"
        teacher, teacher_spec = evaluation.get("teacher"), config.get("teacher")
        if isinstance(teacher, dict) and teacher_spec and teacher_spec not in teacher_rows:
            teacher_rows[teacher_spec] = f"teacher of {name}"
            teacher_dir = specs.model_folder(Path(teacher_spec))
            teacher_row = _row(f"teacher of {name}", "teacher", specs.spec_label(teacher_spec, root),
                               specs.model_facts(teacher_spec), teacher,
                               teacher_dir.parent if teacher_dir else None, 1.0)
        else:
            teacher_row = None
        table.append(_row(f"run {name}", role, config.get("student"), specs.model_facts(str(run_dir)), student,
                          run_dir, student.get("agreement"), teacher_rows.get(str(teacher_spec)) if teacher else None))
        if teacher_row:
            table.append(teacher_row)
    return table


def _ratio(numerator: Any, denominator: Any) -> float | None:
    ok = all(isinstance(v, (int, float)) and v > 0 for v in (numerator, denominator))
    return float(numerator) / float(denominator) if ok else None


def trade_offs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each student gains and loses against its teacher, from comparison_rows: speed-up at batch 1 and 32
    (latency ratio at the same length; None where not measured), times smaller on disk, share of the teacher's
    accuracy kept. Compare's table and the stakeholder report both show exactly these values."""
    by_name = {row["model"]: row for row in rows}
    result = []
    for row in rows:
        teacher = by_name.get(row.get("baseline") or "")
        if teacher is None:
            continue
        speedups = {}
        for batch in BENCH_BATCHES:
            same_length = row.get(f"seq_len_b{batch}") == teacher.get(f"seq_len_b{batch}")
            speedups[f"speedup_b{batch}"] = (_ratio(teacher.get(f"latency_ms_b{batch}"),
                                                    row.get(f"latency_ms_b{batch}")) if same_length else None)
        result.append({"model": row["model"], "baseline": teacher["model"], **speedups,
                       "smaller": _ratio(teacher.get("size_mb"), row.get("size_mb")),
                       "accuracy_kept": _ratio(row.get("test_accuracy"), teacher.get("test_accuracy"))})
    return result


def _times(value: float) -> str:
    return f"{value:.1f}×"


def headline(trade: dict[str, Any], subject: str = "The student") -> str:
    """One sentence: speed-up at batch 1 and 32, times smaller, accuracy kept (numbers as Compare shows them);
    what was not measured is said, never guessed."""
    b1, b32 = trade.get("speedup_b1"), trade.get("speedup_b32")
    parts, missing = [], []
    if b1 is not None and b32 is not None:
        parts.append(f"{_times(b1)} faster at batch 1 and {_times(b32)} at batch 32")
    elif b1 is not None or b32 is not None:
        parts.append(f"{_times(b1 or b32 or 0.0)} faster at batch {1 if b1 is not None else 32}")
    missing += [f"batch {b}" for b, v in ((1, b1), (32, b32)) if v is None]
    if trade.get("smaller") is not None:
        parts.append(f"{_times(trade['smaller'])} smaller")
    kept = trade.get("accuracy_kept")
    tail = f"keeps {kept:.1%} of the teacher's accuracy" if kept is not None else "has no test accuracy"
    body = f"{', '.join(parts)}{',' if len(parts) > 1 else ''} and {tail}" if parts else tail
    sentence = f"{subject} {'is ' + body if parts else body}"
    if missing:
        sentence += f" (speed at {' and '.join(missing)} not measured: run Benchmark)"
    return sentence + "."


def headlines(trades: Sequence[dict[str, Any]]) -> list[str]:
    """The headline of each student ("The student ..." when there is one)."""
    if len(trades) == 1:
        return [headline(trades[0])]
    return [headline(t, f"Student {t['model'].removeprefix('run ')}") for t in trades]


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

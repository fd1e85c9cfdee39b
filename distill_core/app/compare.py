"""Runs side by side: the comparison table, and per-example test predictions of a student and its teacher."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import runs, specs, storage, teacher_cache
from ..config import DataConfig
from ..errors import UserError
from . import seed_groups

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


def _model_key(spec: Any) -> str | None:
    """One key per model: a local spec's save_pretrained folder, resolved (a run folder, its model/ and another
    spelling of the path are one model); any other spec as written."""
    if not isinstance(spec, str) or not spec:
        return None
    try:
        local = specs.parse_spec(spec).kind == "local"
    except UserError:
        return spec
    folder = specs.model_folder(Path(spec)) if local else None
    return str(folder.resolve()) if folder is not None else spec


def _teacher_name(root: Path, spec: str, students: Sequence[str]) -> str:
    """A teacher's row name: "run NAME" when it is a run of this store (a model keeps one name wherever it is
    listed), else "teacher of" the selected runs it taught."""
    from .catalog import run_dir_of_spec

    run_dir = run_dir_of_spec(root, spec)
    return f"run {run_dir.name}" if run_dir is not None else f"teacher of {', '.join(students)}"


def _selection(root: Path, run_names: Sequence[str]):
    """The selected runs as (name, folder, config, eval, teacher key), the row name of each selected run's model
    (by model key) and, per teacher that is not a selected run, the selected runs it taught, in order."""
    loaded = []
    for name in dict.fromkeys(run_names):  # a name given twice is one run
        run_dir = runs.resolve_run_dir(root, name)
        config = storage.read_json(run_dir / runs.CONFIG_FILE, {}) or {}
        evaluation = storage.read_json(runs.eval_path(run_dir), {}) or {}
        teacher_eval = evaluation.get("teacher")
        teacher_key = _model_key(config.get("teacher")) if isinstance(teacher_eval, dict) else None
        loaded.append((name, run_dir, config, evaluation, teacher_key))
    run_rows = {_model_key(str(run_dir)): f"run {name}" for name, run_dir, *_ in loaded}
    taught: dict[str, list[str]] = {}
    for name, *_, key in loaded:
        if key is not None and key not in run_rows:
            taught.setdefault(key, []).append(name)
    return loaded, run_rows, taught


def model_evaluations(root: Path, run_names: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """(name, test metrics) of each distinct model of the selection, named and ordered as comparison_rows
    names them: for the confusion matrices and per-class F1, so no model is drawn twice."""
    root = Path(root).resolve()
    loaded, _, taught = _selection(root, run_names)
    shown = []
    for name, _, config, evaluation, key in loaded:
        shown.append((f"run {name}", evaluation.get("student") or {}))
        if key in taught and taught[key][0] == name:
            shown.append((_teacher_name(root, config["teacher"], taught[key]), evaluation["teacher"]))
    return shown


def _teacher_row(root: Path, spec: str, students: Sequence[str], metrics: dict) -> dict[str, Any]:
    """The row of a teacher that is not a selected run, with its metrics on its students' test split."""
    from .catalog import run_dir_of_spec

    run_dir = run_dir_of_spec(root, spec)
    if run_dir is not None:  # a run of this store: its spec is the model it was trained from
        shown_spec = (storage.read_json(run_dir / runs.CONFIG_FILE, {}) or {}).get("student")
    else:
        shown_spec = specs.spec_label(spec, root)
    folder = specs.model_folder(Path(spec))
    return _row(_teacher_name(root, spec, students), "teacher", shown_spec, specs.model_facts(spec), metrics,
                folder.parent if folder else None, 1.0)


def comparison_rows(root: Path, run_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per model of the selected runs: each run's model, then each teacher once, right after the first
    run it taught. A teacher is named "run NAME" when it is a run of this store, else "teacher of" the selected
    runs it taught; a teacher that is itself a selected run is that run's row (role "teacher"), not a second
    row. ``baseline`` names the row of a run's teacher (None for a run without one)."""
    root = Path(root).resolve()
    loaded, run_rows, taught = _selection(root, run_names)
    table: list[dict[str, Any]] = []
    for name, run_dir, config, evaluation, key in loaded:
        student = evaluation.get("student") or {}
        baseline = None if key is None else run_rows.get(key) or _teacher_name(root, config["teacher"], taught[key])
        role = "student" if config.get("mode") == "distill" else "fine-tuned"
        table.append(_row(f"run {name}", role, config.get("student"), specs.model_facts(str(run_dir)), student,
                          run_dir, student.get("agreement"), baseline))
        if key in taught and taught[key][0] == name:
            table.append(_teacher_row(root, config["teacher"], taught[key], evaluation["teacher"]))
    teachers = {row["baseline"] for row in table}
    for row in table:
        if row["model"] in teachers and row["role"] != "teacher":
            row.update(role="teacher", agreement=1.0)
    return table


MISSING = "—"  # a value a model does not have (no teacher to agree with, no test accuracy)
NOT_MEASURED = "not measured"  # speed before the Benchmark page (or the showcase) has measured it


def _is_value(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # NaN != NaN


CELL_FORMATS: dict[str, Callable[[Any], str]] = {
    "text": str,
    "percent": lambda v: f"{v * 100:.1f}%",  # fractions in [0, 1]
    "count": lambda v: f"{int(v):,}",
    "millions": lambda v: f"{v / 1e6:.1f} M",
    "one_decimal": lambda v: f"{v:.1f}",
    "three_decimals": lambda v: f"{v:.3f}",
    "times": lambda v: f"{v:.1f}×",
}


def display_table(rows: Sequence[dict[str, Any]], columns: dict[str, str], *,
                  missing: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Rows as the text a table shows: ``columns`` maps each key kept (in order) to a CELL_FORMATS name, and a
    value that is not there reads "—" (or ``missing[key]``, e.g. "not measured"): never "None" or "nan", which
    a Streamlit table shows for a missing number. A row merging several seeds (seed_groups.group_rows) shows
    "mean ± std" where it has the spread (``<key>_std``)."""
    missing = missing or {}

    def cell(row: dict[str, Any], key: str, kind: str) -> str:
        value, spread = row.get(key), row.get(f"{key}_std")
        present = bool(value) if kind == "text" else _is_value(value)
        if not present:
            return missing.get(key, MISSING)
        if kind != "text" and value is not None and spread is not None and _is_value(spread):
            return seed_groups.spread_text(value, spread, kind, CELL_FORMATS)
        return CELL_FORMATS[kind](value)

    return [{key: cell(row, key, kind) for key, kind in columns.items()} for row in rows]


def grouped_comparison_rows(root: Path, run_names: Sequence[str]) -> list[dict[str, Any]]:
    """comparison_rows with the runs that differ only in their seed merged into one row: mean ± std over the
    seeds (seed_groups.group_rows)."""
    return seed_groups.group_rows(comparison_rows(root, run_names), seed_groups.run_settings(root, run_names))


def speed_accuracy_points(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Points for figures_speed.speed_accuracy_scatter from Compare's rows, and the batch size they are measured at
    (32 when every measured model has it, else 1); a merged row brings its spread (error bars)."""
    measured = [r for r in rows if _is_value(r.get("samples_per_s_b1")) or _is_value(r.get("samples_per_s_b32"))]
    batch = 32 if measured and all(_is_value(r.get("samples_per_s_b32")) for r in measured) else 1
    points = []
    for row in measured:
        point = {"name": row["model"], "samples_per_s": row.get(f"samples_per_s_b{batch}"),
                 "accuracy": row.get("test_accuracy"), "size_mb": row.get("size_mb")}
        if row.get("n_seeds"):
            point |= {"samples_per_s_std": row.get(f"samples_per_s_b{batch}_std"),
                      "accuracy_std": row.get("test_accuracy_std"), "n_seeds": row["n_seeds"]}
        points.append(point)
    return points, batch


def scored_rows_note(rows: Sequence[dict[str, Any]]) -> str:
    """How many test rows the accuracies are measured on: one number when every model shares it."""
    counts = {row["model"]: int(row["n_test"]) if _is_value(row.get("n_test")) else None for row in rows}
    known = {n for n in counts.values() if n is not None}
    if not known:
        return "The number of test rows was not recorded."
    if len(known) == 1 and None not in counts.values():
        return f"Each model is scored on {known.pop():,} test rows."
    return "Test rows: " + "; ".join(f"{model} {MISSING if n is None else f'{n:,}'}"
                                     for model, n in counts.items()) + "."


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


def _faster(ratio: float) -> str:
    """A speed ratio (teacher's latency over the student's) in words: below 1 the student is slower, and saying
    "0.7× faster" would hide it."""
    if round(ratio, 1) == 1.0:
        return "as fast (1.0×)"
    return f"{_times(ratio)} faster" if ratio > 1 else f"{_times(1 / ratio)} slower"


def _smaller(ratio: float) -> str:
    if round(ratio, 1) == 1.0:
        return "the same size"
    return f"{_times(ratio)} smaller" if ratio > 1 else f"{_times(1 / ratio)} larger"


def headline(trade: dict[str, Any], subject: str = "The student") -> str:
    """One sentence: speed-up at batch 1 and 32, times smaller, accuracy kept (numbers as Compare shows them);
    what was not measured is said, never guessed; a slower or larger student is called so."""
    b1, b32 = trade.get("speedup_b1"), trade.get("speedup_b32")
    parts, missing = [], []
    if b1 is not None and b32 is not None:
        parts.append(f"{_faster(b1)} at batch 1 and {_faster(b32)} at batch 32")
    elif b1 is not None or b32 is not None:
        parts.append(f"{_faster(b1 or b32 or 0.0)} at batch {1 if b1 is not None else 32}")
    missing += [f"batch {b}" for b, v in ((1, b1), (32, b32)) if v is None]
    if trade.get("smaller") is not None:
        parts.append(_smaller(trade["smaller"]))
    kept = trade.get("accuracy_kept")
    if kept is None:
        tail = "has no test accuracy"
    else:
        tail = f"{'keeps' if kept <= 1 else 'reaches'} {kept:.1%} of the teacher's accuracy"
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

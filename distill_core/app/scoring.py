"""Compare's "score on a file": the models of the selected runs (and their teachers) on every row of a test file
the user brings (an upload, or a local dataset's test file). Plain functions; the page draws.

Scoring runs in the page's own process, so it is offered for small files only (``PAGE_MAX_ROWS``); a bigger file
gets the command line that scores it (``python -m distill_core evaluate``), which takes the same rules.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import runs, storage
from ..errors import UserError
from ..test_sets import Fields, TestSet, model_predictions, same_classes

# What a file of this many rows costs the page: ~1 s for a small student, ~10-20 s for a BERT-base teacher on
# 2 CPU cores at 150 tokens. Larger files go through the CLI.
PAGE_MAX_ROWS = 1_000
FORM_FIELDS = Fields(text="the Text column", label="the Label column")
TEXT_GUESSES = ("text", "sentence", "headline", "title", "content", "body", "review", "document")
LABEL_GUESSES = ("label", "labels", "class", "category", "topic", "target", "y")


@dataclass(frozen=True)
class ScoredModel:
    name: str               # what the table shows: "run NAME" or "teacher of NAME"
    role: str               # "student", "fine-tuned" or "teacher"
    spec: str               # what inference loads
    max_length: int         # the run's truncation limit
    teacher_of: str | None = None  # for a student: the spec of its teacher (agreement is measured against it)


# ----------------------------------------------------------------------------------------------------------------
# the file

def read_local(path: str | Path) -> tuple[pd.DataFrame, str, list[str] | None]:
    """(table, where, classes.txt names) of a local dataset's file scored in full: a file, or a folder's test.*."""
    from ..data import read_classes_file, read_table
    from ..test_sets import file_to_score

    path = Path(path)
    file = file_to_score(path)
    if file is None:
        raise UserError(f"{path.name} has no test file (test.csv, test.jsonl, test.json or test.parquet): pick "
                        "another dataset or upload a test file")
    return read_table(file), file.name, read_classes_file(file.parent)


def read_upload(filename: str, content: bytes) -> pd.DataFrame:
    """The table of an uploaded file; nothing is kept on disk."""
    from ..test_sets import read_upload as read

    return read(filename, content)


def guess_columns(frame: pd.DataFrame) -> tuple[str, str]:
    """(text column, label column) a file most likely uses, by name, else its first two columns."""
    columns = [str(c) for c in frame.columns]
    lower = {c.lower(): c for c in columns}
    label = next((lower[g] for g in LABEL_GUESSES if g in lower), columns[-1])
    text = next((lower[g] for g in TEXT_GUESSES if g in lower and lower[g] != label), None)
    if text is None:
        text = next((c for c in columns if c != label), columns[0])
    return text, label


def check_page_size(rows: int) -> None:
    if rows > PAGE_MAX_ROWS:
        raise UserError(f"the file has {rows:,} rows; this page scores up to {PAGE_MAX_ROWS:,} (it runs in the "
                        "page's own process). Score it in full from a terminal: python -m distill_core evaluate "
                        "--model runs/NAME --data YOUR_FILE --text-column TEXT --label-column LABEL")


# ----------------------------------------------------------------------------------------------------------------
# the models

def models_of_runs(root: Path, run_names: Sequence[str]) -> list[ScoredModel]:
    """Each selected run's model, then each distinct teacher right after the first run that names it."""
    found: list[ScoredModel] = []
    teachers: set[str] = set()
    for name in run_names:
        run_dir = runs.resolve_run_dir(Path(root), name)
        config = storage.read_json(run_dir / runs.CONFIG_FILE, {}) or {}
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        max_length = int((data or {}).get("max_length") or 150)
        teacher = config.get("teacher") if config.get("mode") == "distill" else None
        role = "student" if teacher else "fine-tuned"
        found.append(ScoredModel(f"run {name}", role, str(run_dir), max_length, teacher_of=teacher))
        if teacher and teacher not in teachers:
            teachers.add(teacher)
            found.append(ScoredModel(f"teacher of {name}", "teacher", teacher, max_length))
    return found


def score_models(models: Sequence[ScoredModel], test_set: TestSet, *, fields: Fields = FORM_FIELDS
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """(one table row per model that could be scored, one message per model that could not). Every row of the
    test set counts; a student's agreement is with its own teacher, when that teacher is scored too."""
    from ..evaluate import classification_metrics

    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    predictions: dict[str, tuple[np.ndarray, list[str]]] = {}
    for model in models:
        try:
            scored = model_predictions(model.spec, test_set, max_length=model.max_length, fields=fields,
                                       name=model.name)
        except UserError as exc:
            problems.append(str(exc) if model.name in str(exc) else f"{model.name}: {exc}")
            continue
        preds = scored.logits.argmax(-1)
        predictions[model.spec] = (preds, scored.label_names)
        metrics = classification_metrics(scored.labels, preds, scored.label_names)
        rows.append({"model": model.name, "role": model.role, "accuracy": metrics["accuracy"],
                     "correct": int((preds == scored.labels).sum()),
                     "n": metrics["n_examples"], "macro_f1": metrics["macro_f1"],
                     "agreement": 1.0 if model.role == "teacher" else None, "_teacher": model.teacher_of,
                     "_preds": preds, "_names": scored.label_names})
    for row in rows:
        teacher = predictions.get(row.pop("_teacher") or "")
        preds, names = row.pop("_preds"), row.pop("_names")
        if teacher is not None:
            row["agreement"] = float(np.mean(same_classes(teacher[0], teacher[1], names) == preds))
    return rows, problems

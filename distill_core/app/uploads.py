"""An uploaded data file judged the moment it arrives, before anything is kept: read with the engine's own
reader, its columns offered for picking, every problem listed at once in the words of Train's form.

`inspect_upload` is pure apart from a private temporary copy (the engine's reader takes a path); the page draws
its `UploadReport` and saves the file (datasets.save_upload) only once the report has no problems.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import data
from ..errors import UserError
from .datasets import file_problems

# The form's words for the two pickers (Train's upload panel uses the same strings as labels).
TEXT_LABEL, LABEL_LABEL = "Text columns", "Label column"
TEXT_SEPARATOR = "+"        # DataConfig.text_column joins several columns with it ("title+description")
PREVIEW_ROWS = 5
# A single file is carved twice (test, then validation), stratified: a class needs a few rows in each part.
MIN_ROWS_PER_CLASS = 5
# Column names a text or a label column usually has, most telling first.
TEXT_GUESSES = ("text", "sentence", "content", "review", "body", "document", "message", "comment", "question")
LABEL_GUESSES = ("label", "labels", "class", "category", "topic", "target", "sentiment", "intent", "class_index",
                 "y")
TITLE_PAIRS = (("title", "description"), ("title", "body"), ("headline", "text"), ("subject", "body"))


@dataclass(frozen=True)
class UploadReport:
    filename: str                                   # the user's file name, as uploaded
    columns: list[str] = field(default_factory=list)
    rows: int = 0
    preview: list[dict[str, Any]] = field(default_factory=list)  # the first rows, every cell as text
    text_columns: list[str] = field(default_factory=list)         # picked, or guessed when none were given
    label_column: str | None = None
    class_counts: dict[str, int] = field(default_factory=dict)   # label value -> rows
    problems: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.problems

    @property
    def text_column(self) -> str:
        """The DataConfig.text_column of the picked text columns."""
        return TEXT_SEPARATOR.join(self.text_columns)


def guess_text_columns(columns: list[str], label_column: str | None = None) -> list[str]:
    """The text column(s) a file most likely means: a usual name, title + description, else the first column
    that is not the label."""
    lower = {column.lower(): column for column in columns if column != label_column}
    for name in TEXT_GUESSES:
        if name in lower:
            return [lower[name]]
    for pair in TITLE_PAIRS:
        if all(name in lower for name in pair):
            return [lower[name] for name in pair]
    return next(([column] for column in columns if column != label_column), [])


def guess_label_column(columns: list[str]) -> str | None:
    lower = {column.lower(): column for column in columns}
    return next((lower[name] for name in LABEL_GUESSES if name in lower), None)


def inspect_upload(filename: str, content: bytes, text_columns: list[str] | None = None,
                   label_column: str | None = None) -> UploadReport:
    """Judge an uploaded file with the picked columns (None: guess them from the file's column names).

    Every problem found is listed, in the words of the Train form and naming ``filename`` (the user's name for
    the file, not the name it would be stored under); a report with no problems is a file the run will load."""
    name = Path(filename).name or "data"
    problems = file_problems(name, content)
    if problems:
        return UploadReport(name, problems=problems)
    try:
        frame = _read(name, content)
    except UserError as exc:
        return UploadReport(name, problems=[str(exc)])
    columns = [str(column) for column in frame.columns]
    frame.columns = pd.Index(columns)
    if label_column is None:
        label_column = guess_label_column(columns)
    if text_columns is None:
        text_columns = guess_text_columns(columns, label_column)
    preview = frame.head(PREVIEW_ROWS).astype(str).to_dict("records")
    report = UploadReport(name, columns, len(frame), preview, list(text_columns), label_column)
    if frame.empty:
        return _with(report, [f"{name} has a header but no data rows"])
    problems = _column_problems(name, columns, list(text_columns), label_column)
    if problems:
        return _with(report, problems)
    assert label_column is not None  # _column_problems refuses a missing one
    counts = _class_counts(frame[label_column])
    problems = _text_problems(frame, list(text_columns), name) + _label_problems(frame[label_column], label_column,
                                                                                  counts, name)
    return _with(report, problems, counts)


def _read(name: str, content: bytes) -> pd.DataFrame:
    """The engine's reader over a private temporary copy (named as the user's file, so its messages are too),
    gone when this returns: nothing of a refused file is kept."""
    with tempfile.TemporaryDirectory(prefix="kd-upload-") as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        return data.read_table(path)


def _with(report: UploadReport, problems: list[str], counts: dict[str, int] | None = None) -> UploadReport:
    return UploadReport(report.filename, report.columns, report.rows, report.preview, report.text_columns,
                        report.label_column, counts or {}, problems)


def _column_problems(name: str, columns: list[str], text_columns: list[str], label_column: str | None
                     ) -> list[str]:
    listed = ", ".join(repr(column) for column in columns)
    problems = []
    if not text_columns:
        problems.append(f"{TEXT_LABEL}: pick the column(s) of {name} that hold the text")
    for column in text_columns:
        if column not in columns:
            problems.append(f"{TEXT_LABEL}: {name} has no column {column!r}; its columns are {listed}")
        elif TEXT_SEPARATOR in column:
            problems.append(f"{TEXT_LABEL}: column {column!r} has a '{TEXT_SEPARATOR}' in its name, which joins "
                            "several columns: rename it in the file")
    if label_column is None:
        problems.append(f"{LABEL_LABEL}: {name} has no column named like a label (label, class, category, topic...); "
                        f"its columns are {listed}: pick the one that holds the class")
    elif label_column not in columns:
        problems.append(f"{LABEL_LABEL}: {name} has no column {label_column!r}; its columns are {listed}")
    elif label_column in text_columns:
        problems.append(f"{LABEL_LABEL} {label_column!r} is also one of the {TEXT_LABEL}: the class must not be "
                        "part of the text")
    return problems


def _text_problems(frame: pd.DataFrame, text_columns: list[str], name: str) -> list[str]:
    text = data.select_text(frame, TEXT_SEPARATOR.join(text_columns), name)
    empty = np.flatnonzero((text.isna() | (text.str.strip() == "")).to_numpy())
    problems = []
    if len(empty):
        problems.append(f"{len(empty)} row(s) of {name} have empty text in {TEXT_LABEL} "
                        f"{', '.join(text_columns)} (first at line {empty[0] + 2}): remove or fill them")
    too_long = np.flatnonzero((text.str.len() > data.MAX_TEXT_CHARS).fillna(False).to_numpy())
    if len(too_long):
        first = int(too_long[0])
        problems.append(f"{len(too_long)} text(s) of {name} are too long: the one at line {first + 2} is "
                        f"{int(text.str.len().iloc[first]):,} characters long (limit {data.MAX_TEXT_CHARS:,}): "
                        "this is a classifier of short texts; split or trim them")
    return problems


def _class_counts(labels: pd.Series) -> dict[str, int]:
    values = labels.astype("string").str.strip()
    values = values[values.notna() & (values != "")]
    counts = values.value_counts()
    return {str(label): int(count) for label, count in counts.items()}


def _label_problems(labels: pd.Series, column: str, counts: dict[str, int], name: str) -> list[str]:
    problems = []
    blank = np.flatnonzero((labels.isna() | (labels.astype(str).str.strip() == "")).to_numpy())
    if len(blank):
        problems.append(f"{len(blank)} row(s) of {name} have an empty label in {LABEL_LABEL} {column!r} (first at line "
                        f"{blank[0] + 2}): every row needs a class")
    if len(counts) == 1:
        problems.append(f"{LABEL_LABEL} {column!r} has only one class ({next(iter(counts))!r}): a file that holds a "
                        "single class cannot train a classifier, which needs examples of at least two")
    small = {label: count for label, count in counts.items() if count < MIN_ROWS_PER_CLASS}
    if small and len(counts) > 1:
        listed = ", ".join(f"{label!r} ({count} row{'s' if count > 1 else ''})" for label, count in small.items())
        problems.append(f"classes with fewer than {MIN_ROWS_PER_CLASS} rows cannot be split into "
                        f"train/validation/test (too few rows): {listed}: add rows or remove these classes")
    numeric = pd.to_numeric(labels, errors="coerce")
    if counts and not len(blank) and numeric.isna().any():
        example = labels[numeric.isna()].iloc[0]
        problems.append(f"{LABEL_LABEL} {column!r} holds names (e.g. {str(example)!r}), not class ids: number the "
                        "classes 0, 1, 2... in the file (or pick the column that holds the ids)")
    elif counts and not len(blank):
        try:  # the engine's own rule for class ids, so a file accepted here loads at Start
            data.labels_to_ids(labels, None, name, column)
        except UserError as exc:
            problems.append(f"{LABEL_LABEL} {column!r}: {str(exc).removeprefix(f'{name}: ')}")
    return problems

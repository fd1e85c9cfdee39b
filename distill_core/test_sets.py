"""Bring your own test set: load a file to score a trained model on, every row of it, and score it.

A test set is one file: a file named directly, or the ``test.*`` of a folder (with or without a ``train.*``).
Its text column may join several columns with ``+`` (as ``DataConfig.text_column``). Its labels are matched to
the model's own classes (``id2label``):

- class names (strings): by name, case-insensitively (``sports`` is the model's ``Sports``);
- integer ids: the model's ids, unless a ``classes.txt`` beside the file names them, then by those names;
- a label the model does not know: one UserError naming them and the model's classes, before any prediction.

Nothing is split, sampled or written: accuracy is exact over all rows. The errors name the two column settings
in the words of the interface that asked (``Fields``: the CLI's flags, or a page's form fields).
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import check_texts, find_split_file, read_classes_file, read_table, select_text
from .errors import UserError

EventHandler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Fields:
    """How an interface names the text and label column settings in its error messages."""
    text: str = "--text-column"
    label: str = "--label-column"


CLI_FIELDS = Fields()


@dataclass
class TestSet:
    """Every row of one test file: texts and the label column's values as written (names or ids)."""
    __test__ = False  # not a pytest test class, whatever the module name suggests

    texts: list[str]
    labels: list[Any]
    label_column: str
    description: str                      # the file (or upload) it came from
    class_names: list[str] | None = None  # a classes.txt beside the file: what its integer ids mean

    def __len__(self) -> int:
        return len(self.texts)


# ----------------------------------------------------------------------------------------------------------------
# finding and reading the file

def file_to_score(path: Path) -> Path | None:
    """The file scored in full for a local source: the file itself, or the ``test.*`` of a folder; None when a
    folder has no test file."""
    path = Path(path)
    return find_split_file(path, "test") if path.is_dir() else path


def only_test_file(folder: Path) -> bool:
    """Whether a folder holds a test file and no train file (a test-only folder)."""
    folder = Path(folder)
    return folder.is_dir() and find_split_file(folder, "train") is None and find_split_file(folder, "test") is not None


def frame_to_test_set(frame: pd.DataFrame, text_column: str, label_column: str, where: str, *,
                        class_names: list[str] | None = None, fields: Fields = CLI_FIELDS) -> TestSet:
    """Check the columns and texts of a table and keep every row of it."""
    columns = list(map(str, frame.columns))
    if len(frame) == 0:
        raise UserError(f"{where} has a header but no data rows")
    wanted = [name.strip() for name in (text_column or "").split("+") if name.strip()]
    if not wanted:
        raise UserError(f"{where}: no text column chosen: set {fields.text} to one of {columns}")
    missing = [name for name in wanted if name not in frame.columns]
    if missing:
        raise UserError(f"{where}: no column {missing[0]!r} for {fields.text}; columns are {columns}")
    label_column = (label_column or "").strip()
    if not label_column:
        raise UserError(f"{where}: no label column chosen: set {fields.label} to one of {columns}")
    if label_column not in frame.columns:
        raise UserError(f"{where}: no column {label_column!r} for {fields.label}; columns are {columns}")
    if label_column in wanted:
        raise UserError(f"{where}: {label_column!r} is both {fields.text} and {fields.label}: the text must not "
                        "hold the answer")
    text = select_text(frame, "+".join(wanted), where)
    check_texts(text, where)
    return TestSet(texts=text.tolist(), labels=frame[label_column].tolist(), label_column=label_column,
                   description=where, class_names=class_names)


def load_test_set(path: Path, text_column: str = "text", label_column: str = "label", *,
                  fields: Fields = CLI_FIELDS) -> TestSet:
    """Every row of a local file, or of a folder's test file (a classes.txt beside it names integer ids)."""
    path = Path(path)
    file = file_to_score(path)
    if file is None:
        raise UserError(f"{path} has no test file: expected test.csv, test.jsonl, test.json or test.parquet")
    table = read_table(file)
    return frame_to_test_set(table, text_column, label_column, str(file),
                               class_names=read_classes_file(file.parent), fields=fields)


def read_upload(filename: str, content: bytes) -> pd.DataFrame:
    """An uploaded file's table (read from a temporary copy that is removed at once; nothing is kept)."""
    suffix = Path(filename).suffix.lower()
    if not content.strip():
        raise UserError(f"{filename!r} is empty: it needs a header row and at least one data row")
    with tempfile.TemporaryDirectory(prefix="kd-test-set-") as folder:
        # The file keeps its own name, so read_table's messages name the file the user chose.
        copy = Path(folder) / (Path(filename).name or f"upload{suffix}")
        copy.write_bytes(content)
        return read_table(copy)


# ----------------------------------------------------------------------------------------------------------------
# labels -> the model's class ids

def _row_list(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r) + 1) for r in rows[:3])
    return shown + (f" and {len(rows) - 3} more" if len(rows) > 3 else "")


def label_ids(test_set: TestSet, model_names: Sequence[str], model: str, *,
              fields: Fields = CLI_FIELDS) -> np.ndarray:
    """The model's class id of every row's label; UserError naming the labels the model does not know."""
    model_names = [str(name) for name in model_names]
    values = pd.Series(test_set.labels, dtype=object)
    where, column = test_set.description, test_set.label_column
    empty = values.isna() | (values.astype(str).str.strip() == "")
    if empty.any():
        raise UserError(f"{where}: empty label in data row(s) {_row_list(np.flatnonzero(empty.to_numpy()))} "
                        f"of column {column!r}: every row needs a class")
    numeric = pd.to_numeric(values, errors="coerce")
    integral = not numeric.isna().any() and bool(np.all(np.mod(numeric.to_numpy(dtype=float), 1) == 0))
    if integral:
        ids = numeric.to_numpy(dtype=float)
        known = test_set.class_names or model_names
        bad = sorted({int(i) for i in ids if not 0 <= i < len(known)})
        if bad:
            source = "classes.txt beside the file" if test_set.class_names else f"model {model}"
            raise UserError(f"{where}: class id(s) {bad[:5]} in column {column!r} are not classes of the {source}: "
                            f"ids go 0..{len(known) - 1} ({', '.join(known)}); check {fields.label}")
        if not test_set.class_names:
            return ids.astype(np.int64)
        names = [test_set.class_names[int(i)] for i in ids]
    else:
        names = [str(v).strip() for v in values]
    return _match_names(names, model_names, model, where, column, fields)


def _match_names(names: list[str], model_names: list[str], model: str, where: str, column: str,
                 fields: Fields) -> np.ndarray:
    exact = {name: index for index, name in enumerate(model_names)}
    folded: dict[str, int] = {}
    for index, name in enumerate(model_names):
        folded.setdefault(name.casefold(), index)
    ids = [exact.get(name, folded.get(name.casefold(), -1)) for name in names]
    unknown = sorted({name for name, i in zip(names, ids, strict=True) if i < 0})
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:5]) + (f" and {len(unknown) - 5} more"
                                                                  if len(unknown) > 5 else "")
        raise UserError(f"{where}: the model {model} does not know the label(s) {shown} in column {column!r}; "
                        f"its classes are {', '.join(model_names)}: name each row's class as the model does (case "
                        f"does not matter) or by its id 0..{len(model_names) - 1}, or check {fields.label}")
    return np.asarray(ids, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------------
# scoring

def predict_test_set(loaded: Any, texts: Sequence[str], *, batch_size: int = 128,
                     on_event: EventHandler | None = None) -> np.ndarray:
    """Logits of an ``inference.InferenceModel`` for every text, in order (length-sorted batches, dynamic
    padding: evaluate.predict_logits)."""
    import datasets

    from .batching import Collator
    from .evaluate import predict_logits

    emit = on_event or (lambda _: None)
    dataset = datasets.Dataset.from_dict({"text": list(texts)})
    tokenized = dataset.map(lambda b: loaded.tokenizer(b["text"], truncation=True, max_length=loaded.max_length),
                            batched=True, remove_columns=["text"])
    emit({"kind": "phase", "phase": f"predicting {len(tokenized)} rows with {loaded.spec}"})
    with loaded.context():
        return predict_logits(loaded.model, tokenized, Collator(loaded.tokenizer), batch_size=batch_size,
                              on_progress=lambda d, t: emit({"kind": "predict_progress", "done": d, "total": t}))


def _load(spec: str, precision: str, max_length: int) -> Any:
    from .inference import load_for_inference

    loaded = load_for_inference(spec, precision)  # the model's own classes: labels are matched to them
    loaded.max_length = max_length
    return loaded


@dataclass
class Predictions:
    """One model on every row of a test set: the gold labels as its class ids, its logits, its class names."""
    labels: np.ndarray
    logits: np.ndarray
    label_names: list[str]
    seconds: float


def model_predictions(spec: str, test_set: TestSet, *, precision: str = "fp32", max_length: int = 150,
                      batch_size: int = 128, fields: Fields = CLI_FIELDS, name: str | None = None,
                      on_event: EventHandler | None = None) -> Predictions:
    """Load ``spec`` (inference.load_for_inference), match the labels to its classes (UserError before any
    prediction when it does not know some; ``name`` is how that message names the model), then predict every
    row."""
    loaded = _load(spec, precision, max_length)
    labels = label_ids(test_set, loaded.label_names, name or spec, fields=fields)
    start = time.perf_counter()
    logits = predict_test_set(loaded, test_set.texts, batch_size=batch_size, on_event=on_event)
    return Predictions(labels, logits, list(loaded.label_names), max(time.perf_counter() - start, 1e-9))


def score_test_set(spec: str, test_set: TestSet, *, reference: str | None = None, precision: str = "fp32",
                   max_length: int = 150, batch_size: int = 128, fields: Fields = CLI_FIELDS,
                   on_event: EventHandler | None = None) -> dict[str, Any]:
    """evaluate's report (evaluate.classification_metrics over every row, plus where and how) of ``spec`` on a
    test set; ``reference`` adds the agreement with a second model, compared by class name."""
    from .evaluate import classification_metrics, softmax_np

    options: dict[str, Any] = dict(precision=precision, max_length=max_length, batch_size=batch_size,
                                   on_event=on_event)
    scored = model_predictions(spec, test_set, fields=fields, **options)
    reference_preds = None
    if reference:
        other = _load(reference, precision, max_length)
        other_preds = predict_test_set(other, test_set.texts, batch_size=batch_size, on_event=on_event).argmax(-1)
        reference_preds = same_classes(other_preds, other.label_names, scored.label_names)
    report = classification_metrics(scored.labels, scored.logits.argmax(-1), scored.label_names,
                                    probs=softmax_np(scored.logits), reference_preds=reference_preds)
    report.update(spec=spec, reference=reference, split="test", rows="all", precision=precision,
                  data=test_set.description, seconds=round(scored.seconds, 2),
                  samples_per_s=round(len(test_set) / scored.seconds, 1))
    return report


def same_classes(preds: np.ndarray, names: Sequence[str], target_names: Sequence[str]) -> np.ndarray:
    """Predictions of one model as another model's class ids, matched by name (case-insensitive); -1 for a
    class the other model does not have (it then counts as a disagreement)."""
    folded = {str(name).casefold(): index for index, name in reversed(list(enumerate(target_names)))}
    mapping = np.array([folded.get(str(name).casefold(), -1) for name in names], dtype=np.int64)
    return mapping[np.asarray(preds, dtype=np.int64)]

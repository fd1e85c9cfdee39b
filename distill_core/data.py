"""Data sources -> `DatasetDict(train, validation, test)` with `example_id`, `text`, `label` (tokenisation and
batching: batching.py).

A source is a Hub dataset id (`ag_news`), a folder with `train.*` / `test.*`, or one file (then split). Files are
read with pandas so that every malformed input gets a specific message; the result becomes a `datasets.Dataset`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import DataConfig
from .errors import UserError
from .specs import is_hub_id

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
MAX_TEXT_CHARS = 100_000        # a longer cell is almost surely a broken file; tokenising it would stall the run
EMBEDDED_DATA_DIR = Path(__file__).resolve().parent.parent / "data"  # shipped with the repository (offline sample)
DATA_DIR_ENV = "KD_DATA_DIR"    # folder of named local datasets: `--data ag_news` -> $KD_DATA_DIR/ag_news
MAX_UNNAMED_CLASSES = 1_000     # without classes.txt ids 0..max become names; a stray huge id must not make 1e9


@dataclass
class LoadedData:
    splits: Any                 # datasets.DatasetDict: train, validation, test
    label_names: list[str]
    description: str            # where the data came from (saved in configs and model cards)
    # Training rows that `train_samples` left out (None when every training row is used): transfer.py's "rest".
    left_over: Any = None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


# ----------------------------------------------------------------------------------------------------------------
# reading files

def read_table(path: Path) -> pd.DataFrame:
    """Read one file into a DataFrame of strings/numbers, turning every parser failure into a UserError."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UserError(f"{path.name}: unsupported file type {suffix or '(none)'!r}: use .csv, .tsv, .jsonl, "
                        ".json or .parquet")
    if path.stat().st_size == 0:
        raise UserError(f"{path.name} is empty: it needs a header row and at least one data row")
    try:
        if suffix in (".csv", ".tsv"):
            if _looks_like_ag_news_release(path):
                return _read_ag_news_release(path)
            # utf-8-sig strips a byte-order mark, which would otherwise end up in the first column's name
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", encoding="utf-8-sig",
                               keep_default_na=False, dtype=str)
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False, encoding="utf-8")
        if suffix == ".json":
            return _read_json_records(path)
        return pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path.name} is not UTF-8 text (byte {exc.start}): re-save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{path.name} has no rows: it needs a header row and at least one data row") from None
    except pd.errors.ParserError as exc:
        first_line = str(exc).strip().splitlines()[-1]
        raise UserError(f"{path.name} is not a well-formed table ({first_line}): check quoting and delimiters") \
            from None
    except ValueError as exc:
        raise UserError(f"{path.name} could not be parsed as {suffix[1:]}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:  # pyarrow raises ArrowInvalid (an OSError/ValueError subclass) on a broken parquet
        raise UserError(f"{path.name} could not be read: {str(exc).splitlines()[0]}") from None


def _read_json_records(path: Path) -> pd.DataFrame:
    raw = json.loads(path.read_text(encoding="utf-8-sig"))
    if isinstance(raw, dict) and "data" in raw and isinstance(raw["data"], list):
        raw = raw["data"]
    if not isinstance(raw, list) or not all(isinstance(row, dict) for row in raw):
        raise UserError(f"{path.name}: expected a JSON list of objects like [{{\"text\": ..., \"label\": 0}}]")
    return pd.DataFrame.from_records(raw)


def _looks_like_ag_news_release(path: Path) -> bool:
    """The original AG News release: no header, three quoted columns: class index 1-4, title, description."""
    with path.open("r", encoding="utf-8-sig", errors="replace") as handle:
        first = handle.readline()
    return bool(re.match(r'^"?[1-9]"?,"', first)) and first.count('","') >= 2


def _read_ag_news_release(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, header=None, names=["class_index", "title", "description"], dtype=str,
                        keep_default_na=False, encoding="utf-8-sig")
    # The release writes newlines inside descriptions as a literal backslash; the Hub's ag_news keeps them as-is,
    # and so do we, so that `text` equals the Hub's title + " " + description. No strip of the parts: the Hub
    # keeps their spaces ("Trapped  MANILA"), and the whole text is stripped later like any other text column.
    frame["text"] = frame["title"] + " " + frame["description"]
    labels = pd.to_numeric(frame["class_index"], errors="coerce")
    if labels.isna().any():
        raise UserError(f"{path.name}: class index is not a number in row {int(labels.isna().idxmax()) + 1}")
    frame["label"] = labels.astype(int) - 1  # the release counts classes from 1; ids count from 0
    return frame[["text", "label"]]


def find_split_file(folder: Path, split: str) -> Path | None:
    found = sorted(p for p in folder.iterdir() if p.stem == split and p.suffix.lower() in SUPPORTED_SUFFIXES)
    if len(found) > 1:
        raise UserError(f"{folder} has several {split} files ({', '.join(p.name for p in found)}): keep one")
    return found[0] if found else None


def read_classes_file(folder: Path) -> list[str] | None:
    path = folder / "classes.txt"
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start}): re-save it as UTF-8") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise UserError(f"{path} names a class more than once ({', '.join(duplicated)}): one unique name per line")
    return names or None


# ----------------------------------------------------------------------------------------------------------------
# columns and labels

def select_text(frame: pd.DataFrame, text_column: str, where: str) -> pd.Series:
    """`text_column` may join several columns: "title+description"."""
    names = [name.strip() for name in text_column.split("+")]
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise UserError(f"{where}: no column {missing[0]!r}; columns are {list(map(str, frame.columns))}: "
                        f"set the text column to one of them (join several with +)")
    parts = [frame[name].astype("string").fillna("").str.strip() for name in names]
    text = parts[0]
    for part in parts[1:]:
        text = (text + " " + part).str.strip()
    return text


def check_texts(text: pd.Series, where: str) -> None:
    empty = text.isna() | (text.str.strip() == "")
    if empty.any():
        rows = (np.flatnonzero(empty.to_numpy()) + 2).tolist()  # +2: 1-based and the header line
        raise UserError(f"{where}: {len(rows)} row(s) have empty text (first at line {rows[0]}): "
                        "remove or fill them")
    lengths = text.str.len()
    if (lengths > MAX_TEXT_CHARS).any():
        row = int(lengths.to_numpy().argmax())
        raise UserError(f"{where}: the text at line {row + 2} is {int(lengths.iloc[row]):,} characters long "
                        f"(limit {MAX_TEXT_CHARS:,}): this is a classifier of short texts; split or trim it")


def labels_to_ids(values: pd.Series, label_names: list[str] | None, where: str, label_column: str) -> np.ndarray:
    """Integer ids 0..K-1; names are accepted only when the label names are known (classes.txt / features)."""
    if values.isna().any() or (values.astype(str).str.strip() == "").any():
        row = int(np.flatnonzero((values.isna() | (values.astype(str).str.strip() == "")).to_numpy())[0])
        raise UserError(f"{where}: empty label at line {row + 2}: every row needs a class id")
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.isna().any():
        if label_names:
            lookup = {name: index for index, name in enumerate(label_names)}
            unknown = sorted({str(v) for v in values if str(v) not in lookup})
            if not unknown:
                return np.array([lookup[str(v)] for v in values], dtype=np.int64)
            raise UserError(f"{where}: labels {unknown[:3]} are not among the class names {label_names}")
        bad = values[numeric.isna()].iloc[0]
        raise UserError(f"{where}: label {bad!r} in column {label_column!r} is not an integer: use class ids "
                        "0..K-1, or put a classes.txt (one name per line) beside the file to use names")
    if not np.all(np.mod(numeric.to_numpy(dtype=float), 1) == 0):
        bad = numeric[np.mod(numeric, 1) != 0].iloc[0]
        raise UserError(f"{where}: label {bad} is not an integer class id")
    # Range check on the floats, before the int64 cast: a huge id would wrap around or make a billion names.
    floats = numeric.to_numpy(dtype=float)
    upper = len(label_names) - 1 if label_names else MAX_UNNAMED_CLASSES - 1
    if floats.min() < 0 or floats.max() > upper:
        bad = int(floats.min()) if floats.min() < 0 else int(floats.max())
        bound = f"0..{upper}" if label_names else f"0..{upper} (for more classes put a classes.txt beside the file)"
        raise UserError(f"{where}: label {bad} is out of range: class ids must be {bound}")
    return floats.astype(np.int64)


def _frame_to_rows(frame: pd.DataFrame, cfg: DataConfig, label_names: list[str] | None, where: str
                   ) -> tuple[list[str], np.ndarray]:
    if len(frame) == 0:
        raise UserError(f"{where} has a header but no data rows")
    if cfg.label_column not in frame.columns:
        raise UserError(f"{where}: no label column {cfg.label_column!r}; columns are "
                        f"{list(map(str, frame.columns))}: set the label column to one of them")
    text = select_text(frame, cfg.text_column, where)
    check_texts(text, where)
    labels = labels_to_ids(frame[cfg.label_column], label_names, where, cfg.label_column)
    return text.tolist(), labels


# ----------------------------------------------------------------------------------------------------------------
# sources

def named_data_roots() -> list[Path]:
    """Folders whose datasets a bare name finds (``--data ag_news_sample``): ``$KD_DATA_DIR``, then the
    repository's embedded ``data/``."""
    configured = os.environ.get(DATA_DIR_ENV, "").strip()
    return [*([Path(configured).expanduser()] if configured else []), EMBEDDED_DATA_DIR]


def resolve_local(source: str) -> Path | None:
    """The local file or folder a data source names (a path, or a dataset name in a named data root), or None
    for a Hub dataset id."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if is_hub_id(source):
        return next((root / source for root in named_data_roots() if (root / source).exists()), None)
    return None


def _load_local(path: Path, cfg: DataConfig, seed: int) -> tuple[dict[str, tuple[list[str], np.ndarray]],
                                                                   list[str], str]:
    if path.is_dir():
        train_file, test_file = find_split_file(path, "train"), find_split_file(path, "test")
        if train_file is None:
            raise UserError(f"{path} has no train file: expected train.csv, train.jsonl, train.json or "
                            "train.parquet (and optionally test.*)")
        classes = read_classes_file(path)
        files = {"train": train_file, **({"test": test_file} if test_file else {})}
    else:
        classes = read_classes_file(path.parent)
        files = {"train": path}
    rows = {split: _frame_to_rows(read_table(file), cfg, classes, file.name) for split, file in files.items()}
    label_names = classes or [str(i) for i in range(int(max(r[1].max() for r in rows.values())) + 1)]
    return rows, label_names, str(path)


def _load_hub(source: str, cfg: DataConfig) -> tuple[dict[str, tuple[list[str], np.ndarray]], list[str], str]:
    from . import hub

    hub.require_hub(f"dataset {source!r}")
    import datasets

    try:
        loaded = datasets.load_dataset(source)
    except Exception as exc:  # the Hub raises many types; the user needs the one line
        raise UserError(f"could not load dataset {source!r} from the Hub: {str(exc).splitlines()[0]}") from None
    if "train" not in loaded:
        raise UserError(f"dataset {source!r} has no train split (splits: {list(loaded)})")
    feature = loaded["train"].features.get(cfg.label_column)
    label_names = list(feature.names) if hasattr(feature, "names") else None
    rows = {}
    for split in ("train", "test"):
        if split in loaded:
            rows[split] = _frame_to_rows(loaded[split].to_pandas(), cfg, label_names, f"{source}[{split}]")
    if label_names is None:
        label_names = [str(i) for i in range(int(max(r[1].max() for r in rows.values())) + 1)]
    return rows, label_names, f"hub:{source}"


def example_ids(texts: list[str]) -> list[str]:
    """A content hash: the same text gets the same id in every run, so cached teacher logits can be reused."""
    return [hashlib.sha1(text.encode("utf-8")).hexdigest()[:20] for text in texts]


def load_data(cfg: DataConfig, seed: int) -> LoadedData:
    import datasets

    cfg.validate()
    local = resolve_local(cfg.source)
    if local is not None:
        rows, label_names, description = _load_local(local, cfg, seed)
    elif is_hub_id(cfg.source):  # the rule refuses path syntax ('.', '/', '~', '..')
        rows, label_names, description = _load_hub(cfg.source, cfg)
    else:
        raise UserError(f"data source {cfg.source!r} does not exist: give an existing folder or file, or a Hub "
                        "dataset id such as ag_news")

    if len(label_names) < 2:
        raise UserError(f"{description}: only one class ({label_names}): a classifier needs at least two")
    present = np.unique(rows["train"][1])
    if len(present) < 2:
        raise UserError(f"{description}: the training data holds a single class ({label_names[present[0]]}): "
                        "a classifier needs examples of at least two classes")
    features = datasets.Features({"example_id": datasets.Value("string"), "text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=label_names)})

    def to_dataset(texts: list[str], labels: np.ndarray) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"example_id": example_ids(texts), "text": texts,
                                           "label": labels.tolist()}, features=features)

    train = to_dataset(*rows["train"])
    if "test" in rows:
        test = to_dataset(*rows["test"])
    else:
        train, test = _stratified_split(train, cfg.test_fraction, seed, "test")
    train, validation = _stratified_split(train, cfg.valid_fraction, seed, "validation")
    left_over = None
    if cfg.train_samples is not None and cfg.train_samples < len(train):
        train, left_over = _stratified_subsample_and_rest(train, cfg.train_samples, seed)
    if cfg.eval_samples is not None:
        validation = _stratified_subsample(validation, cfg.eval_samples, seed)
        test = _stratified_subsample(test, cfg.eval_samples, seed)
    splits = datasets.DatasetDict(train=train, validation=validation, test=test)
    return LoadedData(splits=splits, label_names=label_names, description=description, left_over=left_over)


def _stratified_split(dataset, fraction: float, seed: int, name: str):
    counts = np.bincount(np.asarray(dataset["label"]), minlength=2)
    if len(dataset) < 4 or (counts[counts > 0] < 2).any():
        raise UserError(f"too few rows ({len(dataset)}; smallest class {int(counts[counts > 0].min())}) to carve a "
                        f"stratified {name} split: give at least 2 rows per class, ideally hundreds")
    try:
        parts = dataset.train_test_split(test_size=fraction, seed=seed, stratify_by_column="label")
    except ValueError:
        # Very small classes cannot be stratified at this fraction; a seeded plain split keeps the run possible.
        parts = dataset.train_test_split(test_size=fraction, seed=seed)
    return parts["train"], parts["test"]


def _stratified_subsample(dataset, n: int, seed: int):
    if n >= len(dataset):
        return dataset
    return _stratified_subsample_and_rest(dataset, n, seed)[0]


def _stratified_subsample_and_rest(dataset, n: int, seed: int):
    """(the seeded stratified sample of ``n`` rows, the rows it left out); the sample is `_stratified_subsample`'s."""
    try:
        parts = dataset.train_test_split(train_size=n, seed=seed, stratify_by_column="label")
        return parts["train"], parts["test"]
    except ValueError:
        shuffled = dataset.shuffle(seed=seed)
        return shuffled.select(range(n)), shuffled.select(range(n, len(shuffled)))

"""Unlabelled transfer text: rows the student learns from the teacher alone (issue 12).

`DataConfig.transfer` names where the rows come from:
- ``rest``: the training rows that `train_samples` left out, labels dropped (data.py keeps them as
  `LoadedData.left_over`). Validation and test rows were carved out before the subsample, so none is among them;
- a file: .csv/.tsv/.jsonl/.json/.parquet (its text column, `DataConfig.text_column`; labels ignored) or .txt (one
  text per line);
- a folder: every such file in it;
- a Hub dataset id: the text column of its train split.

The rows come back as a `datasets.Dataset` with `example_id` (data.example_ids: a content hash, so the teacher-logit
cache works as it does for the train split), `text` and ``label = IGNORE_LABEL`` (-100: the contract with
objective.py, whose CE averages over labelled rows only while KD covers every row). A transfer text equal to a
train, validation or test text is dropped: a train text already has its label, and a validation or test text must
never reach training. `transfer_samples` caps the rows (seeded sample, after deduplication).

Errors name the CLI flags (``--transfer``, ``--transfer-samples``); preflight.check_transfer runs this before any
run folder exists.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import DataConfig
from .errors import UserError

if TYPE_CHECKING:
    from .data import LoadedData

REST = "rest"
IGNORE_LABEL = -100   # = objective.IGNORE_LABEL (not imported: objective.py imports torch)
TEXT_SUFFIXES = (".txt",)


@dataclass
class TransferText:
    """The transfer rows and what became of the source's rows on the way (saved in the run's provenance)."""
    rows: Any                   # datasets.Dataset: example_id, text, label (= IGNORE_LABEL)
    source: str
    read: int                   # non-empty texts read from the source
    dropped_duplicates: int     # equal to a train/validation/test text or to an earlier transfer text
    dropped_by_cap: int         # left out by transfer_samples

    def record(self) -> dict[str, Any]:
        return {"source": self.source, "rows": len(self.rows), "read": self.read,
                "dropped_duplicates": self.dropped_duplicates, "dropped_by_cap": self.dropped_by_cap}


def requested(cfg: DataConfig) -> bool:
    return bool((cfg.transfer or "").strip())


def load_transfer(cfg: DataConfig, seed: int, data: LoadedData) -> TransferText | None:
    """The transfer rows of ``cfg`` for the splits of ``data`` (None when no transfer text is asked for)."""
    if not requested(cfg):
        return None
    source = (cfg.transfer or "").strip()
    if source == REST:
        if data.left_over is None or len(data.left_over) == 0:
            raise UserError("--transfer rest: --train-samples leaves no training rows out (it is unset or at least "
                            "the number of training rows): lower --train-samples or name a file of text")
        texts = list(data.left_over["text"])
    else:
        texts = read_texts(source, cfg)
    kept, duplicates = _new_texts(texts, data)
    if not kept:
        raise UserError(f"--transfer {source}: all {len(texts)} texts are already in the train, validation or test "
                        "split: give text the labelled data does not hold")
    capped = cfg.transfer_samples if cfg.transfer_samples else len(kept)
    if capped < len(kept):
        # Seeded, and drawn in the file's order so that a larger cap keeps every row of a smaller one.
        chosen = np.sort(np.random.default_rng(seed).permutation(len(kept))[:capped])
        kept = [kept[i] for i in chosen]
    return TransferText(rows=_to_dataset(kept), source=source, read=len(texts), dropped_duplicates=duplicates,
                        dropped_by_cap=len(texts) - duplicates - len(kept))


def read_texts(source: str, cfg: DataConfig) -> list[str]:
    """Every non-empty text of a transfer source that is not "rest" (file, folder or Hub dataset id)."""
    from .data import resolve_local
    from .specs import is_hub_id

    local = resolve_local(source)
    if local is None:
        from .data import SUPPORTED_SUFFIXES

        # "notes.txt" also matches the Hub id rule; a name with a file suffix means a file.
        if not is_hub_id(source) or Path(source).suffix.lower() in (*SUPPORTED_SUFFIXES, *TEXT_SUFFIXES):
            raise UserError(f"--transfer {source!r} does not exist: give 'rest', a file of text (.txt, .csv, "
                            ".jsonl, .json, .parquet), a folder of such files or a Hub dataset id")
        return _hub_texts(source, cfg)
    files = _files_in(local) if local.is_dir() else [local]
    texts = [text for path in files for text in _file_texts(path, cfg)]
    if not texts:
        raise UserError(f"--transfer {source}: no text in {', '.join(p.name for p in files)}: give at least one "
                        "non-empty line or row")
    return texts


def _files_in(folder: Path) -> list[Path]:
    from .data import SUPPORTED_SUFFIXES

    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in (*SUPPORTED_SUFFIXES, *TEXT_SUFFIXES))
    if not files:
        raise UserError(f"--transfer {folder}: the folder holds no .txt, .csv, .tsv, .jsonl, .json or .parquet file")
    return files


def _file_texts(path: Path, cfg: DataConfig) -> list[str]:
    from .data import check_texts, read_table, select_text

    where = f"--transfer {path.name}"
    if path.suffix.lower() in TEXT_SUFFIXES:
        if path.stat().st_size == 0:
            raise UserError(f"{where} is empty: it needs one text per line")
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as exc:
            raise UserError(f"{where} is not UTF-8 text (byte {exc.start}): re-save it as UTF-8") from None
        texts = [line.strip() for line in lines if line.strip()]
    else:
        try:
            frame = read_table(path)
        except UserError as exc:  # the reader's own words, said of the transfer flag
            raise UserError(f"--transfer: {exc}") from None
        if len(frame) == 0:
            raise UserError(f"{where} has a header but no data rows")
        column = select_text(frame, cfg.text_column, where)
        texts = [text for text in column.tolist() if isinstance(text, str) and text.strip()]
    import pandas as pd

    check_texts(pd.Series(texts, dtype="string"), where)  # over-long texts (empty ones were dropped)
    return texts


def _hub_texts(source: str, cfg: DataConfig) -> list[str]:
    from . import hub
    from .data import select_text

    hub.require_hub(f"transfer dataset {source!r}")
    import datasets

    try:
        loaded = datasets.load_dataset(source, split="train")
    except Exception as exc:  # the Hub raises many types; the user needs the one line
        raise UserError(f"--transfer {source}: could not load it from the Hub: {str(exc).splitlines()[0]}") \
            from None
    column = select_text(loaded.to_pandas(), cfg.text_column, f"--transfer {source}[train]")
    return [text for text in column.tolist() if isinstance(text, str) and text.strip()]


def _new_texts(texts: list[str], data: LoadedData) -> tuple[list[str], int]:
    """``texts`` without those of the labelled splits and without repeats (first kept), and how many went."""
    from .data import example_ids

    # Ids are content hashes of the text: comparing ids compares texts, and the splits already hold theirs.
    seen = {eid for split in data.splits.values() for eid in split["example_id"]}
    kept = []
    for text, eid in zip(texts, example_ids(texts), strict=True):
        if eid not in seen:
            seen.add(eid)
            kept.append(text)
    return kept, len(texts) - len(kept)


def _to_dataset(texts: list[str]):
    import datasets

    from .data import example_ids

    features = datasets.Features({"example_id": datasets.Value("string"), "text": datasets.Value("string"),
                                  "label": datasets.Value("int64")})
    return datasets.Dataset.from_dict({"example_id": example_ids(texts), "text": texts,
                                       "label": [IGNORE_LABEL] * len(texts)}, features=features)

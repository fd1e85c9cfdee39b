"""Datasets the dashboard offers: folders and files under the allowed data folders, and a visitor's uploads."""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..data import SUPPORTED_SUFFIXES, resolve_local
from ..errors import UserError
from ..locations import data_roots, max_upload_mb, uploads_dir

UPLOAD_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
# Row counts of Hub datasets we know, so the ETA works before anything is downloaded.
KNOWN_HUB_SIZES = {"ag_news": (120_000, 7_600), "SetFit/ag_news": (120_000, 7_600),
                   "fancyzhx/ag_news": (120_000, 7_600)}


@dataclass(frozen=True)
class LocalDataset:
    label: str      # what the selectbox shows
    path: str       # absolute path, used as DataConfig.source
    kind: str       # "folder" | "file" | "upload"


def _has_train_file(folder: Path) -> bool:
    return any(p.stem == "train" and p.suffix.lower() in SUPPORTED_SUFFIXES for p in folder.iterdir() if p.is_file())


def _short(path: Path) -> str:
    # The parent folder's name is enough to tell data roots apart and reveals nothing about the server.
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _datasets_in(root: Path) -> list[LocalDataset]:
    found: list[LocalDataset] = []
    try:
        children = sorted(root.iterdir())
    except OSError:
        return found
    for child in children:
        if child.name.startswith("."):
            continue
        try:
            if child.is_dir() and _has_train_file(child):
                found.append(LocalDataset(f"{child.name}  ({_short(root)})", str(child), "folder"))
            elif child.is_file() and child.suffix.lower() in SUPPORTED_SUFFIXES:
                found.append(LocalDataset(f"{child.name}  ({_short(root)})", str(child), "file"))
        except OSError:
            continue
    return found


def local_datasets(uploads: Path | None = None) -> list[LocalDataset]:
    """Datasets in the allowed folders (folders with a train file, loose data files) and earlier uploads
    (those in ``uploads``, default uploads_dir())."""
    found = [dataset for root in data_roots() for dataset in _datasets_in(root)]
    try:
        for upload in sorted((uploads or uploads_dir()).iterdir()):
            if upload.is_file() and upload.suffix.lower() in UPLOAD_SUFFIXES:
                found.append(LocalDataset(upload_label(upload), str(upload), "upload"))
    except OSError:
        pass
    return found


def file_problems(filename: str, content: bytes) -> list[str]:
    """What is wrong with an uploaded file before it is even parsed: its type, its size, nothing in it, or binary
    content under a text format's name (a spreadsheet or an archive renamed .csv)."""
    suffix = Path(filename).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        return [f"{filename}: unsupported file type {suffix or '(none)'!r}: upload .csv, .jsonl, .json or .parquet"]
    cap = max_upload_mb()
    if len(content) > cap * 1_000_000:
        return [f"{filename} is {len(content) / 1e6:.1f} MB, over the {cap} MB upload limit: upload a smaller file "
                "(or raise KD_MAX_UPLOAD_MB)"]
    if not content.strip():
        return [f"{filename} is empty: it needs a header row and at least one data row"]
    if suffix == ".parquet":
        return [] if content[:4] == b"PAR1" else [f"{filename} is not a Parquet file (it does not start with the "
                                                  "Parquet signature): upload the table as .csv or a real .parquet"]
    if _looks_binary(content):
        return [f"{filename} is not a text file but binary data (a spreadsheet, an archive or another binary "
                f"file renamed {suffix}?): export the table as {suffix} (UTF-8 text) and upload that"]
    return []


def _looks_binary(content: bytes) -> bool:
    """NUL bytes never occur in UTF-8 text files, and control characters are rare; binary formats are full of
    both. (Text that is merely not UTF-8 is told apart later, by the reader's own message.)"""
    head = content[:65_536]
    controls = sum(byte < 32 and byte not in (9, 10, 13) for byte in head)
    return b"\x00" in head or controls > len(head) // 100


def save_upload(filename: str, content: bytes, folder: Path | None = None) -> Path:
    """Keep an uploaded data file in ``folder`` (default uploads_dir()); refuses other types and files over the
    size cap. Call it once the file is accepted (uploads.inspect_upload): a refused file must not be kept."""
    problems = file_problems(filename, content)
    if problems:
        raise UserError(problems[0])
    suffix = Path(filename).suffix.lower()
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(filename).stem).strip("-")[:40] or "data"
    # The content hash makes names unique and an identical re-upload idempotent.
    target = (folder or uploads_dir()) / f"{stem}-{hashlib.sha256(content).hexdigest()[:8]}{suffix}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(content)
        os.replace(tmp, target)
    return target


def upload_label(path: Path) -> str:
    """How a kept upload is listed: the name the user gave it, with the content hash that tells two versions
    apart ("reviews.csv (uploaded, 1a2b3c4d)")."""
    match = re.fullmatch(r"(.+)-([0-9a-f]{8})", path.stem)
    return f"{match[1]}{path.suffix} (uploaded, {match[2]})" if match else f"{path.name}  (uploaded)"


def estimate_rows(source: str) -> tuple[int | None, int | None]:
    """(train rows, test rows) of a data source, cheaply: line counts of local files, known Hub sizes.

    Meant for the ETA only: quoted newlines inside CSV cells make it approximate. (None, None) when unknown.
    """
    if source in KNOWN_HUB_SIZES:
        return KNOWN_HUB_SIZES[source]
    path = resolve_local(source)  # a path, or a dataset's name (ag_news_sample) as the CLI takes it
    if path is None or not path.exists():
        return None, None
    if path.is_file():
        return _count_rows(path), None
    files = {p.stem: p for p in path.iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES}
    train, test = files.get("train"), files.get("test")
    return (_count_rows(train) if train else None), (_count_rows(test) if test else None)


def _count_rows(path: Path) -> int | None:
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        if path.suffix.lower() == ".json":
            raw = json.loads(path.read_text(encoding="utf-8-sig"))
            raw = raw.get("data", raw) if isinstance(raw, dict) else raw
            return len(raw) if isinstance(raw, list) else None
        with path.open("rb") as handle:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        header = 0 if path.suffix.lower() == ".jsonl" else 1
        return max(lines - header, 0)
    except (OSError, ValueError, ImportError):
        return None

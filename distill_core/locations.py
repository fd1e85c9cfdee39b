"""Where the product keeps and finds things outside the run store: data folders, uploads, their size cap.

The run store itself lives in runs.py (``KD_RUNS_DIR``); hosted mode's per-visitor folders in hosting.py.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import env, hosting, runs
from .data import named_data_roots

DEFAULT_MAX_UPLOAD_MB = 50


def data_roots() -> list[Path]:
    """Folders whose datasets the UI may offer: ``$KD_DATA_DIR`` if set, and the repository's ``data/`` (the
    embedded AG News sample). Visitors pick from these; they never type a server path."""
    unique: list[Path] = []
    for root in named_data_roots():
        resolved = root.resolve()
        if resolved.is_dir() and resolved not in unique:
            unique.append(resolved)
    return unique


def uploads_dir() -> Path:
    """Where uploaded data files are kept: ``$KD_UPLOADS_DIR`` or ``uploads/`` beside the runs folder."""
    configured = os.environ.get("KD_UPLOADS_DIR", "").strip()
    folder = Path(configured).expanduser() if configured else runs.runs_root().parent / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()


def uploads_for(root: Path) -> Path:
    """The uploads folder of a runs folder: uploads_dir(), or a hosted visitor's own ``uploads/visitors/<id>``."""
    visitor = hosting.visitor_of(Path(root))
    if visitor is None:
        return uploads_dir()
    folder = uploads_dir() / hosting.VISITORS_DIR / visitor
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def allowed_data_folders(root: Path) -> list[Path]:
    """Where a run in ``root`` may read data in hosted mode: the configured data folders and its uploads."""
    return [*data_roots(), uploads_for(root)]


def max_upload_mb() -> int:
    """The upload size cap from ``$KD_MAX_UPLOAD_MB`` (default 50)."""
    return env.positive_int("KD_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB)

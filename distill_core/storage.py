"""Durable file primitives under the run store: atomic JSON writes, tolerant reads, cross-process locks.

runs.py builds the store on these; checkpoints, the card and exports use them for files that must never be
seen half-written. Writes refuse anything that looks like a Hugging Face token (see refuse_tokens).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:  # POSIX only; elsewhere the store still works, without cross-process locking
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None  # type: ignore[assignment]

# Hugging Face user access tokens are "hf_" + a long alphanumeric tail. See refuse_tokens for why we look.
HF_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{20,}")


class WriteError(OSError):
    """A write to a run folder failed (disk full, a file size limit, permissions); ``filename`` says where."""


def write_error(exc: BaseException, path: Path) -> WriteError:
    """A WriteError naming ``path`` for a failed write, with the errno of ``exc`` where one can be found.

    safetensors reports I/O failures as "... (os error 28)" text and torch.save as a RuntimeError, neither with
    a path; the run's status should still say plainly what could not be written and why.
    """
    code = exc.errno if isinstance(exc, OSError) and exc.errno else None
    if code is None and (found := re.search(r"os error (\d+)", str(exc))):
        code = int(found[1])
    reason = os.strerror(code) if code else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return WriteError(code or errno.EIO, reason, str(path))


def refuse_tokens(text: str, where: Path) -> None:
    """Last line of defence against persisting a Hugging Face token.

    Tokens are only ever meant to live in the environment or the huggingface_hub credential store. Run folders
    are shared, zipped, shown in the UI and pushed to the Hub, so a token that slipped into a config or a
    metrics row (say, through an env dump or an exception message) would leak. The message never echoes it.
    """
    if HF_TOKEN_RE.search(text):
        raise ValueError(
            f"refusing to write {where}: a value looks like a Hugging Face token (hf_...); "
            "tokens must never be stored in a run"
        )


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a folder be opened, hence best effort.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON so that readers see either the old file or the new one, never a torn one."""
    path = Path(path)
    text = json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    refuse_tokens(text, path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise write_error(exc, path) from exc
        raise
    _fsync_dir(path.parent)


def read_json(path: Path, default: Any = None) -> Any:
    """The parsed JSON at ``path``, or ``default`` if it is missing or unreadable.

    Our writes are atomic, so an unreadable file is foreign or damaged; UI polls and listings carry on.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


_held_locks = threading.local()  # paths whose lock this thread holds


@contextlib.contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (created if needed) across processes and threads.

    flock locks belong to an open file description, so two threads of one process (Streamlit sessions) that
    each open the file exclude each other too. Re-entry by the same thread passes through instead of
    deadlocking: a worker's SIGTERM handler may write its status while the interrupted code holds the lock.
    """
    key = os.path.abspath(lock_path)
    held: set[str] = getattr(_held_locks, "paths", None) or set()
    _held_locks.paths = held
    if fcntl is None or key in held:
        yield
        return
    fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
    finally:
        os.close(fd)  # closing releases the lock

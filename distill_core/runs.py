"""The run store: one folder per run under a root, written only by this module.

Layout (see shared/DESIGN.md): ``config.json``, ``status.json``, ``metrics.jsonl``, ``eval.json``, ``model/``,
``worker.log`` and a ``STOP`` flag file. Every JSON write is atomic (temp file in the same folder, fsync,
rename, fsync of the folder), so a run killed at any moment leaves files that load. Times are unix seconds
(floats) everywhere, so durations are a subtraction and sorting needs no parsing.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distill_core.errors import UserError

try:  # POSIX only; elsewhere the store still works, without cross-process locking
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None  # type: ignore[assignment]

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
TERMINAL_STATES = frozenset({"done", "failed", "cancelled"})
LIVE_STATES = frozenset({"queued", "running"})

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
STOP_FILE = "STOP"
LOG_FILE = "worker.log"
PREDICTIONS_FILE = "predictions.json"  # per-example test predictions of a finished run (Compare)
MODEL_DIR = "model"

_RUN_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_RUN_NAME_RULE = "use 1-64 characters from A-Z a-z 0-9 . _ - (not starting with '.' or '-', no '..')"
# Hugging Face user access tokens are "hf_" + a long alphanumeric tail. See _refuse_tokens for why we look.
HF_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{20,}")


# ---------------------------------------------------------------- locations
def runs_root() -> Path:
    """The store root: ``$KD_RUNS_DIR`` or ``./runs``, created on demand, as an absolute path."""
    root = Path(os.environ.get("KD_RUNS_DIR") or "runs").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def sanitize_run_name(name: str) -> str:
    """Return ``name`` (surrounding blanks stripped) if it is a safe run folder name; UserError otherwise.

    Names become folder names and appear in URLs and shell commands, so we allow a conservative set rather than
    escaping: this also rules out traversal ('../x'), absolute paths and hidden folders.
    """
    if not isinstance(name, str):
        raise UserError(f"invalid run name {name!r}: {_RUN_NAME_RULE}")
    candidate = name.strip()
    if not _RUN_NAME_RE.fullmatch(candidate) or ".." in candidate:
        raise UserError(f"invalid run name {name!r}: {_RUN_NAME_RULE}")
    return candidate


def resolve_run_dir(root: Path, name: str) -> Path:
    """The absolute folder of run ``name`` under ``root``; guaranteed to lie inside ``root``.

    The name check alone would suffice today; resolving again also catches a run folder that is a symlink
    pointing elsewhere, which deletion must never follow.
    """
    safe = sanitize_run_name(name)
    root_resolved = Path(root).resolve()
    run_dir = (root_resolved / safe).resolve()
    if run_dir == root_resolved or not run_dir.is_relative_to(root_resolved):
        raise UserError(f"run {safe!r} resolves outside the runs folder {root_resolved}: pick another name")
    return run_dir


def eval_path(run_dir: Path) -> Path:
    return Path(run_dir) / EVAL_FILE


def model_dir(run_dir: Path) -> Path:
    return Path(run_dir) / MODEL_DIR


def log_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOG_FILE


def metrics_path(run_dir: Path) -> Path:
    return Path(run_dir) / METRICS_FILE


# ---------------------------------------------------------------- low-level I/O
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


def _refuse_tokens(text: str, where: Path) -> None:
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
    _refuse_tokens(text, path)
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


# ---------------------------------------------------------------- runs
def create_run(root: Path, name: str, config: dict) -> Path:
    """Create run ``name`` with its config and a 'queued' status; refuses to touch an existing run."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    run_dir = resolve_run_dir(root, name)
    try:
        run_dir.mkdir()  # atomic: of two concurrent creators exactly one wins
    except FileExistsError:
        raise UserError(f"run {run_dir.name!r} already exists: choose another name or delete it") from None
    try:
        write_json_atomic(run_dir / CONFIG_FILE, config)
        write_json_atomic(run_dir / STATUS_FILE, {"state": "queued", "created_at": time.time()})
    except BaseException:
        # A half-created run would block its name forever and confuse listings.
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir


def delete_run(root: Path, name: str) -> None:
    """Delete a finished run folder. Refuses live runs and folders that do not look like runs."""
    run_dir = resolve_run_dir(root, name)
    if not run_dir.is_dir():
        raise UserError(f"no run named {run_dir.name!r} in {Path(root).resolve()}: check the name")
    if not (run_dir / CONFIG_FILE).exists() and not (run_dir / STATUS_FILE).exists():
        raise UserError(f"{run_dir} does not look like a run (no config.json or status.json): remove it by hand")
    status = read_status(run_dir)
    if status.get("state") == "running" or (status.get("state") == "queued" and status.get("pid")):
        raise UserError(f"run {run_dir.name!r} is still {status['state']}: stop it first, then delete it")
    shutil.rmtree(run_dir)


def append_metric(run_dir: Path, row: dict) -> None:
    """Append one JSON line to metrics.jsonl and force it to disk; adds ``time`` (unix seconds) if missing."""
    row = dict(row)
    row.setdefault("time", time.time())
    path = metrics_path(run_dir)
    line = json.dumps(row, ensure_ascii=False)  # no indent: never contains a raw newline
    _refuse_tokens(line, path)
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # A crash mid-line leaves no trailing newline; start on a fresh line so only that row is lost.
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        raise write_error(exc, path) from exc
    finally:
        os.close(fd)


def _read_metrics(run_dir: Path, *, warn: bool) -> list[dict]:
    path = metrics_path(run_dir)
    try:
        raw = path.read_bytes()
    except OSError:
        return []
    rows: list[dict] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))  # JSON and UTF-8 decoding errors are both ValueErrors
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            if warn:
                warnings.warn(f"{path}: line {number}: skipped a garbled metrics line ({err})", stacklevel=3)
            continue
        rows.append(row)
    return rows


def read_metrics(run_dir: Path) -> list[dict]:
    """All metric rows in order; a garbled line (e.g. half-written by a killed worker) is skipped with a warning."""
    return _read_metrics(run_dir, warn=True)


# ---------------------------------------------------------------- status and liveness
def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from /proc, or None where there is no /proc."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
        # The command name (field 2) may hold spaces and ')' itself, so split after its last ')'.
        fields = data[data.rindex(")") + 2:].split()
        return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: Any, start_time: int | None = None) -> bool:
    """Whether process ``pid`` runs (not a zombie) and, when ``start_time`` is known, is the same process.

    Comparing start times guards against pid reuse: after a reboot or a long time, a recorded worker pid may
    belong to an unrelated process.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass  # exists, owned by another user
    except OSError:  # ProcessLookupError above all
        return False
    stat = _proc_stat(pid)  # a zombie has exited but still answers os.kill
    return stat is None or (stat[0] not in ("Z", "X") and (start_time is None or stat[1] == start_time))


def _stamp_pid(fields: dict) -> None:
    pid = fields.get("pid")
    if isinstance(pid, int) and pid > 0 and "pid_start" not in fields:
        stat = _proc_stat(pid)
        fields["pid_start"] = stat[1] if stat else None
        fields.setdefault("host", socket.gethostname())


def _mutate_status(run_dir: Path, state: str | None, fields: dict) -> dict:
    run_dir = Path(run_dir)
    _stamp_pid(fields)
    # Read-modify-write under a lock: the UI (recording a pid) and the worker (setting running) race otherwise.
    with file_lock(run_dir / ".status.lock"):
        status = read_json(run_dir / STATUS_FILE, {})
        if not isinstance(status, dict):
            status = {}
        status.update(fields)
        now = time.time()
        if state is not None:
            status["state"] = state
            if state == "running" and not status.get("started_at"):
                status["started_at"] = now
            if state in TERMINAL_STATES:
                status["finished_at"] = now
        status["updated_at"] = now
        write_json_atomic(run_dir / STATUS_FILE, status)
    return status


def set_status(run_dir: Path, state: str, **fields: Any) -> dict:
    """Merge ``fields`` into status.json and set ``state``; stamps started_at / finished_at / updated_at.

    A ``pid`` field is stamped with its process start time and host so liveness checks survive pid reuse.
    """
    if state not in STATES:
        raise ValueError(f"unknown run state {state!r}: expected one of {', '.join(STATES)}")
    return _mutate_status(run_dir, state, fields)


def update_status(run_dir: Path, **fields: Any) -> dict:
    """Merge ``fields`` into status.json without touching the state (e.g. the launcher recording a pid)."""
    if "state" in fields:
        raise ValueError("update_status keeps the state: use set_status to change it")
    return _mutate_status(run_dir, None, fields)


def read_status(run_dir: Path) -> dict:
    """status.json, with a live state whose worker is gone reported as 'interrupted' (the file is untouched).

    If a stop was requested, such a run reads as 'cancelled' instead: the worker may have been killed by the
    SIGTERM before it could record it (e.g. while still loading). A missing or unreadable status reads as
    ``{"state": "unknown"}``.
    """
    status = read_json(Path(run_dir) / STATUS_FILE)
    if not isinstance(status, dict) or not isinstance(status.get("state"), str):
        return {"state": "unknown"}
    pid = status.get("pid")
    on_this_host = status.get("host") in (None, socket.gethostname())  # other hosts' pids mean nothing here
    if status["state"] in LIVE_STATES and pid is not None and on_this_host:
        start = status.get("pid_start")
        if not pid_alive(pid, start if isinstance(start, int) else None):
            gone = "cancelled" if stop_requested(run_dir) else "interrupted"
            status = {**status, "state": gone, "interrupted_from": status["state"]}
    return status


def request_stop(run_dir: Path) -> None:
    """Ask the worker to stop at its next check (cooperative cancel)."""
    (Path(run_dir) / STOP_FILE).touch(exist_ok=True)


def clear_stop(run_dir: Path) -> None:
    """Forget an earlier stop request (a resumed run must not stop at its first step)."""
    (Path(run_dir) / STOP_FILE).unlink(missing_ok=True)


def stop_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / STOP_FILE).exists()


# ---------------------------------------------------------------- listing
def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _eval_accuracy(evaluation: Any, who: str) -> float | None:
    # eval.json holds {"student": {metrics}, "teacher": {metrics}} (teacher for distillation runs only).
    part = evaluation.get(who) if isinstance(evaluation, dict) else None
    return _number(part.get("accuracy")) if isinstance(part, dict) else None


def iter_run_dirs(root: Path) -> Iterator[Path]:
    """Folders directly under ``root`` that hold a config.json or status.json (hidden and escaping ones skipped)."""
    root = Path(root)
    try:
        children = sorted(root.iterdir())
        root_resolved = root.resolve()
    except OSError:
        return
    for child in children:
        try:
            if child.name.startswith(".") or not child.is_dir():
                continue
            if not child.resolve().is_relative_to(root_resolved):
                continue
            if (child / CONFIG_FILE).is_file() or (child / STATUS_FILE).is_file():
                yield child
        except OSError:
            continue


def _summarize(run_dir: Path) -> dict | None:
    config = read_json(run_dir / CONFIG_FILE, {})
    config = config if isinstance(config, dict) else {}
    status = read_status(run_dir)
    if not config and status["state"] == "unknown":
        return None
    data_section = config.get("data")
    data: dict = data_section if isinstance(data_section, dict) else {}
    epoch_rows = [row for row in _read_metrics(run_dir, warn=False) if row.get("kind") == "epoch"]
    valid_accuracies = [v for v in (_number(row.get("valid_accuracy")) for row in epoch_rows) if v is not None]
    evaluation = read_json(eval_path(run_dir))
    created_at = _number(status.get("created_at"))
    if created_at is None:
        created_at = run_dir.stat().st_mtime
    return {
        "id": run_dir.name, "path": str(run_dir), "mode": config.get("mode"), "state": status["state"],
        "waiting": bool(status.get("waiting", False)), "created_at": created_at,
        "started_at": _number(status.get("started_at")), "finished_at": _number(status.get("finished_at")),
        "student": config.get("student"), "teacher": config.get("teacher"), "data_source": data.get("source"),
        "epochs_done": len(epoch_rows), "best_valid_accuracy": max(valid_accuracies) if valid_accuracies else None,
        "test_accuracy": _eval_accuracy(evaluation, "student"),
        "teacher_test_accuracy": _eval_accuracy(evaluation, "teacher"), "error": status.get("error"),
    }


def list_runs(root: Path) -> list[dict]:
    """One summary dict per run, newest first; folders that are not runs or cannot be read are skipped."""
    summaries = []
    for run_dir in iter_run_dirs(root):
        try:
            summary = _summarize(run_dir)
        except (OSError, ValueError, TypeError, AttributeError):
            continue  # foreign or damaged folder: a listing must never fail because of one
        if summary is not None:
            summaries.append(summary)
    summaries.sort(key=lambda s: (s["created_at"], s["id"]), reverse=True)
    return summaries

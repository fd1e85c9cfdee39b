"""The run store: one folder per run under a root, written only by this module.

Layout: ``config.json``, ``status.json``, ``metrics.jsonl``, ``eval.json``, ``model/``,
``worker.log`` and a ``STOP`` flag file. Every JSON write is atomic (temp file in the same folder, fsync,
rename, fsync of the folder), so a run killed at any moment leaves files that load. Times are unix seconds
(floats) everywhere, so durations are a subtraction and sorting needs no parsing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distill_core import processes, storage
from distill_core.errors import UserError

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
BENCH_FILE = "bench.json"              # the Benchmark page's rows for a run's model (Compare, model card)
MODEL_DIR = "model"
STAGING_SUFFIXES = (".tmp", ".old")  # checkpoints.py swaps model/ and checkpoint/ in through these
STATUS_LOCK_FILE = ".status.lock"
CHECKPOINT_DIR = "checkpoint"          # the last completed epoch, for resume (distill_core.checkpoints)
TRAINER_STATE_FILE = "trainer_state.json"  # in CHECKPOINT_DIR: epoch, step and early-stopping state

_RUN_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_RUN_NAME_RULE = "use 1-64 characters from A-Z a-z 0-9 . _ - (not starting with '.' or '-', no '..')"


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


# ---------------------------------------------------------------- runs
def create_run(root: Path, name: str, config: dict, **status_fields: Any) -> Path:
    """Create run ``name`` with its config and a 'queued' status (plus ``status_fields``, e.g. ``depends_on``);
    refuses to touch an existing run."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    run_dir = resolve_run_dir(root, name)
    try:
        run_dir.mkdir()  # atomic: of two concurrent creators exactly one wins
    except FileExistsError:
        raise UserError(f"run {run_dir.name!r} already exists: choose another name or delete it") from None
    try:
        storage.write_json_atomic(run_dir / CONFIG_FILE, config)
        storage.write_json_atomic(run_dir / STATUS_FILE,
                                  {"state": "queued", "created_at": time.time(), **status_fields})
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
    if status.get("showcase"):  # distill_core.showcase marks its runs read-only
        raise UserError(f"run {run_dir.name!r} belongs to the showcase and is read-only: it is not deleted "
                        "(remove its folder by hand to rebuild it with `python -m distill_core showcase`)")
    if status.get("state") == "running" or (status.get("state") == "queued" and status.get("pid")):
        raise UserError(f"run {run_dir.name!r} is still {status['state']}: stop it first, then delete it")
    shutil.rmtree(run_dir)


def update_config(run_dir: Path, **fields: Any) -> dict:
    """Merge ``fields`` into a run's config.json (e.g. a teacher path after its run was renamed); returns it.

    Only for runs that no worker is reading: a worker loads its config once, when it starts.
    """
    path = Path(run_dir) / CONFIG_FILE
    with storage.file_lock(Path(run_dir) / STATUS_LOCK_FILE):
        config = storage.read_json(path, {})
        if not isinstance(config, dict):
            raise UserError(f"{path} is not a run config (not a JSON object): fix or delete the run")
        config.update(fields)
        storage.write_json_atomic(path, config)
    return config


def rename_run(root: Path, name: str, new_name: str) -> Path:
    """Move run folder ``name`` to ``new_name`` in the same runs folder; returns the new folder.

    Only the folder moves: whether the run may be renamed, and the other runs that name it, are
    distill_core.manage's business. The new name is claimed with mkdir first (atomic, as in create_run), then
    the run is renamed over that empty folder, so a run created under the same name meanwhile is never
    overwritten.
    """
    run_dir = resolve_run_dir(root, name)
    target = resolve_run_dir(root, new_name)
    if not run_dir.is_dir():
        raise UserError(f"no run named {run_dir.name!r} in {Path(root).resolve()}: check the name")
    try:
        target.mkdir()
    except FileExistsError:
        raise UserError(f"a run named {target.name!r} already exists: choose another name") from None
    try:
        os.replace(run_dir, target)  # POSIX renames a folder over an empty one atomically
    except OSError:
        target.rmdir()
        raise
    return target


def append_metric(run_dir: Path, row: dict) -> None:
    """Append one JSON line to metrics.jsonl and force it to disk; adds ``time`` (unix seconds) if missing."""
    row = dict(row)
    row.setdefault("time", time.time())
    path = metrics_path(run_dir)
    line = json.dumps(row, ensure_ascii=False)  # no indent: never contains a raw newline
    storage.refuse_tokens(line, path)
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
        raise storage.write_error(exc, path) from exc
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
def _stamp_pid(fields: dict) -> None:
    pid = fields.get("pid")
    if isinstance(pid, int) and pid > 0 and "pid_start" not in fields:
        fields["pid_start"] = processes.process_start_time(pid)
        fields.setdefault("host", socket.gethostname())


def _mutate_status(run_dir: Path, state: str | None, fields: dict) -> dict:
    run_dir = Path(run_dir)
    _stamp_pid(fields)
    # Read-modify-write under a lock: the UI (recording a pid) and the worker (setting running) race otherwise.
    with storage.file_lock(run_dir / STATUS_LOCK_FILE):
        status = storage.read_json(run_dir / STATUS_FILE, {})
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
        storage.write_json_atomic(run_dir / STATUS_FILE, status)
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
    status = storage.read_json(Path(run_dir) / STATUS_FILE)
    if not isinstance(status, dict) or not isinstance(status.get("state"), str):
        return {"state": "unknown"}
    pid = status.get("pid")
    on_this_host = status.get("host") in (None, socket.gethostname())  # other hosts' pids mean nothing here
    if status["state"] in LIVE_STATES and pid is not None and on_this_host:
        start = status.get("pid_start")
        if not processes.pid_alive(pid, start if isinstance(start, int) else None):
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
    config = storage.read_json(run_dir / CONFIG_FILE, {})
    config = config if isinstance(config, dict) else {}
    status = read_status(run_dir)
    if not config and status["state"] == "unknown":
        return None
    data_section = config.get("data")
    data: dict = data_section if isinstance(data_section, dict) else {}
    epoch_rows = [row for row in _read_metrics(run_dir, warn=False) if row.get("kind") == "epoch"]
    valid_accuracies = [v for v in (_number(row.get("valid_accuracy")) for row in epoch_rows) if v is not None]
    evaluation = storage.read_json(eval_path(run_dir))
    created_at = _number(status.get("created_at"))
    if created_at is None:
        created_at = run_dir.stat().st_mtime
    return {
        "id": run_dir.name, "path": str(run_dir), "mode": config.get("mode"), "state": status["state"],
        "waiting": bool(status.get("waiting", False)), "created_at": created_at,
        "started_at": _number(status.get("started_at")), "finished_at": _number(status.get("finished_at")),
        "student": config.get("student"), "teacher": config.get("teacher"), "data_source": data.get("source"),
        "epochs_done": sum(1 for row in epoch_rows if not row.get("partial")),  # an epoch cut short is not done
        "best_valid_accuracy": max(valid_accuracies) if valid_accuracies else None,
        "test_accuracy": _eval_accuracy(evaluation, "student"),
        "teacher_test_accuracy": _eval_accuracy(evaluation, "teacher"), "error": status.get("error"),
        "showcase": bool(status.get("showcase")),  # a read-only showcase run (distill_core.showcase)
        "updated_at": _number(status.get("updated_at")), "depends_on": status.get("depends_on"),
        "stage": (config.get("extra") or {}).get("stage") if isinstance(config.get("extra"), dict) else None,
        "has_checkpoint": (run_dir / CHECKPOINT_DIR / TRAINER_STATE_FILE).is_file(),  # resumable (checkpoints.py)
        "resume": bool(status.get("resume")),
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

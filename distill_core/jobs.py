"""Background workers: start, cap, schedule and stop the processes that execute runs.

A run is executed by ``python -m distill_core worker --run-dir RUN`` in its own process and session, so a page
reload, a second tab or a crash of the worker never touches the Streamlit server, and a stop signal reaches
the worker's whole process group (data-loader children included). Everything a job knows lives in the run
store; this module keeps no state that a restarted UI would need.

Concurrency: at most ``$KD_MAX_JOBS`` (default 1: training saturates a small machine) runs are live at once.
Runs over the cap stay ``queued`` with ``waiting: true``; :func:`start_queued`, called by the UI on each poll
and by a worker when it finishes, starts the oldest of them as slots free up. Starting happens under a lock
on the runs root, so concurrent polls from several browser tabs never start one run twice.

Which runs folders share one cap is the caller's policy, passed in as a :class:`SchedulerScope` (by default a
runs folder is its own scope): pipeline.py passes hosted mode's scope (every visitor shares the server's cap), so
this module knows nothing of visitors.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from distill_core import env, processes, runs, storage
from distill_core.errors import UserError

DEFAULT_MAX_JOBS = 1
_SCHEDULER_LOCK = ".jobs.lock"

# Popen objects of the workers this process started. Keeping them lets is_alive reap finished children
# (otherwise they linger as zombies that look alive to os.kill) and avoids Popen's "still running"
# ResourceWarning when an object is garbage collected.
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class SchedulerScope:
    """Runs folders that share one KD_MAX_JOBS cap, and the folder holding their scheduler lock."""
    lock_dir: Path
    roots: tuple[Path, ...]

    @classmethod
    def of(cls, root: Path) -> SchedulerScope:
        """The default scope: a runs folder alone."""
        root = Path(root).resolve()
        return cls(root, (root,))


def max_jobs() -> int:
    """The concurrency cap from ``$KD_MAX_JOBS`` (default 1)."""
    return env.positive_int("KD_MAX_JOBS", DEFAULT_MAX_JOBS)


def is_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a finished child of ours is reaped, not counted)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    return processes.pid_alive(pid)



def is_alive_since(pid: object, start_time: object) -> bool:
    """Whether ``pid`` runs and is the process that started at ``start_time`` (``processes.process_start_time``)."""
    if isinstance(pid, int) and pid in _CHILDREN:
        return is_alive(pid)
    return processes.pid_alive(pid, start_time if isinstance(start_time, int) else None)

def _status_alive(status: dict) -> bool:
    # read_status has already turned live states with a dead pid into "interrupted"; re-check our children,
    # because an unreaped child of this process still passes os.kill(pid, 0) on platforms without /proc.
    pid = status.get("pid")
    return status.get("state") in runs.LIVE_STATES and isinstance(pid, int) and is_alive(pid)


def active_jobs(root: Path, scope: SchedulerScope | None = None) -> int:
    """Runs queued or running with a live worker process in ``scope`` (default: ``root`` alone)."""
    scope = scope or SchedulerScope.of(root)
    return sum(1 for folder in scope.roots for run_dir in runs.iter_run_dirs(folder)
               if _status_alive(runs.read_status(run_dir)))


def _scheduler_lock(scope: SchedulerScope) -> Path:
    return scope.lock_dir / _SCHEDULER_LOCK


def default_worker_argv(run_dir: Path) -> list[str]:
    """The worker command of a run; ``--resume`` when its status asks for it (``"resume": true``, set by
    distill_core.manage.resume_in_background), so a resumed run held back by the cap still resumes when the
    scheduler starts it later."""
    argv = [sys.executable, "-m", "distill_core", "worker", "--run-dir", str(run_dir)]
    if runs.read_status(run_dir).get("resume") is True:
        argv.append("--resume")
    return argv


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    # The worker imports the installed package (pip install -r requirements.txt installs this project).
    return {**os.environ, **(env or {})}


def spawn_detached(argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> int:
    """Start ``argv`` as its own process in its own session, stdout and stderr appended to ``log_path``;
    returns its pid. It outlives the caller (a Streamlit restart does not touch it), a signal to its process
    group (:func:`signal_group`) reaches its children too, and :func:`is_alive` reaps it once it has ended."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_env(env),  # cwd is inherited: configs may hold paths relative to it
            start_new_session=True,  # own process group: survives the UI, and a stop can signal the group
        )
    _CHILDREN[process.pid] = process
    return process.pid


def reap_children() -> None:
    """Collect the detached processes this process started that have ended (so they do not linger as zombies)."""
    for pid in list(_CHILDREN):
        is_alive(pid)


def _spawn(run_dir: Path, argv: Sequence[str], env: Mapping[str, str] | None) -> int:
    pid = spawn_detached(argv, runs.log_path(run_dir), env)
    # The worker may already have set "running"; update_status merges under the status lock and keeps it.
    runs.update_status(run_dir, pid=pid, waiting=False)
    return pid


def start_job(
    run_dir: Path,
    *,
    max_concurrent: int | None = None,
    env: dict | None = None,
    argv: Sequence[str] | None = None,
    scope: SchedulerScope | None = None,
) -> int | None:
    """Start the worker of a queued run; returns its pid, or None when the cap holds it back (``waiting``).

    ``env`` adds variables to the worker's environment (e.g. HF_TOKEN); it is never stored. ``argv`` replaces
    the worker command and exists for tests only. Starting a run that already has a live worker returns that
    worker's pid.
    """
    run_dir = Path(run_dir).resolve()
    scope = scope or SchedulerScope.of(run_dir.parent)
    cap = max_concurrent if max_concurrent is not None else max_jobs()
    with storage.file_lock(_scheduler_lock(scope)):
        status = runs.read_status(run_dir)
        state = status.get("state")
        if state == "unknown":
            raise UserError(f"no run at {run_dir}: create it first")
        if _status_alive(status):
            return int(status["pid"])
        if state != "queued":
            raise UserError(f"run {run_dir.name!r} is {state}: only queued runs can be started; create a new run")
        if active_jobs(run_dir.parent, scope) >= cap:
            runs.update_status(run_dir, waiting=True)
            return None
        return _spawn(run_dir, argv or default_worker_argv(run_dir), env)


def start_queued(
    root: Path,
    *,
    max_concurrent: int | None = None,
    env: dict | None = None,
    argv_for: Callable[[Path], Sequence[str]] | None = None,
    scope: SchedulerScope | None = None,
) -> list[int]:
    """Start the oldest waiting runs while slots are free; returns the pids started (often none).

    Only runs marked ``waiting`` by :func:`start_job` are candidates: a queued run without that mark may be
    executing in-process (the CLI) or about to be started by its creator. ``argv_for`` is for tests only.
    """
    scope = scope or SchedulerScope.of(root)
    cap = max_concurrent if max_concurrent is not None else max_jobs()
    started: list[int] = []
    with storage.file_lock(_scheduler_lock(scope)):
        free = cap - active_jobs(root, scope)
        if free <= 0:
            return started
        waiting = []
        for run_dir in (d for folder in scope.roots for d in runs.iter_run_dirs(folder)):
            status = runs.read_status(run_dir)
            if status.get("state") == "queued" and status.get("waiting") and not status.get("pid"):
                created = status.get("created_at")
                waiting.append((created if isinstance(created, (int, float)) else 0.0, str(run_dir), run_dir))
        for _, _, run_dir in sorted(waiting)[:free]:
            if runs.stop_requested(run_dir):
                continue
            argv = argv_for(run_dir) if argv_for else default_worker_argv(run_dir)
            started.append(_spawn(run_dir, argv, env))
    return started


def start_first_idle(run_dirs: Sequence[Path], *, scope: SchedulerScope | None = None) -> int | None:
    """Start the first queued run of ``run_dirs`` unless one of them has a live worker: runs that must go one at
    a time and in order (a sweep's cells). Returns the pid started, or None: one of them is live, none is left
    to start, or the cap holds the next one back (it is then ``waiting`` and :func:`start_queued` starts it)."""
    if not run_dirs:
        return None
    scope = scope or SchedulerScope.of(Path(run_dirs[0]).parent)
    # The check and the start under one hold of the lock (file_lock lets start_job re-enter it), so two
    # processes that both see none live cannot start two of these runs.
    with storage.file_lock(_scheduler_lock(scope)):
        statuses = [(Path(run_dir), runs.read_status(run_dir)) for run_dir in run_dirs]
        if any(_status_alive(status) for _, status in statuses):
            return None
        for run_dir, status in statuses:
            if status.get("state") == "queued" and not runs.stop_requested(run_dir):
                return start_job(run_dir, scope=scope)
    return None


def signal_group(pid: int, signum: int) -> None:
    """Send ``signum`` to the process group a :func:`spawn_detached` process leads (else to the process)."""
    try:
        # start_new_session makes the worker its group's leader; signal the group only if that still holds.
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def stop_job(run_dir: Path, scope: SchedulerScope | None = None) -> bool:
    """Stop a run: STOP flag plus SIGTERM to the worker's process group; a waiting run is marked cancelled.

    The worker handles SIGTERM cooperatively (it finishes the step, saves state and sets 'cancelled').
    Returns False if there was nothing to stop (the run had already ended).
    """
    run_dir = Path(run_dir).resolve()
    scope = scope or SchedulerScope.of(run_dir.parent)
    with storage.file_lock(_scheduler_lock(scope)):  # so the scheduler cannot start it meanwhile
        status = runs.read_status(run_dir)
        state = status.get("state")
        if state not in runs.LIVE_STATES:
            return False
        runs.request_stop(run_dir)
        if _status_alive(status):
            signal_group(int(status["pid"]), signal.SIGTERM)
            if state == "queued":
                # The worker may die before installing its handler; it would otherwise read as interrupted.
                runs.set_status(run_dir, "cancelled", waiting=False)
        else:
            runs.set_status(run_dir, "cancelled", waiting=False)
    return True

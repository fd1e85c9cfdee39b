"""Benchmarks started from the Benchmark page: measured in their own process, never in the Streamlit server.

Timing inside the server put the page's numbers at the mercy of everything else the server does (other
sessions, reruns, the live panel's polling), and a reload lost them. So the page writes a request and starts
``python -m distill_core bench-job --job-dir DIR`` (:func:`start`), which measures with the CLI's own engine
entry (``inference.measure_specs``: the page and ``python -m distill_core benchmark`` quote the same numbers),
reports progress, writes the result and keeps each run's rows in its ``bench.json``. The page only reads the
files (:func:`latest`, :func:`last_result`): a reload shows the last result again, and a closed tab stops
nothing.

Files, under the runs folder in a dot-folder that the run listing skips::

    <root>/.benchmarks/<job id>/
        request.json    what to measure (models, grid, labels, run folders), written by the page
        job.json        pid and its start time, written by the page as it starts the process
        progress.json   state (running | done | failed), rows done / total, error, written by the job
        result.json     measure_specs' result (rows, speedups, machine, warnings) plus labels
        STOP            written by stop(); the process group gets SIGTERM
        bench.log       the process's stdout and stderr

One benchmark at a time in a scheduler scope (a runs folder; in hosted mode the whole store, see
``hosting.scheduler_scope``): a second start is refused with the one that runs. In hosted mode the grid is
capped (:data:`HOSTED_MAX_CELLS`, :data:`HOSTED_MAX_REPEATS`) and only models the page offered are measured.
"""
from __future__ import annotations

import signal
import sys
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import hosting, jobs, processes, storage
from .errors import UserError

BENCH_DIR = ".benchmarks"
REQUEST_FILE, JOB_FILE, PROGRESS_FILE, RESULT_FILE = "request.json", "job.json", "progress.json", "result.json"
STOP_FILE, LOG_FILE = "STOP", "bench.log"
_START_LOCK = ".benchmarks.lock"
MAX_CELLS = 48          # models x batch sizes x lengths x precisions, locally
HOSTED_MAX_CELLS = 12   # the public demo shares its CPU with every visitor
HOSTED_MAX_REPEATS = 30
MAX_REPEATS = 200


@dataclass(frozen=True)
class Request:
    """What the page asks to measure."""
    specs: list[str]
    batch_sizes: list[int]
    seq_lens: list[int]
    precisions: list[str]
    threads: int | None = None
    warmup: int = 3
    repeats: int = 20
    labels: dict[str, str] = field(default_factory=dict)     # spec -> what the page calls it
    run_dirs: dict[str, str] = field(default_factory=dict)   # spec -> run folder whose bench.json gets its rows

    @property
    def cells(self) -> int:
        return len(self.specs) * len(self.batch_sizes) * len(self.seq_lens) * len(self.precisions)


def check_request(request: Request, allowed_specs: Collection[str], *, hosted: bool) -> None:
    """Every problem with a request at once, in the page's words (UserError), or nothing."""
    problems = []
    if len(request.specs) < 1:
        problems.append("Models: choose at least one model")
    unknown = [s for s in request.specs if s not in allowed_specs]
    if unknown:
        problems.append(f"Models: {', '.join(map(repr, unknown))} is not among the models offered")
    for label, values in (("Batch sizes", request.batch_sizes), ("Sequence lengths", request.seq_lens),
                          ("Precision", request.precisions)):
        if not values:
            problems.append(f"{label}: choose at least one")
    cap_cells = HOSTED_MAX_CELLS if hosted else MAX_CELLS
    if request.cells > cap_cells:
        problems.append(f"{request.cells} measurements is too many here (limit {cap_cells}): use fewer models, batch "
                        "sizes, lengths or precisions, or the CLI: python -m distill_core benchmark ...")
    cap_repeats = HOSTED_MAX_REPEATS if hosted else MAX_REPEATS
    if not 1 <= request.repeats <= cap_repeats:
        problems.append(f"Timed repeats: {request.repeats} is outside 1-{cap_repeats}")
    if request.warmup < 0:
        problems.append(f"Warm-up passes: {request.warmup} is below 0")
    if problems:
        raise UserError("; ".join(problems))


def jobs_dir(root: Path) -> Path:
    return Path(root) / BENCH_DIR


def start(root: Path, request: Request, *, allowed_specs: Collection[str], hosted: bool | None = None,
          argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Start measuring ``request`` in its own process; returns the job's view. ``argv`` is for tests only."""
    hosted = hosting.is_hosted() if hosted is None else hosted
    check_request(request, allowed_specs, hosted=hosted)
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    lock_dir, scope_roots = hosting.scheduler_scope(root)
    with storage.file_lock(Path(lock_dir) / _START_LOCK):
        for folder in scope_roots:
            running = latest(folder)
            if running and running["state"] == "running":
                where = "" if Path(folder) == root else " on this server"
                raise UserError(f"a benchmark is already running{where} (started {running['started']}): wait for it "
                                "to finish or stop it")
        job_dir = jobs_dir(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        job_dir.mkdir(parents=True)
        storage.write_json_atomic(job_dir / REQUEST_FILE, asdict(request))
        command = list(argv or [sys.executable, "-m", "distill_core", "bench-job", "--job-dir", str(job_dir)])
        try:
            pid = jobs.spawn_detached(command, job_dir / LOG_FILE)
        except OSError as exc:
            storage.write_json_atomic(job_dir / PROGRESS_FILE, {"state": "failed", "error": str(exc)})
            raise UserError(f"could not start the benchmark process: {exc}") from exc
        storage.write_json_atomic(job_dir / JOB_FILE, {"pid": pid, "pid_start": processes.process_start_time(pid),
                                                       "started_at": time.time()})
    return view(job_dir)


def stop(root: Path) -> bool:
    """Stop the running benchmark of ``root``; False when none runs."""
    job = latest(root)
    if not job or job["state"] != "running":
        return False
    job_dir = Path(job["dir"])
    (job_dir / STOP_FILE).touch()
    jobs.signal_group(int(job["pid"]), signal.SIGTERM)
    return True


def view(job_dir: Path) -> dict[str, Any]:
    """A job as the page shows it: state (running|done|failed|cancelled), done/total, error, started, dir, pid."""
    job_dir = Path(job_dir)
    job = storage.read_json(job_dir / JOB_FILE, {}) or {}
    progress = storage.read_json(job_dir / PROGRESS_FILE, {}) or {}
    request = storage.read_json(job_dir / REQUEST_FILE, {}) or {}
    state = progress.get("state") or "running"
    started_at = job.get("started_at")
    # A job still starting has no job.json pid for a moment; only a recorded pid that has died is an ending.
    if state == "running" and job.get("pid") and not jobs.is_alive_since(job.get("pid"), job.get("pid_start")):
        stopped = (job_dir / STOP_FILE).exists()
        state = "cancelled" if stopped else "failed"
        progress.setdefault("error", None if stopped else
                            f"the benchmark process ended unexpectedly: see {job_dir / LOG_FILE}")
    return {"dir": str(job_dir), "id": job_dir.name, "state": state, "pid": job.get("pid"),
            "done": progress.get("done", 0), "total": progress.get("total") or _total(request),
            "error": progress.get("error"), "request": request,
            "started": time.strftime("%H:%M:%S", time.localtime(started_at)) if started_at else "just now"}


def _total(request: dict) -> int:
    try:
        return Request(**request).cells
    except TypeError:
        return 0


def _job_dirs(root: Path) -> list[Path]:
    folder = jobs_dir(root)
    if not folder.is_dir():
        return []
    return sorted((d for d in folder.iterdir() if d.is_dir() and (d / REQUEST_FILE).is_file()), reverse=True)


def latest(root: Path) -> dict[str, Any] | None:
    """The newest benchmark job of ``root``, whatever its state, or None."""
    dirs = _job_dirs(root)
    return view(dirs[0]) if dirs else None


def last_result(root: Path) -> dict[str, Any] | None:
    """The newest finished benchmark's result (rows, speedups, machine, warnings, labels), or None."""
    for job_dir in _job_dirs(root):
        result = storage.read_json(job_dir / RESULT_FILE, None)
        if isinstance(result, dict) and isinstance(result.get("rows"), list):
            return result
    return None


def run_job(job_dir: Path) -> dict[str, Any]:
    """The job process's body (``python -m distill_core bench-job``): measure, write the result, keep the rows."""
    from .app.reports import save_bench_rows
    from .inference import measure_specs

    job_dir = Path(job_dir)
    request = Request(**storage.read_json(job_dir / REQUEST_FILE, {}))
    done = [0]

    def progress(event: dict[str, Any]) -> None:
        if event.get("kind") == "bench":
            done[0] += 1
            storage.write_json_atomic(job_dir / PROGRESS_FILE, {"state": "running", "done": done[0],
                                                                "total": request.cells})

    storage.write_json_atomic(job_dir / PROGRESS_FILE, {"state": "running", "done": 0, "total": request.cells})
    try:
        result = measure_specs(request.specs, batch_sizes=sorted(request.batch_sizes),
                               seq_lens=sorted(request.seq_lens), precisions=request.precisions,
                               threads=request.threads, warmup=request.warmup, repeats=request.repeats,
                               on_event=progress)
    except Exception as exc:
        storage.write_json_atomic(job_dir / PROGRESS_FILE, {"state": "failed", "done": done[0],
                                                            "total": request.cells, "error": str(exc)})
        raise
    result = {**result, "labels": request.labels}
    storage.write_json_atomic(job_dir / RESULT_FILE, result)
    save_bench_rows(result["rows"], {spec: Path(d) for spec, d in request.run_dirs.items()}, result["machine"])
    storage.write_json_atomic(job_dir / PROGRESS_FILE, {"state": "done", "done": done[0], "total": request.cells})
    return {"job_dir": str(job_dir), "speedups": result["speedups"], "warnings": result["warnings"]}

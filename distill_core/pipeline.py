"""A run's whole life, owned by the engine: preflight, creation in the store, multi-stage runs, the worker body.

Every face starts work here: the Train page and ``python -m distill_core pipeline --background`` call
:func:`start_run` / :func:`start_pipeline`, which create the runs and start (or queue) their workers; the CLI's
foreground ``pipeline`` runs the same stages in its own process with :func:`run_pipeline_here`.

A stage that waits on another records it in its status (``depends_on``: the other run's name), not in its
config. The worker that finishes a run starts what waits on it, or cancels it with a reason when the run did
not finish, and hands its slot to the next queued run (:func:`finish_run`): nothing waits on a browser tab.
:func:`tick` does the same for every run of a folder, for runs whose worker died before it could.
"""
from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import hardware, hosting, jobs, locations, processes, progress, runs, specs
from .config import TrainConfig, config_to_dict
from .errors import UserError
from .preflight import check_layer_terms, check_run, check_truncation

DEPENDS_ON = "depends_on"   # status.json key: the name of the run (in the same folder) this run waits for
TEACHER_SUFFIX = "-teacher"
_NAME_LIMIT = 64            # runs.sanitize_run_name's limit; the teacher stage's name must fit it too
CLAIMED_BY = "claimed_by"   # status.json key: the pid of a CLI process that runs this queued stage itself
# status.json key: the series (a sweep's group name) of a run. A series runs one run at a time in creation order,
# each started when the one before it ends, whatever its outcome (unlike depends_on, which needs a teacher "done").
SERIES = "series"
EventHandler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Started:
    """What starting work created: every run in execution order, and the one to watch first."""
    runs: tuple[Path, ...]

    @property
    def follow(self) -> Path:
        return self.runs[0]

    def as_dict(self) -> dict[str, Any]:
        return {"runs": [str(r) for r in self.runs], "follow": str(self.follow)}


def scope_of(root: Path) -> jobs.SchedulerScope:
    """The scheduler scope of a runs folder: hosted visitors share one cap with the whole store."""
    lock_dir, roots = hosting.scheduler_scope(root)
    return jobs.SchedulerScope(lock_dir, tuple(roots))


def default_run_name(config: TrainConfig) -> str:
    student = "".join(c if c.isalnum() else "-" for c in specs.spec_label(config.student).split("/")[-1])
    student = "-".join(part for part in student.split("-") if part)[:24]
    return f"{config.mode}-{student or 'model'}-{time.strftime('%m%d-%H%M%S')}"


def run_record(config: TrainConfig, *, created_by: str = "dashboard", **provenance: Any) -> dict[str, Any]:
    """config.json as the worker reads it: the TrainConfig fields plus a free-form provenance section."""
    from . import __version__

    record = config_to_dict(config)
    # The worker trains on this machine, so the precision "auto" resolves to here is the one it will use.
    record["provenance"] = {"kd_studio": __version__, "created_by": created_by, "created_at": time.time(),
                            **hardware.training_precision(config.mixed_precision).as_record(), **provenance}
    return record


def _check_visitor_may(root: Path, *configs: TrainConfig) -> None:
    """Hosted mode: no server paths, and no more live runs than a visitor may have."""
    for config in configs:
        hosting.check_train_config(config, root, locations.allowed_data_folders(root))
    hosting.check_new_runs(root, count=len(configs))


def start_run(root: Path, name: str, config: TrainConfig, *, check: bool = True,
              created_by: str = "dashboard") -> Started:
    """Check a config, create the run in the store and start (or queue) its worker."""
    root = Path(root).resolve()
    _check_visitor_may(root, config)
    facts = check_run(config) if check else {}
    run_dir = runs.create_run(root, runs.sanitize_run_name(name), run_record(config, created_by=created_by, **facts))
    jobs.start_job(run_dir, scope=scope_of(root))
    return Started((run_dir,))


def teacher_stage_config(distill: TrainConfig, base_spec: str, *, epochs: int, lr: float) -> TrainConfig:
    """The fine-tuning run that makes a teacher for ``distill`` from a base model (same data and seed)."""
    # The teacher learns from the labelled rows only: transfer text is the distillation's, not the fine-tune's.
    teacher_data = replace(distill.data, transfer=None, transfer_samples=None)
    return TrainConfig(mode="finetune", data=teacher_data, student=base_spec, epochs=epochs, lr=lr,
                       batch_size=distill.batch_size, optimizer="adamw", warmup_ratio=distill.warmup_ratio,
                       weight_decay=distill.weight_decay, dropout=None, attention_dropout=None,
                       patience=distill.patience,
                       seed=distill.seed, eval_batch_size=distill.eval_batch_size,
                       log_every_steps=distill.log_every_steps, mixed_precision=distill.mixed_precision,
                       extra={"stage": "teacher"})


def stage_names(name: str) -> tuple[str, str]:
    """(teacher stage, distillation stage) run names of pipeline ``name``; both fit the run-name limit."""
    name = runs.sanitize_run_name(name)
    return runs.sanitize_run_name(name[:_NAME_LIMIT - len(TEACHER_SUFFIX)] + TEACHER_SUFFIX), name


def _pipeline_plan(root: Path, name: str, teacher_config: TrainConfig, distill_config: TrainConfig
                   ) -> tuple[str, str, TrainConfig, dict[str, Any]]:
    """Check both stages before anything exists; returns the stage names, the distillation config that reads
    its teacher from the first stage's folder, and the provenance facts."""
    teacher_name, distill_name = stage_names(name)
    for run_name in (teacher_name, distill_name):
        if (root / run_name).exists():
            raise UserError(f"run {run_name!r} already exists: choose another name")
    facts = check_run(teacher_config)
    check_truncation(distill_config.student, teacher_config.student)
    # The teacher does not exist yet: judge the layer terms against the base it will be fine-tuned from.
    check_layer_terms(distill_config, teacher_spec=teacher_config.student)
    distill_config = replace(distill_config, teacher=str(root / teacher_name))
    distill_config.validate()
    return teacher_name, distill_name, distill_config, facts


def start_pipeline(root: Path, name: str, teacher_config: TrainConfig, distill_config: TrainConfig, *,
                   created_by: str = "dashboard") -> Started:
    """Fine-tune a teacher (run ``NAME-teacher``), then distil from it (run ``NAME``), in background workers.

    Both runs are created at once; the distillation run is queued with ``depends_on`` naming the teacher run,
    and the teacher's worker starts it when it is done (or cancels it when it is not).
    """
    root = Path(root).resolve()
    _check_visitor_may(root, teacher_config, distill_config)
    teacher_name, distill_name, distill_config, facts = _pipeline_plan(root, name, teacher_config, distill_config)
    teacher_dir = runs.create_run(root, teacher_name, run_record(teacher_config, created_by=created_by, **facts))
    distill_dir = runs.create_run(root, distill_name, run_record(distill_config, created_by=created_by, **facts),
                                  **{DEPENDS_ON: teacher_name})
    jobs.start_job(teacher_dir, scope=scope_of(root))
    return Started((teacher_dir, distill_dir))


def depends_on(run_dir: Path) -> str | None:
    """The name of the run ``run_dir`` waits for, if any."""
    value = runs.read_status(run_dir).get(DEPENDS_ON)
    return value if isinstance(value, str) else None


def next_stage(run_dir: Path) -> Path | None:
    """The run that waits for ``run_dir`` (a pipeline's distillation stage), if any."""
    run_dir = Path(run_dir).resolve()
    for other in runs.iter_run_dirs(run_dir.parent):
        if depends_on(other) == run_dir.name:
            return other
    return None


def release_dependents(run_dir: Path) -> list[str]:
    """Start what waits on a finished run, or cancel it with a reason when the run ended otherwise.

    Returns the names of runs started or cancelled. Safe to call from several processes at once: start_job
    holds the scheduler lock and starts a run at most once.
    """
    run_dir = Path(run_dir).resolve()
    state = runs.read_status(run_dir).get("state")
    if state in runs.LIVE_STATES:
        return []
    changed = []
    for other in runs.iter_run_dirs(run_dir.parent):
        status = runs.read_status(other)
        if status.get(DEPENDS_ON) != run_dir.name or status.get("state") != "queued" or status.get("pid") \
                or status.get("waiting") or processes.pid_alive(status.get(CLAIMED_BY)):
            continue
        if state == "done":
            jobs.start_job(other, scope=scope_of(run_dir.parent))
        else:
            runs.set_status(other, "cancelled", error=f"its teacher run {run_dir.name!r} ended {state}: nothing "
                                                      "to distil from")
        changed.append(other.name)
    return changed


def series_runs(root: Path, series: str) -> list[Path]:
    """The runs of ``series`` in ``root``, in creation order."""
    found = []
    for run_dir in runs.iter_run_dirs(root):
        status = runs.read_status(run_dir)
        if status.get(SERIES) == series:
            created = status.get("created_at")
            found.append((created if isinstance(created, (int, float)) else 0.0, run_dir.name, run_dir))
    return [run_dir for *_, run_dir in sorted(found)]


def start_series(root: Path, series: str) -> int | None:
    """Start the next queued run of ``series`` unless one of its runs is live; returns the pid started, if any.

    Queued runs claimed by a foreground CLI are its own: left alone while it lives, cancelled once it has gone
    (nobody else would ever run them, and starting them behind its back would surprise whoever stopped it).
    """
    root = Path(root).resolve()
    members = series_runs(root, series)
    for run_dir in members:
        status = runs.read_status(run_dir)
        claimer = status.get(CLAIMED_BY)
        if status.get("state") != "queued" or not claimer:
            continue
        if processes.pid_alive(claimer):
            return None
        runs.set_status(run_dir, "cancelled", error=f"the process that ran its sweep (pid {claimer}) ended before "
                                                    "it got to this run")
    return jobs.start_first_idle(members, scope=scope_of(root))


def _start_series_of(run_dir: Path) -> None:
    series = runs.read_status(run_dir).get(SERIES)
    if isinstance(series, str):
        start_series(run_dir.parent, series)


def finish_run(run_dir: Path) -> None:
    """What a worker does as it exits: start or cancel what waits on its run, start the next run of its series,
    then hand the freed slot on."""
    run_dir = Path(run_dir).resolve()
    release_dependents(run_dir)
    _start_series_of(run_dir)
    jobs.start_queued(run_dir.parent, scope=scope_of(run_dir.parent))


def tick(root: Path) -> list[str]:
    """One scheduler pass over a runs folder: start waiting runs as slots free up and settle the stages whose
    prerequisite ended without a worker to say so (killed, or cancelled while still queued)."""
    root = Path(root).resolve()
    jobs.start_queued(root, scope=scope_of(root))
    changed = []
    series_queued = set()
    for run_dir in runs.iter_run_dirs(root):
        status = runs.read_status(run_dir)
        if status.get("state") == "queued" and isinstance(status.get(SERIES), str):
            series_queued.add(status[SERIES])
        name = depends_on(run_dir)
        if name and runs.read_status(run_dir).get("state") == "queued":
            try:
                prerequisite = runs.resolve_run_dir(root, name)
            except UserError:
                continue
            if prerequisite.is_dir():
                changed += release_dependents(prerequisite)
            else:
                runs.set_status(run_dir, "cancelled", error=f"its teacher run {name!r} no longer exists")
                changed.append(run_dir.name)
    for series in sorted(series_queued):  # a series whose live run died without a worker to start the next
        start_series(root, series)
    return changed


def stop_run(run_dir: Path) -> bool:
    """Stop a run (see jobs.stop_job); a stage waiting on it is cancelled with the reason."""
    run_dir = Path(run_dir).resolve()
    stopped = jobs.stop_job(run_dir, scope=scope_of(run_dir.parent))
    if stopped and runs.read_status(run_dir).get("state") == "cancelled":
        release_dependents(run_dir)  # a queued run has no worker that would do it
        _start_series_of(run_dir)
    return stopped


def run_worker(run_dir: Path, *, resume: bool = False) -> dict[str, Any]:
    """The body of ``python -m distill_core worker``: train a queued run folder in this process (with
    ``resume``, from its last completed epoch), keep its status truthful whatever happens, then start what
    waits on it."""
    from .config import load_train_config
    from .train import execute, prepare

    run_dir = Path(run_dir).resolve()
    try:
        config = load_train_config(run_dir / runs.CONFIG_FILE)
        recorder = _preparing(run_dir)
        result = execute(prepare(config, on_event=recorder), run_dir, resume=resume, recorder=recorder)
    except UserError as exc:
        runs.set_status(run_dir, "failed", error=str(exc))
        raise
    except Exception as exc:
        # execute() records failures of training itself; this catches the rest (e.g. a model that fails to load
        # with an unexpected error), which would otherwise read as 'interrupted' once this process is gone.
        if runs.read_status(run_dir).get("state") not in runs.TERMINAL_STATES:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            runs.set_status(run_dir, "failed", error=f"{type(exc).__name__}: {first_line}")
        raise
    finally:
        try:
            finish_run(run_dir)
        except Exception as exc:  # never mask the run's own outcome; tick() settles what is left
            warnings.warn(f"could not start the runs waiting on {run_dir.name}: {exc}", stacklevel=1)
    return {"run": str(run_dir), "state": result["state"]}


def _preparing(run_dir: Path) -> progress.Recorder:
    """Mark the run running and start its progress record at "preparing" (loading data and models), from the
    moment its status says it started."""
    status = runs.set_status(run_dir, "running", pid=os.getpid(), phase="preparing")
    recorder = progress.store_recorder(run_dir)
    recorder.start("preparing", "preparing: loading data and models", at=status.get("started_at"))
    return recorder


def _run_here(run_dir: Path, config: TrainConfig, on_event: EventHandler) -> dict[str, Any]:
    from .train import execute, prepare

    recorder = _preparing(run_dir)

    def both(event: dict[str, Any]) -> None:
        recorder(event)
        on_event(event)

    try:
        return execute(prepare(config, on_event=both), run_dir, on_event=on_event, recorder=recorder)
    except UserError as exc:
        runs.set_status(run_dir, "failed", error=str(exc))
        raise


def run_in_this_process(run_dir: Path, config: TrainConfig, on_event: EventHandler) -> dict[str, Any]:
    """Train a created, queued run in this process (a foreground CLI command), its status kept as a worker's."""
    return _run_here(run_dir, config, on_event)


def run_pipeline_here(root: Path, name: str, teacher_config: TrainConfig, distill_config: TrainConfig, *,
                      on_event: EventHandler) -> list[dict[str, Any]]:
    """The CLI's foreground pipeline: the same two runs as :func:`start_pipeline`, trained in this process one
    after the other (progress to ``on_event``); returns each stage's result.

    The distillation run names this process as its owner (``claimed_by``) while it waits, so a dashboard's
    scheduler pass never starts it a second time in the background (a pid in ``pid`` would count against the
    job cap).
    """
    root = Path(root).resolve()
    teacher_name, distill_name, distill_config, facts = _pipeline_plan(root, name, teacher_config, distill_config)
    teacher_dir = runs.create_run(root, teacher_name, run_record(teacher_config, created_by="cli", **facts))
    distill_dir = runs.create_run(root, distill_name, run_record(distill_config, created_by="cli", **facts),
                                  **{DEPENDS_ON: teacher_name})
    runs.update_status(distill_dir, **{CLAIMED_BY: os.getpid()})
    try:
        on_event({"kind": "note", "message": f"stage 1/2: fine-tune the teacher ({teacher_name})"})
        results = [_run_here(teacher_dir, teacher_config, on_event)]
    finally:
        if runs.read_status(teacher_dir).get("state") != "done":
            runs.set_status(distill_dir, "cancelled", error=f"its teacher run {teacher_name!r} ended "
                                                            f"{runs.read_status(teacher_dir).get('state')}")
    if results[0]["state"] == "done":
        on_event({"kind": "note", "message": f"stage 2/2: distil ({distill_name})"})
        results.append(_run_here(distill_dir, distill_config, on_event))
    return results

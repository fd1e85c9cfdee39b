"""Operations on runs that exist: delete, rename, resume in the background, and the settings to clone.

The Runs page and the CLI (`delete`, `rename`, `resume --background`) call these functions; the rules live here
once, so both faces refuse the same things in the same way:

- A live run (queued or running) is never deleted or renamed: stop it first (:func:`stop_runs`).
- A showcase run is read-only: never deleted, renamed or resumed.
- Other runs may name a run: as their teacher (config ``teacher``: the run's folder, or its ``model/``; a
  pipeline's distillation stage does) or as the run they wait for (status ``depends_on``). While such a run is
  live, the run it names is neither deleted nor renamed (its worker reads that folder). Once it has ended, a
  rename rewrites its references to the new folder, so Compare still finds the teacher; a delete leaves them as
  they are (a finished student does not need its teacher) and :func:`plan_delete` says which runs lose it.
- Resume continues an interrupted, cancelled or failed run from its checkpoint, in a background worker started
  with ``--resume``. The status keeps ``"resume": true``, so a run the job cap holds back still resumes when
  the scheduler starts it (jobs.default_worker_argv reads it). Resuming a pipeline's teacher stage also queues
  again the distillation stage that was cancelled because the teacher did not finish.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checkpoints, hosting, jobs, pipeline, runs, storage
from .errors import UserError

SPEC_FIELDS = ("teacher", "student")  # config fields that may name another run's folder
RESUMABLE_STATES = frozenset({"interrupted", "cancelled", "failed"})


@dataclass(frozen=True)
class Reference:
    """Run ``name`` (state ``state``) names another run: as its ``teacher``/``student`` spec or ``depends_on``."""
    name: str
    state: str
    how: str

    @property
    def live(self) -> bool:
        return self.state in runs.LIVE_STATES


@dataclass(frozen=True)
class DeletePlan:
    """What deleting ``names`` would do: ``problems`` refuse it; ``notes`` are consequences worth a word."""
    names: tuple[str, ...]
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resumed:
    """A resumed run: its worker's pid (None: held back by the job cap) and the stages queued again with it."""
    run: Path
    pid: int | None
    requeued: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {"run": str(self.run), "pid": self.pid, "waiting": self.pid is None, "requeued": list(self.requeued)}


# ---------------------------------------------------------------- looking runs up
def existing_run(root: Path, name: str) -> Path:
    """The folder of run ``name`` in ``root``; a UserError when there is none."""
    run_dir = runs.resolve_run_dir(root, name)
    if not (run_dir / runs.CONFIG_FILE).is_file() and not (run_dir / runs.STATUS_FILE).is_file():
        raise UserError(f"no run named {run_dir.name!r} in {Path(root).resolve()}: check the name")
    return run_dir


def _names_folder(spec: Any, run_dir: Path) -> bool:
    """Whether a model spec points into ``run_dir`` (the run folder itself, or its model/)."""
    if not isinstance(spec, str) or not spec or spec.startswith(("bundled:", "truncate:", "config:")):
        return False
    path = Path(spec).expanduser()
    if not path.is_absolute() and not spec.startswith("."):
        return False  # a Hub id
    return path.resolve().is_relative_to(run_dir)


def references(root: Path, name: str) -> list[Reference]:
    """The other runs of ``root`` that name run ``name`` (as teacher or student spec, or as depends_on)."""
    run_dir = runs.resolve_run_dir(root, name)
    found = []
    for other in runs.iter_run_dirs(root):
        if other.resolve() == run_dir:
            continue
        config = storage.read_json(other / runs.CONFIG_FILE, {})
        config = config if isinstance(config, dict) else {}
        status = runs.read_status(other)
        state = str(status.get("state"))
        for spec_field in SPEC_FIELDS:
            if _names_folder(config.get(spec_field), run_dir):
                found.append(Reference(other.name, state, spec_field))
        if status.get(pipeline.DEPENDS_ON) == run_dir.name:
            found.append(Reference(other.name, state, "depends_on"))
    return found


def _live_users(refs: Iterable[Reference]) -> list[str]:
    return sorted({ref.name for ref in refs if ref.live})


def _refuse_read_only_or_live(run_dir: Path, action: str) -> dict:
    """The run's status; a UserError when it is a showcase run or still queued or running."""
    status = runs.read_status(run_dir)
    if status.get("showcase"):
        raise UserError(f"run {run_dir.name!r} belongs to the showcase and is read-only: it cannot be {action}")
    if status.get("state") in runs.LIVE_STATES:
        raise UserError(f"run {run_dir.name!r} is {status['state']}: stop it first, then it can be {action}")
    return status


# ---------------------------------------------------------------- delete and stop
def plan_delete(root: Path, names: Sequence[str]) -> DeletePlan:
    """Every reason not to delete ``names`` (all of them at once), and what deleting them would leave."""
    problems: list[str] = []
    notes: list[str] = []
    chosen = set(names)
    if not names:
        problems.append("no run selected: pick the runs to delete")
    for name in names:
        try:
            run_dir = existing_run(root, name)
            _refuse_read_only_or_live(run_dir, "deleted")
        except UserError as exc:
            problems.append(str(exc))
            continue
        refs = [ref for ref in references(root, name) if ref.name not in chosen]
        live = _live_users(refs)
        if live:
            problems.append(f"run {name!r} is used by {', '.join(map(repr, live))}, still queued or running: "
                            "stop those first")
        elif refs:
            users = sorted({ref.name for ref in refs})
            notes.append(f"run {name!r} is the teacher of {', '.join(map(repr, users))}: they keep their own "
                         "models, but Compare will no longer show the teacher beside them")
    return DeletePlan(tuple(names), tuple(problems), tuple(notes))


def delete_runs(root: Path, names: Sequence[str]) -> list[str]:
    """Delete runs ``names`` (folders and all) after checking every one of them; returns the names deleted.

    Nothing is deleted when any of them is refused: one UserError lists every problem."""
    plan = plan_delete(root, names)
    if plan.problems:
        raise UserError("; ".join(plan.problems))
    for name in names:
        runs.delete_run(root, name)  # checks again under its own rules (a run started meanwhile is refused)
    return list(names)


def stop_runs(root: Path, names: Sequence[str]) -> list[str]:
    """Stop the live runs among ``names`` (pipeline.stop_run: the STOP file and SIGTERM; a queued run is
    cancelled at once); returns those that were live."""
    return [name for name in names if pipeline.stop_run(existing_run(root, name))]


# ---------------------------------------------------------------- rename
def _moved(spec: str, old_dir: Path, new_dir: Path) -> str:
    return str(new_dir / Path(spec).expanduser().resolve().relative_to(old_dir))


def rename_run(root: Path, name: str, new_name: str, *, field: str = "--to") -> tuple[Path, list[str]]:
    """Rename run ``name`` to ``new_name``; returns the new folder and the runs whose references were updated.

    ``field`` names the new-name input in errors, in the words of the interface (the CLI flag, a form label).
    """
    run_dir = existing_run(root, name)
    try:
        new_name = runs.sanitize_run_name(new_name)
    except UserError as exc:
        raise UserError(f"{field}: {exc}") from None
    if new_name == run_dir.name:
        raise UserError(f"{field}: the run is already called {new_name!r}: type a different name")
    if runs.resolve_run_dir(root, new_name).exists():
        raise UserError(f"{field}: a run named {new_name!r} already exists: choose another name")
    _refuse_read_only_or_live(run_dir, "renamed")
    refs = references(root, name)
    live = _live_users(refs)
    if live:
        raise UserError(f"run {name!r} is used by {', '.join(map(repr, live))}, still queued or running: rename it "
                        "once they have ended (or stop them)")
    try:
        new_dir = runs.rename_run(root, name, new_name)
    except UserError as exc:
        raise UserError(f"{field}: {exc}") from None
    for ref in refs:
        other = runs.resolve_run_dir(root, ref.name)
        if ref.how == "depends_on":
            runs.update_status(other, **{pipeline.DEPENDS_ON: new_dir.name})
        else:
            spec = storage.read_json(other / runs.CONFIG_FILE, {}).get(ref.how)
            runs.update_config(other, **{ref.how: _moved(spec, run_dir, new_dir)})
    return new_dir, sorted({ref.name for ref in refs})


# ---------------------------------------------------------------- resume
def why_not_resume(state: str | None, *, has_checkpoint: bool, showcase: bool = False) -> str | None:
    """Why a run in ``state`` cannot be resumed, or None when it can (pure: the Runs table asks for every row)."""
    if showcase:
        return "a showcase run is read-only"
    if state in runs.LIVE_STATES:
        return f"it is {state}"
    if state == "done":
        return "it has finished"
    if state not in RESUMABLE_STATES:
        return f"its state is {state}"
    if not has_checkpoint:
        return "it stopped before its first epoch ended (no checkpoint): start a new run instead"
    return None


def resume_in_background(root: Path, name: str) -> Resumed:
    """Queue run ``name`` again to continue from its checkpoint in a background worker (``worker --resume``).

    The worker starts now, or when the job cap frees a slot; the stages that waited on this run and were
    cancelled because it did not finish (never started, not stopped themselves) are queued again behind it.
    """
    root = Path(root).resolve()
    run_dir = existing_run(root, name)
    status = runs.read_status(run_dir)
    reason = why_not_resume(status.get("state"), has_checkpoint=checkpoints.read_checkpoint_state(run_dir) is not None,
                            showcase=bool(status.get("showcase")))
    if reason:
        raise UserError(f"run {run_dir.name!r} cannot be resumed: {reason}")
    hosting.check_new_runs(root, count=1)
    runs.clear_stop(run_dir)  # an earlier Stop must not end the resumed run at its first step
    # pid None: a stale pid would make the run read as interrupted again before its worker starts.
    runs.set_status(run_dir, "queued", resume=True, pid=None, pid_start=None, waiting=False, error=None,
                    finished_at=None, **{pipeline.CLAIMED_BY: None})
    requeued = []
    for other in runs.iter_run_dirs(root):
        other_status = runs.read_status(other)
        if (other_status.get(pipeline.DEPENDS_ON) == run_dir.name and other_status.get("state") == "cancelled"
                and not other_status.get("started_at") and not runs.stop_requested(other)):
            runs.set_status(other, "queued", error=None, finished_at=None, waiting=False)
            requeued.append(other.name)
    pid = jobs.start_job(run_dir, scope=pipeline.scope_of(root))
    return Resumed(run_dir, pid, tuple(requeued))


# ---------------------------------------------------------------- clone
def clone_settings(root: Path, name: str) -> dict[str, Any]:
    """What the Train form needs to start a run like ``name``: ``config`` (the TrainConfig fields of its
    config.json, provenance left out) and, for a pipeline's distillation stage, ``teacher_stage`` (the base
    model, epochs and learning rate its teacher was fine-tuned with), else None."""
    from .config import config_to_dict, load_train_config

    run_dir = existing_run(root, name)
    config = config_to_dict(load_train_config(run_dir / runs.CONFIG_FILE))
    teacher_stage = None
    prerequisite = pipeline.depends_on(run_dir)
    if prerequisite:
        try:
            teacher = config_to_dict(load_train_config(existing_run(root, prerequisite) / runs.CONFIG_FILE))
        except UserError:
            teacher = None  # the teacher stage was deleted: clone the distillation alone
        if teacher is not None:
            teacher_stage = {"base": teacher["student"], "epochs": teacher["epochs"], "lr": teacher["lr"]}
    return {"config": config, "teacher_stage": teacher_stage}

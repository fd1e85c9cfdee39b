"""A run as the live panel shows it: status, phase and counts, elapsed time and an ETA over every phase left (and,
for a pipeline, over both stages), curves, evaluation, the run's summary and the worker's last words."""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

from .. import pipeline, progress, runs, storage
from ..config import train_config_from_dict
from . import datasets, estimate

STAGE_LABELS = ("fine-tune the teacher", "distil")


@dataclass(frozen=True)
class Stage:
    """Where a run sits in a pipeline: stage ``index`` of ``count``, and what that stage does."""
    index: int
    count: int
    label: str

    def __str__(self) -> str:
        return f"stage {self.index}/{self.count}: {self.label}"


@dataclass
class LiveView:
    status: dict
    config: dict
    step_rows: list[dict]
    epoch_rows: list[dict]
    step: int | None
    total_steps: int | None
    eta_s: float | None            # seconds left of the whole job (a pipeline: both stages); None once ended
    evaluation: dict | None
    snapshot: progress.Snapshot
    elapsed_s: float | None = None  # since the job started (a pipeline: its first stage); None while queued
    waited_s: float | None = None   # a queued run: since it was created
    fraction: float = 0.0           # of the job's time, elapsed / (elapsed + left)
    stage: Stage | None = None

    @property
    def state(self) -> str:
        return str(self.status.get("state", "unknown"))

    @property
    def progress(self) -> float:
        return 1.0 if self.state == "done" else self.fraction

    @property
    def epochs_done(self) -> int:
        """Whole epochs: a partial one (a run stopped mid-epoch) is not done."""
        return sum(1 for r in self.epoch_rows if not r.get("partial"))

    @property
    def phase_text(self) -> str:
        if self.snapshot.phase is None and self.step and self.total_steps:  # a run recorded before phases
            return f"training · step {self.step} / {self.total_steps}"
        return progress.bar_text(self.snapshot)

    @property
    def precision_text(self) -> str:
        """What the run trains in, for the run header: 'fp32' / 'bf16 autocast', and why when "auto" chose it.
        Runs recorded before the precision was resolved say nothing."""
        provenance = self.config.get("provenance") or {}
        resolved = provenance.get("mixed_precision")
        if not isinstance(resolved, str):
            return ""
        shown = {"no": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}.get(resolved, resolved)
        reason = provenance.get("mixed_precision_reason")
        if provenance.get("mixed_precision_requested") == "auto" and isinstance(reason, str):
            return f"{shown} ({reason.split(': ', 1)[-1]})"
        return shown

    @property
    def wall_s(self) -> float | None:
        value = self.status.get("wall_s")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def train_samples_per_s(self) -> float | None:
        value = self.status.get("train_samples_per_s")
        return float(value) if isinstance(value, (int, float)) else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def stage_of(run_dir: Path) -> tuple[Stage | None, Path | None, Path | None]:
    """(stage, the stage before, the stage after) of a pipeline run; (None, None, None) for a lone run."""
    before = pipeline.depends_on(run_dir)
    if before:
        return Stage(2, 2, STAGE_LABELS[1]), Path(run_dir).parent / before, None
    after = pipeline.next_stage(run_dir)
    if after is not None:
        return Stage(1, 2, STAGE_LABELS[0]), None, after
    return None, None, None


@functools.lru_cache(maxsize=128)
def _plan(run_dir: str, created_at: float, sizes: tuple[int, int, int] | None) -> progress.Plan | None:
    """The plan of a run's phases (cached: past runs do not change while one is watched)."""
    path = Path(run_dir)
    raw = storage.read_json(path / runs.CONFIG_FILE, {})
    if not isinstance(raw, dict):
        return None
    try:
        config = train_config_from_dict(raw)
    except Exception:  # a config this version cannot read: no plan, the ETA waits for measured rates
        return None
    if sizes is None:
        sizes = estimate.split_sizes(config, *datasets.estimate_rows(config.data.source))
    if sizes is None:
        return None
    return estimate.run_plan(config, sizes, path.parent, exclude=(path.name,))


def plan_of(run_dir: Path, status: dict, sizes_from: dict | None = None) -> progress.Plan | None:
    recorded = (sizes_from or status).get("sizes")
    sizes = tuple(recorded.get(k, 0) for k in ("train", "validation", "test")) if isinstance(recorded, dict) \
        else None
    return _plan(str(run_dir), _number(status.get("created_at")) or 0.0, sizes)


def _left_s(run_dir: Path, status: dict, now: float, sizes_from: dict | None = None) -> float | None:
    """Seconds left of one run: its progress against its plan while running, its whole plan while queued."""
    state = status.get("state")
    if state not in runs.LIVE_STATES:
        return 0.0
    plan = plan_of(run_dir, status, sizes_from)
    snapshot = progress.Snapshot.from_dict(status.get("progress"))
    if plan is None:
        return None
    if state == "queued":
        return plan.total
    return progress.remaining_seconds(snapshot, plan, now)


def job_clock(run_dir: Path, status: dict, now: float) -> tuple[Stage | None, float | None, float | None, float]:
    """(stage, elapsed, left, fraction) of the job this run belongs to (a pipeline: both stages together)."""
    stage, before, after = stage_of(run_dir)
    first = runs.read_status(before) if before is not None else status
    started = _number(first.get("started_at"))
    ended = _number(status.get("finished_at")) if status.get("state") in runs.TERMINAL_STATES else None
    elapsed = None if started is None else max((ended or now) - started, 0.0)
    left = _left_s(run_dir, status, now)
    if after is not None and left is not None:
        after_status = runs.read_status(after)
        if after_status.get("state") in runs.LIVE_STATES:
            after_left = _left_s(after, after_status, now, sizes_from=status)
            left = None if after_left is None else left + after_left
    if status.get("state") == "done" and after is None:
        return stage, elapsed, 0.0, 1.0
    if elapsed is None or left is None:
        return stage, elapsed, left, 0.0
    fraction = elapsed / (elapsed + left) if elapsed + left > 0 else 0.0
    return stage, elapsed, left, min(fraction, 1.0)


def live_view(run_dir: Path, now: float | None = None) -> LiveView:
    """Everything the live panel draws, read from the store (cheap: a few small files)."""
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    rows = runs.read_metrics(run_dir)
    step_rows = [r for r in rows if r.get("kind") == "step"]
    epoch_rows = [r for r in rows if r.get("kind") == "epoch"]
    last = step_rows[-1] if step_rows else {}
    config = storage.read_json(run_dir / runs.CONFIG_FILE, {})
    evaluation = storage.read_json(runs.eval_path(run_dir))
    status = runs.read_status(run_dir)
    stage, elapsed, left, fraction = job_clock(run_dir, status, now)
    if status.get("state") not in runs.LIVE_STATES and status.get("state") != "done":
        # a run that stopped: how far its training got, not a time share that no longer moves
        step, total = last.get("step"), last.get("total_steps")
        fraction = min(step / total, 1.0) if isinstance(step, int) and isinstance(total, int) and total else 0.0
    created = _number(status.get("created_at"))
    waited = max(now - created, 0.0) if status.get("state") == "queued" and created is not None else None
    return LiveView(status=status, config=config if isinstance(config, dict) else {},
                    step_rows=step_rows, epoch_rows=epoch_rows, step=last.get("step"),
                    total_steps=last.get("total_steps"),
                    eta_s=left if status.get("state") in runs.LIVE_STATES else None,
                    evaluation=evaluation if isinstance(evaluation, dict) else None,
                    snapshot=progress.Snapshot.from_dict(status.get("progress")), elapsed_s=elapsed,
                    waited_s=waited, fraction=fraction, stage=stage)


def worker_log_tail(run_dir: Path, lines: int = 15) -> str:
    try:
        text = runs.log_path(run_dir).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def run_evaluation(root: Path, name: str) -> dict | None:
    value = storage.read_json(runs.eval_path(runs.resolve_run_dir(root, name)))
    return value if isinstance(value, dict) else None


def run_epoch_rows(root: Path, name: str) -> list[dict]:
    return [r for r in runs.read_metrics(runs.resolve_run_dir(root, name)) if r.get("kind") == "epoch"]

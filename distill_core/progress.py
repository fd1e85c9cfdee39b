"""One progress model for a run: named phases with counts, what is left of them, and their record in the store.

A run moves through PHASES: preparing (load data and models), tokenising, teacher logits (distillation with a
cache miss only), then per epoch training, validation and saving, and at the end the test evaluation. The engine
reports them as events (`{"kind": "phase", "id": ..., "phase": <words>, "total": N}` when a phase starts, and
progress events with `done`/`total`); `Recorder` turns those into the run's `status.json` ("progress", throttled
to about one write a second, every phase change written) and one `phase_end` row per finished phase in
`metrics.jsonl` (`{"kind": "phase_end", "phase", "seconds", "count"}`), which is what calibration reads later.

`remaining_seconds` is the ETA over every phase still to come: the measured rate of the current phase where it
has one, and a plan (per-phase seconds from `distill_core.app.estimate`) for the phases not measured yet. All of
it is pure except `store_recorder`, which binds a Recorder to a run folder.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("preparing", "tokenising", "teacher_logits", "training", "validation", "saving", "test_evaluation")
# training, validation and saving repeat once per epoch; the others happen once
EPOCH_PHASES = ("training", "validation", "saving")
LABELS = {"preparing": "preparing", "tokenising": "tokenising", "teacher_logits": "teacher logits",
          "training": "training", "validation": "validation", "saving": "saving",
          "test_evaluation": "test evaluation"}
# progress events of the engine and the phase they count
PROGRESS_KINDS = {"teacher_progress": "teacher_logits", "eval_progress": "test_evaluation",
                  "valid_progress": "validation", "step": "training", "train_progress": "training"}
STATUS_INTERVAL_S = 1.0


def phase_event(phase_id: str, message: str | None = None, **counts: Any) -> dict[str, Any]:
    """The event that starts a phase: ``id`` is the phase, ``phase`` its words (what older consumers print)."""
    assert phase_id in PHASES, phase_id
    return {"kind": "phase", "id": phase_id, "phase": message or LABELS[phase_id], **counts}


@dataclass
class Snapshot:
    """Where a run stands, as status.json's "progress" holds it (JSON-ready through `as_dict`)."""
    phase: str | None = None
    message: str = ""
    done: int | None = None
    total: int | None = None
    epoch: int | None = None
    epochs: int | None = None
    phase_started_at: float | None = None
    steps: int | None = None                                 # optimiser steps so far, and in the whole run
    total_steps: int | None = None
    spent: dict[str, float] = field(default_factory=dict)    # seconds of each finished phase occurrence, summed
    counts: dict[str, int] = field(default_factory=dict)     # what they processed (examples), summed
    passes: dict[str, int] = field(default_factory=dict)     # finished occurrences of each phase

    def as_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "message": self.message, "done": self.done, "total": self.total,
                "epoch": self.epoch, "epochs": self.epochs, "phase_started_at": self.phase_started_at,
                "steps": self.steps, "total_steps": self.total_steps,
                "spent": dict(self.spent), "counts": dict(self.counts), "passes": dict(self.passes)}

    @classmethod
    def from_dict(cls, raw: Any) -> Snapshot:
        if not isinstance(raw, Mapping):
            return cls()
        known: dict[str, Any] = {k: raw.get(k) for k in ("phase", "done", "total", "epoch", "epochs",
                                                         "phase_started_at", "steps", "total_steps")}
        return cls(**known, message=str(raw.get("message") or ""), spent=dict(raw.get("spent") or {}),
                   counts=dict(raw.get("counts") or {}),
                   passes=dict(raw.get("passes") or {}))


def bar_text(snapshot: Snapshot) -> str:
    """The words of the progress bar: the phase, its counts and the epoch ("training · step 12 / 40 · epoch
    1 / 2"), never a phase the run does not have."""
    if snapshot.phase is None:
        return "starting"
    words = snapshot.message or LABELS.get(snapshot.phase, snapshot.phase)
    if snapshot.done is not None and snapshot.total:
        unit = "step " if snapshot.phase == "training" else ""
        words += f" · {unit}{snapshot.done:,} / {snapshot.total:,}"
    if snapshot.epoch and snapshot.epochs and snapshot.phase in EPOCH_PHASES:
        words += f" · epoch {snapshot.epoch} / {snapshot.epochs}"
    return words


# ----------------------------------------------------------------------------------------------------------------
# what is left

@dataclass(frozen=True)
class Plan:
    """Expected seconds of each phase over a whole run (training, validation and saving: all epochs together)."""
    seconds: Mapping[str, float]
    epochs: int = 1

    @property
    def total(self) -> float:
        return float(sum(self.seconds.values()))

    def per_pass(self, phase: str) -> float:
        share = self.seconds.get(phase, 0.0)
        return share / max(self.epochs, 1) if phase in EPOCH_PHASES else share


def _left_in_current(snapshot: Snapshot, plan: Plan, now: float) -> float:
    """Seconds left of the phase under way: its measured rate once it has counted something, else its plan."""
    phase = snapshot.phase or ""
    in_phase = max(now - (snapshot.phase_started_at or now), 0.0)
    if phase == "training":
        return _training_left(snapshot, plan, in_phase)
    done, total = snapshot.done, snapshot.total
    if done and total:
        return in_phase / done * max(total - done, 0)
    return max(plan.per_pass(phase) - in_phase, 0.0)


def _training_left(snapshot: Snapshot, plan: Plan, in_phase: float = 0.0) -> float:
    """Steps count over the whole run, so the measured rate covers the epochs still to come too."""
    steps, total = snapshot.steps, snapshot.total_steps
    if steps and total:
        return (snapshot.spent.get("training", 0.0) + in_phase) / steps * max(total - steps, 0)
    return max(plan.seconds.get("training", 0.0) - snapshot.spent.get("training", 0.0) - in_phase, 0.0)


def _per_pass(snapshot: Snapshot, plan: Plan, phase: str) -> float:
    passes = snapshot.passes.get(phase, 0)
    return snapshot.spent.get(phase, 0.0) / passes if passes else plan.per_pass(phase)


def remaining_seconds(snapshot: Snapshot, plan: Plan, now: float) -> float:
    """The ETA over every phase still to come, the current one included."""
    current = snapshot.phase
    if current is None:
        return plan.total
    left = _left_in_current(snapshot, plan, now)
    epochs = snapshot.epochs or plan.epochs
    after_training = current == "test_evaluation" or "test_evaluation" in snapshot.passes
    for phase in PHASES:
        if phase == current:
            continue
        if phase == "training" and not after_training:
            left += _training_left(snapshot, plan)
        elif phase in ("validation", "saving") and not after_training:
            left += _per_pass(snapshot, plan, phase) * max(epochs - snapshot.passes.get(phase, 0), 0)
        elif phase not in EPOCH_PHASES and phase not in snapshot.passes \
                and PHASES.index(phase) > PHASES.index(current):
            left += plan.seconds.get(phase, 0.0)
    return left


@dataclass(frozen=True)
class StageClock:
    """One stage of a job: its elapsed seconds, seconds left, and whether it has ended."""
    elapsed_s: float
    left_s: float


def combined(stages: list[StageClock]) -> tuple[float, float, float]:
    """(elapsed, left, fraction done) of a job made of stages run one after the other."""
    elapsed = sum(s.elapsed_s for s in stages)
    left = sum(s.left_s for s in stages)
    fraction = elapsed / (elapsed + left) if elapsed + left > 0 else 0.0
    return elapsed, left, min(max(fraction, 0.0), 1.0)


# ----------------------------------------------------------------------------------------------------------------
# recording

class Recorder:
    """Turns engine events into the run's progress (status) and phase_end rows (metrics); an `on_event` handler.

    ``write_status(**fields)`` merges fields into the status, ``append_row(row)`` appends a metrics row; both
    are injected so this class stays testable without a store.
    """

    def __init__(self, write_status: Callable[..., Any], append_row: Callable[[dict[str, Any]], Any], *,
                 clock: Callable[[], float] = time.time, interval_s: float = STATUS_INTERVAL_S):
        self.write_status, self.append_row, self.clock, self.interval_s = write_status, append_row, clock, interval_s
        self.snapshot = Snapshot()
        self._count = 0            # what the current phase processed (examples), for its phase_end row
        self._written_at = -1e18
        self.training_examples, self.training_seconds = 0, 0.0

    def start(self, phase_id: str, message: str | None = None, *, at: float | None = None, **counts: Any) -> None:
        """Begin a phase (closing the one under way): written to the status at once."""
        now = self.clock()
        s = self.snapshot
        if phase_id == s.phase and phase_id not in EPOCH_PHASES:  # a new step of the same phase: new words only
            s.message = message or s.message
            self._write(force=True)
            return
        self._end_phase(now)
        s.phase, s.message, s.phase_started_at = phase_id, message or LABELS[phase_id], at or now
        s.done, s.total = counts.get("done"), counts.get("total")
        if counts.get("epoch") is not None:
            s.epoch = counts["epoch"]
        if counts.get("epochs") is not None:
            s.epochs = counts["epochs"]
        self._count = 0
        self._write(force=True)

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "phase" and event.get("id") in PHASES:
            self.start(event["id"], event.get("phase"), **{k: event.get(k) for k in ("total", "epoch", "epochs")})
            return
        if kind == "start":
            self.snapshot.epochs, self.snapshot.total_steps = event.get("epochs"), event.get("total_steps")
            return
        phase = PROGRESS_KINDS.get(str(kind))
        if phase is None or phase != self.snapshot.phase:
            return
        done = event.get("step") if kind == "step" else event.get("done")
        total = event.get("total_steps") if kind == "step" else event.get("total")
        self.snapshot.done, self.snapshot.total = done, total
        if phase == "training":
            self.snapshot.steps, self.snapshot.total_steps = done, total
        if kind != "step":  # step rows carry no example count; train_progress closes an epoch with one
            self._count = int(event.get("count", done) or 0)
        self._write()

    def finish(self) -> dict[str, Any]:
        """Close the phase under way; returns the run summary (average training throughput)."""
        self._end_phase(self.clock())
        self.snapshot.phase, self.snapshot.done, self.snapshot.total = None, None, None
        summary: dict[str, Any] = {}
        if self.training_seconds > 0 and self.training_examples:
            summary["train_samples_per_s"] = round(self.training_examples / self.training_seconds, 3)
        return summary

    def _end_phase(self, now: float) -> None:
        s = self.snapshot
        if s.phase is None or s.phase_started_at is None:
            return
        seconds = max(now - s.phase_started_at, 0.0)
        s.spent[s.phase] = s.spent.get(s.phase, 0.0) + seconds
        s.counts[s.phase] = s.counts.get(s.phase, 0) + self._count
        s.passes[s.phase] = s.passes.get(s.phase, 0) + 1
        if s.phase == "training":
            self.training_examples += self._count
            self.training_seconds += seconds
        # the load average says how crowded the CPUs were: calibration divides it out (app.estimate.contention)
        self.append_row({"kind": "phase_end", "phase": s.phase, "seconds": round(seconds, 3), "count": self._count,
                         "epoch": s.epoch if s.phase in EPOCH_PHASES else None, "time": now,
                         "load_1m": load_1m()})

    def _write(self, force: bool = False) -> None:
        now = self.clock()
        if force or now - self._written_at >= self.interval_s:
            self.write_status(phase=self.snapshot.phase, progress=self.snapshot.as_dict())
            self._written_at = now


def usable_cores() -> int:
    """CPUs this process may run on (respects taskset and cgroup cpusets, unlike os.cpu_count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_1m() -> float | None:
    """The 1-minute load average (None where the OS does not say)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def store_recorder(run_dir: Path) -> Recorder:
    """A Recorder writing to the run folder (main process only: the caller decides)."""
    from . import runs

    return Recorder(lambda **fields: runs.update_status(run_dir, **fields),
                    lambda row: runs.append_metric(run_dir, row))

"""The Runs page's table: one row per run (state, kind, models, duration, accuracy, created), its filters, and
which actions a selection allows. Pure functions over runs.list_runs summaries, plus :func:`load_rows`.

Accuracies are percentages (x100), as on Compare; durations are datetime.timedelta and creation times
datetime.datetime, so the table sorts them as durations and dates, not as text.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .. import manage, runs, specs

STATE_LABELS = {"queued": "Queued", "running": "Running", "done": "Done", "failed": "Failed",
                "cancelled": "Cancelled", "interrupted": "Interrupted", "unknown": "Unreadable"}
# The columns the page shows, in order; the other keys of a row are for the actions.
COLUMNS = ("name", "state", "kind", "models", "duration", "best_valid_accuracy", "test_accuracy", "created")
SINGLE_RUN_ACTIONS = ("open", "clone", "rename", "resume")


def state_label(summary: dict[str, Any]) -> str:
    """The state in words, with why a queued run waits and what a read-only run is."""
    label = STATE_LABELS.get(summary.get("state") or "unknown", str(summary.get("state")))
    if summary.get("state") == "queued":
        if summary.get("depends_on"):
            label += f" (after {summary['depends_on']})"
        elif summary.get("waiting"):
            label += " (waiting for a free slot)"
    if summary.get("showcase"):
        label += ", read-only"
    return label


def kind_label(summary: dict[str, Any], first_stages: Iterable[str]) -> str:
    """Fine-tune, distil, or which stage of a pipeline (fine-tune a teacher, then distil it) the run is."""
    if summary.get("depends_on"):
        return "pipeline 2/2: distil"
    if summary["id"] in set(first_stages) or summary.get("stage") == "teacher":
        return "pipeline 1/2: fine-tune teacher"
    return {"finetune": "fine-tune", "distill": "distil"}.get(summary.get("mode") or "", "unknown")


def models_label(summary: dict[str, Any], root: Path | None = None) -> str:
    """``teacher → student`` for a distillation, the model alone for a fine-tune (specs.spec_label names)."""
    student = specs.spec_label(summary.get("student"), root)
    if summary.get("teacher") and summary.get("mode") == "distill":
        return f"{specs.spec_label(summary['teacher'], root)} → {student}"
    return student


def duration_s(summary: dict[str, Any], now: float) -> float | None:
    """Seconds from start to end; a running run's time so far; an interrupted one's until its last status
    write. None for a run that never started."""
    started = summary.get("started_at")
    if started is None:
        return None
    state = summary.get("state")
    end = summary.get("finished_at") if state in runs.TERMINAL_STATES else None
    if state == "running":
        end = now
    elif end is None:
        end = summary.get("updated_at")
    return max(0.0, end - started) if end is not None else None


def _percent(value: Any) -> float | None:
    return round(100 * value, 2) if isinstance(value, (int, float)) else None


def table_rows(summaries: Sequence[dict[str, Any]], root: Path | None = None, *,
               now: float | None = None) -> list[dict[str, Any]]:
    """One table row per run summary (runs.list_runs), in the same order."""
    now = time.time() if now is None else now
    first_stages = {s["depends_on"] for s in summaries if s.get("depends_on")}
    rows = []
    for summary in summaries:
        seconds = duration_s(summary, now)
        rows.append({
            "name": summary["id"], "state": state_label(summary), "kind": kind_label(summary, first_stages),
            "models": models_label(summary, root),
            "duration": timedelta(seconds=round(seconds)) if seconds is not None else None,
            "best_valid_accuracy": _percent(summary.get("best_valid_accuracy")),
            "test_accuracy": _percent(summary.get("test_accuracy")),
            "created": datetime.fromtimestamp(summary["created_at"]),
            # for filters and actions, not shown
            "base_state": summary.get("state"), "live": summary.get("state") in runs.LIVE_STATES,
            "showcase": bool(summary.get("showcase")),
            "specs": " ".join(str(s) for s in (summary.get("teacher"), summary.get("student")) if s),
            "resume_blocked": manage.why_not_resume(summary.get("state"),
                                                    has_checkpoint=bool(summary.get("has_checkpoint")),
                                                    showcase=bool(summary.get("showcase"))),
        })
    return rows


def load_rows(root: Path, *, now: float | None = None) -> list[dict[str, Any]]:
    """The table of every run in ``root``, newest first."""
    return table_rows(runs.list_runs(root), root, now=now)


def state_options(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The states present, in the order of runs.STATES, as the state filter offers them."""
    present = {row["base_state"] for row in rows}
    return [STATE_LABELS[s] for s in (*runs.STATES, "unknown") if s in present]


def filter_rows(rows: Iterable[dict[str, Any]], states: Iterable[str] = (), text: str = "") -> list[dict[str, Any]]:
    """Rows whose state is one of ``states`` (labels; none: every state) and whose name, models or model specs
    contain ``text`` (case-insensitive)."""
    wanted = set(states)
    needle = text.strip().lower()
    return [row for row in rows
            if (not wanted or STATE_LABELS.get(row["base_state"] or "unknown") in wanted)
            and (not needle or needle in f"{row['name']} {row['models']} {row['specs']}".lower())]


def blocked_actions(selected: Sequence[dict[str, Any]]) -> dict[str, str | None]:
    """For each action (open, clone, rename, resume, stop, delete): why the selection does not allow it, or None
    when it does. Delete never takes a live run (Stop is offered instead) nor a showcase run."""
    if not selected:
        return dict.fromkeys((*SINGLE_RUN_ACTIONS, "stop", "delete"), "select a run in the table first")
    several = "select a single run" if len(selected) > 1 else None
    live = [row["name"] for row in selected if row["live"]]
    read_only = [row["name"] for row in selected if row["showcase"]]
    blocked: dict[str, str | None] = {"open": several, "clone": several}
    first = selected[0]
    blocked["rename"] = several or ("a showcase run is read-only" if first["showcase"] else
                                    f"it is {first['base_state']}: stop it first" if first["live"] else None)
    blocked["resume"] = several or (f"it cannot be resumed: {first['resume_blocked']}" if first["resume_blocked"]
                                    else None)
    blocked["stop"] = None if live else "no selected run is queued or running"
    blocked["delete"] = (f"{', '.join(live)} still queued or running: stop first" if live else
                         f"{', '.join(read_only)}: showcase runs are read-only" if read_only else None)
    return blocked


def table_key(rows: Sequence[dict[str, Any]]) -> str:
    """The table's widget key, one per set of rows shown: a selection is a list of row positions, so a filter or
    a new run must clear it rather than leave it pointing at other runs."""
    names = "\n".join(row["name"] for row in rows)
    return "r_table_" + hashlib.sha1(names.encode()).hexdigest()[:12]

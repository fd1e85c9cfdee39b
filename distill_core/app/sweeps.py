"""What the Sweeps page and the Train page's sweep form read: the sweeps of a runs folder, one sweep's cells and
settings (mean and spread over seeds) with its heatmap and best setting, the form's value lists, and the time a
sweep will take. No streamlit; the rules live in distill_core.sweep.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from .. import figures_sweep, runs, sweep
from ..errors import UserError
from . import datasets, estimate

STATE_ORDER = ("running", "queued", "done", "failed", "cancelled", "interrupted", "missing")


@dataclass(frozen=True)
class SweepView:
    """One sweep as the store holds it now."""
    name: str
    cells: list[dict[str, Any]]        # sweep.cell_results: one per cell
    settings: list[dict[str, Any]]     # sweep.setting_results: one per (method, T, alpha)
    best: dict[str, Any] | None        # the best setting (mean validation accuracy), None before any epoch ends
    best_run: str | None               # its run with the best validation accuracy: the one to open
    created_at: float | None

    @property
    def methods(self) -> list[str | None]:
        return list(dict.fromkeys(s["method"] for s in self.settings))

    @property
    def live(self) -> bool:
        return any(c["state"] in runs.LIVE_STATES for c in self.cells)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for cell in self.cells:
            found[cell["state"]] = found.get(cell["state"], 0) + 1
        return {state: found[state] for state in sorted(found, key=_state_rank)}

    def progress_text(self) -> str:
        """e.g. '3 of 6 cells done · 1 running · 2 queued'."""
        counts = self.counts()
        parts = [f"{counts.get('done', 0)} of {len(self.cells)} cells done"]
        parts += [f"{n} {state}" for state, n in counts.items() if state != "done"]
        return " · ".join(parts)

    def best_text(self) -> str:
        if self.best is None:
            return "No cell has finished an epoch yet: the best setting shows once one has."
        spread = f" ± {100 * self.best['valid_std']:.1f}" if self.best["valid_std"] is not None else ""
        seeds = self.best["measured"]
        method = f", method {self.best['method']}" if self.best["method"] else ""
        test = f"; test accuracy {100 * self.best['test_mean']:.1f}%" if self.best["test_mean"] is not None else ""
        return (f"Best setting: T = {self.best['T']:g}, α = {self.best['alpha']:g}{method}: validation accuracy "
                f"{100 * self.best['valid_mean']:.1f}%{spread} over {seeds} seed{'s' if seeds != 1 else ''}{test}"
                f" (run {self.best_run}).")

    def figure(self, method: str | None = None) -> go.Figure:
        """The heatmap of one method's settings (the only one when methods were not swept)."""
        shown = [s for s in self.settings if s["method"] == method]
        best = self.best if self.best is not None and self.best["method"] == method else None
        title = figures_sweep.TITLE + (f" · method {method}" if method else "") + f" · sweep {self.name}"
        return figures_sweep.sweep_heatmap(shown, best, title=title)

    def table(self) -> list[dict[str, Any]]:
        """The heatmap's numbers, one row per setting, accuracies in percent (the chart's text alternative)."""
        rows = []
        for s in self.settings:
            row = {"method": s["method"]} if any(self.methods) else {}
            row.update({"T": s["T"], "α": s["alpha"], "seeds measured": f"{s['measured']} of {s['seeds']}",
                        "validation accuracy (mean %)": _pct(s["valid_mean"]),
                        "spread (std, points)": _pct(s["valid_std"]), "test accuracy (mean %)": _pct(s["test_mean"]),
                        "best": "★" if self.best is s else "", "runs": ", ".join(s["runs"])})
            rows.append(row)
        return rows

    def openable(self) -> list[str]:
        """The cells whose runs exist, best first, then in grid order."""
        names = [c["run"] for c in self.cells if c["state"] != "missing"]
        return sorted(names, key=lambda name: name != self.best_run)


def cell_coordinates(view: SweepView, run: str) -> str:
    """A cell in words, e.g. 'T 2 · α 0.5 · seed 42' (and its method when methods were swept)."""
    cell = next(c for c in view.cells if c["run"] == run)
    method = f" · {cell['method']}" if cell["method"] else ""
    return f"T {cell['T']:g} · α {cell['alpha']:g} · seed {cell['seed']}{method}"


def _state_rank(state: str) -> int:
    return STATE_ORDER.index(state) if state in STATE_ORDER else len(STATE_ORDER)


def _pct(value: float | None) -> float | None:
    return round(100 * value, 2) if value is not None else None


def sweep_view(root: Path, name: str) -> SweepView:
    group = sweep.read_group(root, name)
    cells = sweep.cell_results(group, runs.list_runs(group.root))
    settings = sweep.setting_results(cells)
    best = sweep.best_setting(settings)
    created = group.record.get("created_at")
    return SweepView(group.name, cells, settings, best, sweep.best_run(cells, best),
                     float(created) if isinstance(created, (int, float)) else None)


def group_names(root: Path) -> list[str]:
    """The sweeps of ``root``, newest first."""
    return [group.name for group in sweep.list_groups(root)]


# ----------------------------------------------------------------------------------------------------------------
# the Train page's sweep form

def parse_values(text: str, label: str, kind: Callable[[str], Any] = float) -> tuple[tuple[Any, ...], list[str]]:
    """'1, 2, 4' (commas or spaces) -> (1.0, 2.0, 4.0), and the problems in the words of ``label``."""
    values, bad = [], []
    for part in (p for p in re.split(r"[\s,;]+", text.strip()) if p):
        try:
            values.append(kind(part))
        except ValueError:
            bad.append(part)
    what = "whole number" if kind is int else "number"
    verb = f"is not a {what}" if len(bad) == 1 else f"are not {what}s"
    problems = [f"{label}: {', '.join(map(repr, bad))} {verb}: give {what}s separated by commas, e.g. 1, 2, 4"] \
        if bad else []
    return tuple(values), problems


@dataclass(frozen=True)
class SweepEstimate:
    cells: int
    seconds: float
    cell_seconds: float      # the first cell's (which computes the teacher's logits)
    explanation: str


def sweep_estimate(plan: sweep.SweepConfig, root: Path | None) -> SweepEstimate | None:
    """How long the sweep will take: the first cell's estimate (estimate.estimate_job), and the others without the
    teacher-logit pass they find cached. None when the data's size is unknown or the sweep has no cells."""
    grid = sweep.cells(plan)
    if not grid:
        return None
    first = grid[0].config
    try:
        sizes = estimate.split_sizes(first, *datasets.estimate_rows(first.data.source))
    except UserError:
        return None
    if sizes is None:
        return None
    one = estimate.estimate_job(first, None, sizes, root, allow_probe=False)
    later = max(one.seconds - one.phases.get("teacher_logits", 0.0), 0.0)
    total = one.seconds + (len(grid) - 1) * later
    return SweepEstimate(len(grid), total, one.seconds,
                         f"{len(grid)} cells, one at a time: ~{estimate.format_duration(one.seconds)} for the first, "
                         f"~{estimate.format_duration(later)} for each other (the teacher's logits are cached by "
                         f"then), {one.explanation}")

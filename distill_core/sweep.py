"""T x alpha sweeps: a grid of distillation runs (cells) made, queued and read as one group.

A sweep is a base TrainConfig plus the values to try: temperatures, alphas, optionally seeds and methods (named
sets of loss terms from presets.METHOD_PRESETS). Each cell is a normal run in the store, named
``GROUP-T2-a0.5-s42`` (``-distilbert`` added when methods are swept), so the Runs page, Compare and ``list`` see
the cells as they see any run, with no second kind of folder to learn. The group itself is ``GROUP/group.json``
beside them: the sweep's settings and the cell -> run mapping. That folder holds no config.json, so run listings
skip it, and it reserves the group's name.

Every cell is validated before anything is created, and all problems are told at once. Cells share the teacher
and the rows, so the teacher-logit cache (keyed by teacher weights, example id and max length) makes only the
first cell of a seed run the teacher. In the background the cells form one pipeline series: one cell at a time,
in order, the next starting when one ends, whatever its outcome (a failed cell does not end the sweep).
"""
from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import presets, runs, storage
from .config import TrainConfig, config_to_dict, load_train_config
from .errors import UserError

# pipeline (and the data and hub modules behind it) is imported where it is used: the CLI's parser reads METHODS and
# MAX_CELLS on every command, and must not load pandas and datasets to do so.

# A cell is a whole training run: on the 2-core CPU this targets even a tiny one takes a minute or more, so 64
# cells is an afternoon, and the Runs table stays readable. A bigger grid is better run as several sweeps.
MAX_CELLS = 64
GROUP_FILE = "group.json"
# Short names (they go into run names) of the method presets a sweep can try; each sets every loss term but T
# and alpha, which are the sweep's own axes.
METHODS: dict[str, str] = {"logits": "Logits only (Hinton)", "distilbert": "DistilBERT-style",
                           "tinybert": "TinyBERT-style (layers)"}
SWEPT_FIELDS = ("temperature", "alpha")
# How the CLI names each setting of a sweep; the page passes its form's labels instead.
CLI_NAMES = {"temperatures": "--temperatures", "alphas": "--alphas", "seeds": "--seeds", "methods": "--methods",
             "temperature": "--temperatures", "alpha": "--alphas", "seed": "--seeds", "group": "--out"}
EventHandler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class SweepConfig:
    base: TrainConfig                     # every setting a cell does not vary (a distillation)
    temperatures: tuple[float, ...]       # T values to try
    alphas: tuple[float, ...]             # alpha values (weight of the label loss) to try
    seeds: tuple[int, ...] = ()           # empty: the base config's seed alone
    methods: tuple[str, ...] = ()         # METHODS names; empty: the base config's own loss terms

    def seed_values(self) -> tuple[int, ...]:
        return self.seeds or (self.base.seed,)

    def size(self) -> int:
        return len(self.temperatures) * len(self.alphas) * len(self.seed_values()) * max(len(self.methods), 1)

    def as_dict(self) -> dict[str, Any]:
        return {"base": config_to_dict(self.base), "temperatures": list(self.temperatures),
                "alphas": list(self.alphas), "seeds": list(self.seed_values()), "methods": list(self.methods)}


@dataclass(frozen=True)
class Cell:
    """One point of the grid and the config of its run."""
    temperature: float
    alpha: float
    seed: int
    method: str | None
    config: TrainConfig

    def run_name(self, group: str) -> str:
        name = f"{group}-T{self.temperature:g}-a{self.alpha:g}-s{self.seed}"
        return f"{name}-{self.method}" if self.method else name

    def coords(self) -> dict[str, Any]:
        return {"T": self.temperature, "alpha": self.alpha, "seed": self.seed, "method": self.method}


def method_overrides(method: str) -> dict[str, Any]:
    """The config fields method ``method`` sets: its preset's loss terms, T and alpha left to the sweep."""
    preset = presets.METHOD_PRESETS[METHODS[method]]
    return {k: v for k, v in preset.train.items() if k in presets.METHOD_FIELDS and k not in SWEPT_FIELDS}


def cells(sweep: SweepConfig) -> list[Cell]:
    """The grid, method-major and seed-minor (a setting's seeds run one after another). Pure."""
    grid = []
    for method in sweep.methods or (None,):
        overrides = method_overrides(method) if method in METHODS else {}
        for temperature in sweep.temperatures:
            for alpha in sweep.alphas:
                for seed in sweep.seed_values():
                    config = replace(sweep.base, temperature=temperature, alpha=alpha, seed=seed, **overrides)
                    grid.append(Cell(temperature, alpha, seed, method, config))
    return grid


def _list_problems(sweep: SweepConfig, names: Mapping[str, str]) -> list[str]:
    """What is wrong with the lists themselves: empty, repeated values, unknown methods, too many cells."""
    found = []
    lists = {"temperatures": sweep.temperatures, "alphas": sweep.alphas, "seeds": sweep.seeds,
             "methods": sweep.methods}
    for field, values in lists.items():
        if field in ("temperatures", "alphas") and not values:
            found.append(f"{names.get(field, field)} is empty: give at least one value (a sweep of 0 cells runs "
                         "nothing)")
        repeated = sorted({str(v) for v in values if list(values).count(v) > 1})
        if repeated:
            found.append(f"{names.get(field, field)} lists {', '.join(repeated)} more than once: give each value once")
    unknown = [m for m in sweep.methods if m not in METHODS]
    if unknown:
        found.append(f"{names.get('methods', 'methods')} {', '.join(map(repr, unknown))} unknown: use "
                     f"{', '.join(METHODS)}")
    if sweep.size() > MAX_CELLS:
        axes = [f"{len(sweep.temperatures)} temperatures", f"{len(sweep.alphas)} alphas",
                f"{len(sweep.seed_values())} seeds"] + ([f"{len(sweep.methods)} methods"] if sweep.methods else [])
        found.append(f"the sweep has {sweep.size()} cells ({' × '.join(axes)}): at most {MAX_CELLS} (each cell is "
                     f"a whole training run): use fewer values in {names.get('temperatures', 'temperatures')}, "
                     f"{names.get('alphas', 'alphas')} or {names.get('seeds', 'seeds')}, or run several sweeps")
    return found


def problems(sweep: SweepConfig, names: Mapping[str, str] = CLI_NAMES) -> list[str]:
    """Every problem of the sweep and of every one of its cells, once each, in the words of ``names`` (the CLI's
    flags or the form's labels, keyed by config field and by sweep list). Pure."""
    found = _list_problems(sweep, names)
    if sweep.base.mode != "distill":
        found.append("a sweep distils: its base settings must be a distillation (mode distill), with a teacher")
    if found and sweep.size() > MAX_CELLS:
        return found  # do not build thousands of configs to list the same few problems
    for cell in cells(sweep):
        for problem in cell.config.problems():
            text = problem.text(names)
            if text not in found:
                found.append(text)
    return found


def check(sweep: SweepConfig, names: Mapping[str, str] = CLI_NAMES) -> None:
    """Raise one UserError listing every problem of ``sweep`` (nothing is created)."""
    found = problems(sweep, names)
    if found:
        raise UserError(found[0] if len(found) == 1 else f"{len(found)} settings to fix: " + "; ".join(found))


# ----------------------------------------------------------------------------------------------------------------
# the group in the store

@dataclass(frozen=True)
class Group:
    """A sweep as the store holds it: its folder of runs, its name and its cells (run name and coordinates)."""
    root: Path
    name: str
    cells: tuple[dict[str, Any], ...]     # {"run", "T", "alpha", "seed", "method"}
    record: dict[str, Any]

    @property
    def run_dirs(self) -> list[Path]:
        return [self.root / cell["run"] for cell in self.cells]

    def as_dict(self) -> dict[str, Any]:
        return {"group": str(self.root / self.name), "runs": [str(d) for d in self.run_dirs]}


def group_file(root: Path, name: str) -> Path:
    return runs.resolve_run_dir(root, name) / GROUP_FILE


def read_group(root: Path, name: str) -> Group:
    root = Path(root).resolve()
    record = storage.read_json(group_file(root, name))
    if not isinstance(record, dict) or not isinstance(record.get("cells"), list):
        raise UserError(f"no sweep named {name!r} in {root}: see the Sweeps page or `python -m distill_core list`")
    return Group(root, name, tuple(c for c in record["cells"] if isinstance(c, dict)), record)


def list_groups(root: Path) -> list[Group]:
    """Every sweep of ``root``, newest first; unreadable records are skipped."""
    found = []
    try:
        children = sorted(Path(root).iterdir())
    except OSError:
        return []
    for child in children:
        if child.is_dir() and not child.name.startswith(".") and (child / GROUP_FILE).is_file():
            try:
                found.append(read_group(root, child.name))
            except UserError:
                continue
    return sorted(found, key=lambda g: (g.record.get("created_at") or 0, g.name), reverse=True)


def _plan(root: Path, name: str, sweep: SweepConfig, names: Mapping[str, str]) -> tuple[list[tuple[str, Cell]],
                                                                                        dict[str, Any]]:
    """Check everything before anything exists: the lists, every cell, the names, the data and the models."""
    from . import hosting, locations
    from .preflight import check_run

    check(sweep, names)
    word = names.get("group", "group")
    try:
        name = runs.sanitize_run_name(name)
    except UserError as exc:
        raise UserError(f"{word}: {exc}") from None
    planned = [(cell.run_name(name), cell) for cell in cells(sweep)]
    too_long = [run for run, _ in planned if len(run) > 64]
    if too_long:
        spare = 64 - (max(len(run) for run, _ in planned) - len(name))
        raise UserError(f"{word} {name!r} is too long for its cells' run names (e.g. {too_long[0]!r} has "
                        f"{len(too_long[0])} characters, at most 64): use a name of at most {max(spare, 1)} characters")
    taken = [n for n in [name] + [run for run, _ in planned] if (root / n).exists()]
    if taken:
        raise UserError(f"{word}: {', '.join(taken[:3])}{' …' if len(taken) > 3 else ''} already exist(s): choose "
                        "another sweep name")
    hosting.check_train_config(sweep.base, root, locations.allowed_data_folders(root))
    hosting.check_new_runs(root, count=len(planned))
    # Cells differ only in T, alpha, seed and loss weights: the data and model checks of one cell hold for all.
    facts = check_run(planned[0][1].config)
    return planned, facts


def create_group(root: Path, name: str, sweep: SweepConfig, *, names: Mapping[str, str] = CLI_NAMES,
                 created_by: str = "dashboard", claimed_by: int | None = None) -> Group:
    """Check the sweep, then create its group record and every cell as a queued run of series ``name``."""
    from . import pipeline

    root = Path(root).resolve()
    planned, facts = _plan(root, name, sweep, names)
    name = runs.sanitize_run_name(name)
    group_dir = runs.resolve_run_dir(root, name)
    try:
        group_dir.mkdir(parents=True)  # claims the name: of two sweeps started at once, one wins
    except FileExistsError:
        raise UserError(f"{names.get('group', 'group')}: {name} already exists: choose another sweep name") from None
    created: list[Path] = []
    status = {pipeline.SERIES: name, **({pipeline.CLAIMED_BY: claimed_by} if claimed_by else {})}
    try:
        record = {"group": name, "created_at": time.time(), "created_by": created_by, "max_cells": MAX_CELLS,
                  "sweep": sweep.as_dict(), "cells": [{"run": run, **cell.coords()} for run, cell in planned]}
        storage.write_json_atomic(group_dir / GROUP_FILE, record)
        for run, cell in planned:
            config = replace(cell.config, extra={**cell.config.extra, "sweep": name, "cell": cell.coords()})
            created.append(runs.create_run(root, run, pipeline.run_record(config, created_by=created_by, **facts),
                                           **status))
    except BaseException:
        for run_dir in created:  # nothing has started yet: a half-made sweep would only confuse
            shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(group_dir, ignore_errors=True)
        raise
    return read_group(root, name)


def start_sweep(root: Path, name: str, sweep: SweepConfig, *, names: Mapping[str, str] = CLI_NAMES,
                created_by: str = "dashboard") -> Group:
    """Create the sweep and start its first cell in a background worker; each worker starts the next cell as it
    ends (pipeline.finish_run), so the sweep goes on with no page open."""
    from . import pipeline

    group = create_group(root, name, sweep, names=names, created_by=created_by)
    pipeline.start_series(group.root, group.name)
    return group


def run_sweep_here(root: Path, name: str, sweep: SweepConfig, *, names: Mapping[str, str] = CLI_NAMES,
                   on_event: EventHandler = lambda _: None) -> Group:
    """The CLI's foreground sweep: the same cells as :func:`start_sweep`, trained in this process in turn. The
    cells name this process as their owner, so a dashboard never starts them in the background meanwhile. A failed
    cell is recorded and the sweep goes on; an interrupt cancels the cells not yet run."""
    from . import pipeline

    group = create_group(root, name, sweep, names=names, created_by="cli", claimed_by=os.getpid())
    try:
        for number, run_dir in enumerate(group.run_dirs, start=1):
            if runs.read_status(run_dir).get("state") != "queued" or runs.stop_requested(run_dir):
                continue  # stopped from the dashboard while it waited
            on_event({"kind": "note", "message": f"cell {number}/{len(group.cells)}: {run_dir.name}"})
            try:
                config = load_train_config(run_dir / runs.CONFIG_FILE)  # what a worker would train
                pipeline.run_in_this_process(run_dir, config, on_event)
            except Exception as exc:  # one bad cell does not end the sweep; its status says what happened
                if runs.read_status(run_dir).get("state") not in runs.TERMINAL_STATES:
                    runs.set_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}")
                on_event({"kind": "note", "message": f"cell {run_dir.name} failed: {exc}"})
            if _stopped_by_a_signal(run_dir):
                on_event({"kind": "note", "message": "stopped by a signal: the cells not yet run are cancelled"})
                break
    finally:
        for run_dir in group.run_dirs:
            if runs.read_status(run_dir).get("state") == "queued":
                runs.set_status(run_dir, "cancelled", error="the sweep's process ended before this cell ran")
    return group


def _stopped_by_a_signal(run_dir: Path) -> bool:
    """A cell cancelled without its STOP file was ended by SIGTERM (kill, `docker stop`), which the training loop
    turns into a cooperative cancel of the cell: it is meant for the whole sweep. A Stop of one cell from the
    dashboard writes the STOP file first, and the sweep goes on."""
    return runs.read_status(run_dir).get("state") == "cancelled" and not runs.stop_requested(run_dir)


def stop_group(root: Path, name: str) -> list[str]:
    """Stop a sweep: cancel its queued cells first (so the running one's end starts nothing), then stop the
    running one. Returns the names of the cells stopped or cancelled."""
    from . import jobs, pipeline

    group = read_group(root, name)
    scope = pipeline.scope_of(group.root)
    stopped = []
    live = [d for d in group.run_dirs if d.is_dir() and runs.read_status(d).get("state") in runs.LIVE_STATES]
    for run_dir in live:
        status = runs.read_status(run_dir)
        if status.get("state") == "queued" and not jobs.is_alive_since(status.get("pid"), status.get("pid_start")) \
                and jobs.stop_job(run_dir, scope=scope):
            stopped.append(run_dir.name)
    for run_dir in live:
        if run_dir.name not in stopped and pipeline.stop_run(run_dir):
            stopped.append(run_dir.name)
    return stopped


# ----------------------------------------------------------------------------------------------------------------
# results (pure, over runs.list_runs summaries)

def cell_results(group: Group, summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell: its coordinates, run, state and accuracies (valid: the best epoch's; None until one
    epoch has ended). A cell whose run is gone (deleted, renamed) reads as state "missing"."""
    by_name = {summary["id"]: summary for summary in summaries}
    rows = []
    for cell in group.cells:
        summary = by_name.get(cell["run"], {})
        rows.append({**cell, "state": summary.get("state", "missing"),
                     "valid_accuracy": summary.get("best_valid_accuracy"),
                     "test_accuracy": summary.get("test_accuracy"), "epochs_done": summary.get("epochs_done"),
                     "error": summary.get("error")})
    return rows


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def setting_results(cell_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, T, alpha): validation and test accuracy as mean and sample std over its seeds (std None
    with fewer than two), the seeds counted, and its runs. In grid order. Pure."""
    settings: dict[tuple, list[dict[str, Any]]] = {}
    for row in cell_rows:
        settings.setdefault((row["method"], row["T"], row["alpha"]), []).append(row)
    out = []
    for (method, temperature, alpha), rows in settings.items():
        valid = [r["valid_accuracy"] for r in rows if isinstance(r["valid_accuracy"], (int, float))]
        test = [r["test_accuracy"] for r in rows if isinstance(r["test_accuracy"], (int, float))]
        valid_mean, valid_std = _mean_std(valid)
        test_mean, test_std = _mean_std(test)
        states = [r["state"] for r in rows]
        out.append({"method": method, "T": temperature, "alpha": alpha, "seeds": len(rows), "measured": len(valid),
                    "valid_mean": valid_mean, "valid_std": valid_std,
                    "valid_min": min(valid) if valid else None, "valid_max": max(valid) if valid else None,
                    "test_mean": test_mean, "test_std": test_std, "runs": [r["run"] for r in rows],
                    "states": states, "finished": all(s not in runs.LIVE_STATES for s in states)})
    return out


def best_setting(settings: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The setting with the highest mean validation accuracy (ties: the first in grid order); None before any
    cell has a validation accuracy. Validation, not test: choosing on the test split would overstate it."""
    measured = [s for s in settings if s["valid_mean"] is not None]
    return max(measured, key=lambda s: s["valid_mean"]) if measured else None


def best_run(cell_rows: Sequence[dict[str, Any]], setting: dict[str, Any] | None) -> str | None:
    """The run of ``setting`` with the highest validation accuracy (the one to open)."""
    if setting is None:
        return None
    rows = [r for r in cell_rows if r["run"] in setting["runs"] and r["valid_accuracy"] is not None]
    return max(rows, key=lambda r: r["valid_accuracy"])["run"] if rows else None


def summary(group: Group) -> dict[str, Any]:
    """What the CLI prints for a sweep: one entry per cell and the best setting (with its best run)."""
    cell_rows = cell_results(group, runs.list_runs(group.root))
    best = best_setting(setting_results(cell_rows))
    cells_out = [{**row, "run": str(group.root / row["run"])} for row in cell_rows]
    best_out = None
    if best is not None:
        best_out = {"T": best["T"], "alpha": best["alpha"], "method": best["method"], "seeds": best["measured"],
                    "valid_accuracy": best["valid_mean"], "valid_accuracy_std": best["valid_std"],
                    "test_accuracy": best["test_mean"], "test_accuracy_std": best["test_std"],
                    "run": str(group.root / (best_run(cell_rows, best) or best["runs"][0]))}
    return {"group": str(group.root / group.name), "cells": cells_out, "best": best_out}

"""The stakeholder report: one self-contained HTML page per comparison (a teacher and its students, finished
runs of the store) that answers "what do we gain and what do we lose".

The numbers come from `app.compare.comparison_rows` and `app.compare.trade_offs`, the functions behind the
Compare page's table, so the report and the page can never disagree. Speed comes from each run's bench.json
(the Benchmark page writes it); what was not measured is said, never estimated. `report_html.py` draws the page.
"""
from __future__ import annotations

import datetime as dt
import math
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import runs, specs, storage
from .app import compare
from .errors import UserError

DEFAULT_PRICE_PER_HOUR = 0.10  # USD per hour of one CPU machine; editable on Compare and with --price-per-hour
Z_95 = 1.959963984540054  # the two-sided 95% quantile of the standard normal
EXAMPLES_PER_KIND = 3  # disagreement examples shown per kind (the student loses / the student wins)
SETTING_KEYS = ("mode", "student", "teacher", "epochs", "lr", "batch_size", "temperature", "alpha", "kd_loss",
                "seed")


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default): unlike p ± z·se it stays inside [0, 1] and
    is honest near 0 and 1 and for small n."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n and n > 0, got {successes} of {n}")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def cost_per_million(samples_per_s: float | None, price_per_hour: float) -> float | None:
    """USD per million predictions on a machine billed ``price_per_hour`` that serves ``samples_per_s``."""
    if not isinstance(samples_per_s, (int, float)) or samples_per_s <= 0:
        return None
    return price_per_hour / 3600.0 / samples_per_s * 1e6


def check_price(price_per_hour: float) -> float:
    if not (isinstance(price_per_hour, (int, float)) and math.isfinite(price_per_hour) and price_per_hour >= 0):
        raise UserError(f"the CPU price must be a number of USD per hour >= 0, got {price_per_hour!r}")
    return float(price_per_hour)


def check_runs(root: Path, names: Sequence[str]) -> list[Path]:
    """The run folders of a report: at least one, each a finished run of ``root`` with its model."""
    if not names:
        raise UserError("a report needs at least one finished run: name one or more (--run runs/NAME, repeat "
                        "for several)")
    folders = []
    for name in names:
        run_dir = runs.resolve_run_dir(root, name)
        if not (run_dir / runs.CONFIG_FILE).is_file():
            raise UserError(f"no run {name!r} in {Path(root).resolve()}: name a finished run of the store")
        state = runs.read_status(run_dir).get("state")
        if state != "done" or specs.model_folder(run_dir) is None:
            raise UserError(f"run {name!r} has not finished (state: {state}): a report compares finished runs "
                            "only; wait for it or pick another")
        folders.append(run_dir)
    return folders


def locate_runs(paths: Sequence[Path | str]) -> tuple[Path, list[str]]:
    """The runs folder and run names of command-line ``--run`` values: run folders (runs/NAME), or names of
    runs in $KD_RUNS_DIR. All must share one runs folder."""
    if not paths:
        check_runs(runs.runs_root(), [])  # the zero-runs error, in the report's words
    located = []
    for value in paths:
        path = Path(value).expanduser()
        if path.is_dir():
            located.append((path.resolve().parent, path.name))
        elif len(path.parts) == 1:
            located.append((runs.runs_root().resolve(), str(value)))
        else:
            raise UserError(f"--run {value}: no such run folder")
    roots = sorted({root for root, _ in located})
    if len(roots) > 1:
        raise UserError(f"--run folders are in {len(roots)} runs folders ({', '.join(map(str, roots))}): a report "
                        "compares runs of one store")
    return located[0][0], [name for _, name in located]


def _model_row(row: dict[str, Any], price_per_hour: float) -> dict[str, Any]:
    """A comparison row plus its accuracy interval and cost per million predictions."""
    accuracy, n = row.get("test_accuracy"), row.get("n_test")
    interval = None
    if isinstance(accuracy, (int, float)) and isinstance(n, int) and n > 0:
        interval = wilson_interval(round(accuracy * n), n)
    costs = {f"cost_b{b}": cost_per_million(row.get(f"samples_per_s_b{b}"), price_per_hour)
             for b in compare.BENCH_BATCHES}
    return {**row, "accuracy_interval": interval, **costs}


def _examples(run_dir: Path, predict_missing: bool) -> dict[str, Any] | None:
    """A few test examples a distillation run's student and teacher classify differently, with counts."""
    cached = storage.read_json(run_dir / runs.PREDICTIONS_FILE)
    if isinstance(cached, dict) and cached.get("version") == 1:
        predictions = cached
    elif predict_missing:
        predictions = compare.run_predictions(run_dir)
    else:
        return None
    rows = compare.disagreements(predictions)
    loses = [r for r in rows if r["who is right"] == "teacher"]
    wins = [r for r in rows if r["who is right"] == "student"]
    return {"total": len(predictions["label"]), "disagree": len(rows), "student_loses": len(loses),
            "student_wins": len(wins), "examples": loses[:EXAMPLES_PER_KIND] + wins[:EXAMPLES_PER_KIND]}


def git_commit(folder: Path | None = None) -> str | None:
    """The commit of the checkout holding KD Studio (marked when it has uncommitted changes), or None."""
    folder = folder or Path(__file__).resolve().parents[1]
    if not (folder / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit} (with uncommitted changes)" if dirty else commit


def _run_provenance(root: Path, run_dir: Path) -> dict[str, Any]:
    config = storage.read_json(run_dir / runs.CONFIG_FILE, {}) or {}
    data = config.get("data") or {}
    settings = {k: config.get(k) for k in SETTING_KEYS if config.get(k) is not None}
    for key in ("student", "teacher"):  # run names and folder names, never server paths
        if settings.get(key):
            settings[key] = specs.spec_label(settings[key], root)
    source = data.get("source")
    provenance = config.get("provenance") or {}
    preset = (config.get("extra") or {}).get("preset")
    return {"run": run_dir.name, "data": Path(source).name if source and Path(source).is_absolute() else source,
            "max_length": data.get("max_length"),
            "train_samples": data.get("train_samples"), "settings": settings, "preset": preset,
            "kd_studio": provenance.get("kd_studio"), "created_at": provenance.get("created_at")}


def _machines(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct machines/settings the benchmark rows were measured with (from bench.json)."""
    seen: list[dict[str, Any]] = []
    for row in rows:
        bench = row.get("bench")
        if isinstance(bench, dict) and bench not in seen:
            seen.append(bench)
    return seen


def report_data(root: Path, names: Sequence[str], *, price_per_hour: float = DEFAULT_PRICE_PER_HOUR,
                predict_missing: bool = False) -> dict[str, Any]:
    """Everything the report shows, as plain data. ``predict_missing`` computes per-example predictions a run
    does not have yet (one pass over the test split: the CLI does, the page leaves it to its own button)."""
    from . import __version__

    root = Path(root).resolve()
    price = check_price(price_per_hour)
    folders = check_runs(root, names)
    rows = compare.comparison_rows(root, names)
    trades = compare.trade_offs(rows)
    distilled = [d for d in folders if (storage.read_json(d / runs.CONFIG_FILE, {}) or {}).get("mode") == "distill"]
    return {"title": "What distillation gains and what it costs", "runs": list(names),
            "headlines": compare.headlines(trades), "trades": trades,
            "models": [_model_row(row, price) for row in rows], "price_per_hour": price,
            "examples": {d.name: _examples(d, predict_missing) for d in distilled},
            "provenance": {"runs": [_run_provenance(root, d) for d in folders], "machines": _machines(rows),
                           "commit": git_commit(), "kd_studio": __version__,
                           "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}}


def build_report(root: Path, names: Sequence[str], *, price_per_hour: float = DEFAULT_PRICE_PER_HOUR,
                 predict_missing: bool = False) -> str:
    """The self-contained HTML page of a comparison (plotly.js inlined once)."""
    from .report_html import render

    return render(report_data(root, names, price_per_hour=price_per_hour, predict_missing=predict_missing))


def write_report(root: Path, names: Sequence[str], out: Path, *, price_per_hour: float = DEFAULT_PRICE_PER_HOUR,
                 predict_missing: bool = True) -> dict[str, Any]:
    """Build the report and write it to ``out`` (nothing is written when the input is refused)."""
    from .report_html import render

    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: give a file name, e.g. {out / 'report.html'}")
    data = report_data(root, names, price_per_hour=price_per_hour, predict_missing=predict_missing)
    page = render(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return {"out": str(out), "bytes": out.stat().st_size, "headlines": data["headlines"], "runs": list(names)}

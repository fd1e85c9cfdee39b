"""Exports of what the pages show: CSV, a self-contained HTML report, and benchmark rows kept per run."""
from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import runs, storage


def rows_to_csv(rows: Sequence[dict]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def html_report(title: str, figures: Sequence[Any], rows: Sequence[dict], notes: Sequence[str] = ()) -> str:
    """A self-contained HTML page: a table of ``rows`` and the Plotly figures (plotly.js inlined once)."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    table = ("<table><thead><tr>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys) + "</tr></thead><tbody>"
             + "".join("<tr>" + "".join(f"<td>{_cell(row.get(k))}</td>" for k in keys) + "</tr>" for row in rows)
             + "</tbody></table>")
    charts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    style = ("body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#f4f4f4}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            + "".join(f"<p>{html.escape(n)}</p>" for n in notes) + table + "".join(charts) + "</body></html>")


def save_bench_rows(rows: Iterable[dict], spec_to_run_dir: dict[str, Path]) -> None:
    """Keep each run's benchmark rows in its bench.json (read by Compare, the report and the model card),
    each stamped with the machine it was measured on (called right after measuring, in the measuring process)."""
    from ..bench import machine_info

    info = machine_info()
    machine = f"{info['cpu_model']}, {info['usable_cores']} usable cores, {info['platform']}"
    by_spec: dict[Any, list[dict]] = {}
    for row in rows:
        by_spec.setdefault(row.get("model"), []).append({"machine": machine, **row})
    for spec, run_dir in spec_to_run_dir.items():
        if spec in by_spec and Path(run_dir).is_dir():
            storage.write_json_atomic(Path(run_dir) / runs.BENCH_FILE, by_spec[spec])


def speed_accuracy_points(root: Path, rows: list[dict], labels: dict[str, str]) -> list[dict]:
    """Points for figures.speed_accuracy_scatter: the best throughput of each model and its test accuracy."""
    accuracy: dict[str, float] = {}
    for run in runs.list_runs(Path(root).resolve()):
        if isinstance(run.get("test_accuracy"), (int, float)):
            accuracy[run["path"]] = run["test_accuracy"]
        if isinstance(run.get("teacher_test_accuracy"), (int, float)) and run.get("teacher"):
            accuracy.setdefault(run["teacher"], run["teacher_test_accuracy"])
    points = []
    for spec in dict.fromkeys(r.get("model") for r in rows):
        model_rows = [r for r in rows if r.get("model") == spec and isinstance(r.get("samples_per_s"), (int, float))]
        if not model_rows or spec not in accuracy:
            continue
        best = max(model_rows, key=lambda r: r["samples_per_s"])
        points.append({"name": labels.get(spec, spec), "samples_per_s": best["samples_per_s"],
                       "accuracy": accuracy[spec], "size_mb": best.get("size_mb")})
    return points

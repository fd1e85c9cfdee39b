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


def save_bench_rows(rows: Iterable[dict], spec_to_run_dir: dict[str, Path], machine: dict | None = None) -> None:
    """Keep each run's benchmark rows in its bench.json (read by Compare, the report and the model card),
    each stamped with the machine it was measured on: ``machine`` as ``bench.benchmark_models`` returns it
    (with the load average), else this machine now (call it in the measuring process)."""
    from ..hardware import machine_info

    info = machine or machine_info()
    by_spec: dict[Any, list[dict]] = {}
    for row in rows:
        kept = {k: v for k, v in row.items() if k != "round_ms"}  # the rounds only matter within one result
        by_spec.setdefault(row.get("model"), []).append({"machine": machine_summary(info), **kept})
    for spec, run_dir in spec_to_run_dir.items():
        if spec in by_spec and Path(run_dir).is_dir():
            storage.write_json_atomic(Path(run_dir) / runs.BENCH_FILE, by_spec[spec])


def stored_bench_rows(models: dict[str, str]) -> list[dict]:
    """The rows kept in the bench.json of each of ``models`` (spec -> label) that is a run folder, labelled: what
    the showcase build (or an earlier benchmark) measured, for a Benchmark page on which no benchmark ran yet.
    Only catalog specs come here (runs the store lists), never a path a visitor typed."""
    found = []
    for spec, label in models.items():
        rows = storage.read_json(Path(spec) / runs.BENCH_FILE, None)
        if isinstance(rows, list):
            found += [{**row, "model": label} for row in rows if isinstance(row, dict)]
    return found


def machine_summary(info: dict) -> str:
    """One line of machine facts for a row or a report: CPU, cores, platform, torch, date, load average."""
    facts = [f"{info.get('cpu_model')}, {info.get('usable_cores')} usable cores, {info.get('platform')}"]
    if info.get("torch_version"):
        facts.append(f"torch {info['torch_version']}")
    if info.get("date"):
        facts.append(f"measured {info['date']}")
    load_before, load_after = info.get("load_before"), info.get("load_after")
    if load_before and load_after:
        facts.append(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    return "; ".join(facts)


def bench_export_rows(result: dict, labels: dict[str, str] | None = None) -> list[dict]:
    """A benchmark result's rows for the CSV and HTML exports: labelled, without the per-round medians, and
    with the machine facts on every row (a CSV travels alone)."""
    machine = result.get("machine") or {}
    facts = {"cpu_model": machine.get("cpu_model"), "usable_cores": machine.get("usable_cores"),
             "torch_threads": machine.get("threads"), "torch_version": machine.get("torch_version"),
             "measured_at": machine.get("date"),
             "load_before": (machine.get("load_before") or [None])[0],
             "load_after": (machine.get("load_after") or [None])[0]}
    labels = labels or {}
    return [{**{k: v for k, v in row.items() if k != "round_ms"},
             "model": labels.get(row.get("model"), row.get("model")), **facts} for row in result.get("rows", [])]


def speed_accuracy_points(root: Path, rows: list[dict], labels: dict[str, str]) -> list[dict]:
    """Points for figures_speed.speed_accuracy_scatter: the best throughput of each model and its test accuracy."""
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

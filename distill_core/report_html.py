"""The stakeholder report's page: `report.report_data` drawn as one self-contained, printable HTML file.

plotly.js is inlined once, by the first chart; the others reuse it. Everything shown is escaped.
"""
from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

import plotly.graph_objects as go

from . import figures, figures_speed

NOT_MEASURED = "not measured: run Benchmark"
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1000px;color:#1f2328;
  line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.headline{font-size:1.2rem;background:#eef6ee;border-left:4px solid #2e7d32;padding:.6rem 1rem;margin:.5rem 0}
.muted{color:#666;font-size:.85rem}
table{border-collapse:collapse;font-size:13px;margin:.5rem 0;width:100%}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f4f4f4}td:first-child,th:first-child,td.text{text-align:left}
.na{color:#999;font-style:italic}
.print-btn{float:right;padding:.3rem .8rem}
@page{margin:14mm}
@media print{body{margin:0;max-width:none;font-size:10.5pt}.noprint{display:none}
  section{break-inside:avoid}h2{break-after:avoid}.headline{-webkit-print-color-adjust:exact;print-color-adjust:exact}
  .chart{break-inside:avoid}}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, fmt: str, missing: str = NOT_MEASURED) -> str:
    if not isinstance(value, (int, float)):
        return f"<span class='na'>{_e(missing)}</span>"
    return _e(format(value, fmt))


def _table(header: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    """Cells of ``body`` are HTML already (escaped by the caller)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{''.join(parts)}</section>"


def _trade_section(data: dict[str, Any]) -> str:
    body = [[_e(t["model"]), _e(t["baseline"]), _num(t["speedup_b1"], ".1f"), _num(t["speedup_b32"], ".1f"),
             _num(t["smaller"], ".1f", "size unknown"), _num(t["accuracy_kept"], ".1%", "not evaluated")]
            for t in data["trades"]]
    if not body:
        return _section("Gains and losses", "<p>No student with its teacher among these runs: select a "
                                            "distillation run to compare a student with its teacher.</p>")
    table = _table(["student", "against", "× faster, batch 1", "× faster, batch 32", "× smaller",
                    "teacher's accuracy kept"], body)
    return _section("Gains and losses", table, "<p class='muted'>Speed-up: the teacher's p50 latency over the "
                    "student's, fp32, same batch and length. Smaller: size on disk of the weights.</p>")


def _accuracy_section(data: dict[str, Any]) -> str:
    def interval(m: dict[str, Any]) -> str:
        low_high = m.get("accuracy_interval")
        return f"{low_high[0]:.1%} &ndash; {low_high[1]:.1%}" if low_high else "<span class='na'>—</span>"

    body = [[_e(m["model"]), _e(m["role"]), _num(m.get("test_accuracy"), ".1%", "not evaluated"), interval(m),
             _num(m.get("macro_f1"), ".1%", "—"), _num(m.get("agreement"), ".1%", "—"), _num(m.get("n_test"), "d", "—")]
            for m in data["models"]]
    table = _table(["model", "role", "test accuracy", "95% interval", "macro-F1", "agreement with teacher",
                    "test rows"], body)
    note = ("<p class='muted'>95% interval: Wilson score interval over the test rows. Two models whose intervals "
            "overlap may not differ on new data.</p>")
    return _section("Accuracy", table, note)


def _speed_section(data: dict[str, Any]) -> str:
    price = data["price_per_hour"]
    body = []
    for m in data["models"]:
        cells = [_e(m["model"]), _num(m.get("size_mb"), ".1f", "—")]
        for b in (1, 32):
            cells += [_num(m.get(f"latency_ms_b{b}"), ".1f"), _num(m.get(f"latency_ms_p95_b{b}"), ".1f", "—"),
                      _num(m.get(f"samples_per_s_b{b}"), ",.1f", "—"), _num(m.get(f"cost_b{b}"), ",.2f", "—")]
        body.append(cells)
    table = _table(["model", "size (MB)", "b=1 p50 (ms)", "b=1 p95 (ms)", "b=1 samples/s", "b=1 USD / M",
                    "b=32 p50 (ms)", "b=32 p95 (ms)", "b=32 samples/s", "b=32 USD / M"], body)
    lengths = sorted({m[f"seq_len_b{b}"] for m in data["models"] for b in (1, 32) if m.get(f"seq_len_b{b}")})
    note = (f"<p class='muted'>CPU, fp32, synthetic inputs of {_e(', '.join(map(str, lengths)) or '—')} tokens "
            "(Benchmark page: p50 and p95 of timed passes after warm-up). Cost per million predictions at "
            f"<b>{price:.2f} USD per hour</b> of one machine: price / 3600 / samples per second × 1,000,000, one "
            "model per machine, always busy.</p>")
    return _section("Speed and cost", table, note)


def accuracy_chart(models: Sequence[dict[str, Any]]) -> go.Figure:
    """Test accuracy per model with its 95% Wilson interval as error bars."""
    shown = [m for m in models if m.get("accuracy_interval") and isinstance(m.get("test_accuracy"), float)]
    if not shown:
        return figures.empty_figure("Test accuracy (95% interval)")
    accuracy = [m["test_accuracy"] for m in shown]
    fig = go.Figure(go.Scatter(
        x=accuracy, y=[m["model"] for m in shown], mode="markers", marker={"size": 12},
        error_x={"type": "data", "symmetric": False,
                 "array": [m["accuracy_interval"][1] - a for m, a in zip(shown, accuracy, strict=True)],
                 "arrayminus": [a - m["accuracy_interval"][0] for m, a in zip(shown, accuracy, strict=True)]}))
    fig.update_layout(title="Test accuracy (95% interval)", height=120 + 40 * len(shown), template="plotly_white",
                      margin={"l": 10, "r": 10, "t": 50, "b": 40})
    fig.update_xaxes(tickformat=".1%")
    fig.update_yaxes(autorange="reversed")
    return fig


def pareto_chart(models: Sequence[dict[str, Any]]) -> go.Figure:
    """Speed against accuracy with the Pareto frontier, at batch 32 when every measured model has it."""
    measured = [m for m in models if m.get("samples_per_s_b1") or m.get("samples_per_s_b32")]
    batch = 32 if measured and all(m.get("samples_per_s_b32") for m in measured) else 1
    points = [{"name": m["model"], "samples_per_s": m.get(f"samples_per_s_b{batch}"),
               "accuracy": m.get("test_accuracy"), "size_mb": m.get("size_mb")} for m in measured]
    fig = figures.fit_percent_axis(figures_speed.speed_accuracy_scatter(points), pad=0.01)
    fig.update_layout(title=f"Accuracy vs throughput at batch {batch} (marker area: size on disk)", height=440,
                      legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0}, margin={"t": 70, "b": 60})
    return fig


def _chart_html(figs: Sequence[go.Figure]) -> list[str]:
    """plotly.js inlined by the first chart only."""
    config = {"displayModeBar": False, "responsive": True}
    return [f"<div class='chart'>{fig.to_html(full_html=False, include_plotlyjs=(i == 0), config=config)}</div>"
            for i, fig in enumerate(figs)]


def _examples_section(data: dict[str, Any]) -> str:
    parts = []
    for run, found in data["examples"].items():
        if found is None:
            parts.append(f"<p><b>{_e(run)}</b>: per-example predictions not computed yet (Compare: \"Compute "
                         "per-example predictions\", or `python -m distill_core report`).</p>")
            continue
        parts.append(f"<p><b>{_e(run)}</b>: student and teacher disagree on {found['disagree']} of "
                     f"{found['total']} test examples; the teacher is right on {found['student_loses']} of them, "
                     f"the student on {found['student_wins']}.</p>")
        if found["examples"]:
            parts.append(_table(["text", "true", "teacher", "student", "who is right"], [
                [f"<span class='text'>{_e(r['text'][:300])}</span>", _e(r["true"]),
                 f"{_e(r['teacher'])} ({r['teacher_conf']:.0%})", f"{_e(r['student'])} ({r['student_conf']:.0%})",
                 _e(r["who is right"])] for r in found["examples"]]))
    if not parts:
        parts.append("<p>No distillation run among these: nothing to disagree about.</p>")
    return _section("Where teacher and student disagree", *parts)


def _provenance_section(data: dict[str, Any]) -> str:
    prov = data["provenance"]
    body = [[_e(r["run"]), _e(r["data"]), _e(r["max_length"]), _e(r.get("preset") or "—"),
             _e(", ".join(f"{k}={v}" for k, v in r["settings"].items())), _e(r.get("kd_studio") or "—")]
            for r in prov["runs"]]
    runs_table = _table(["run", "data", "max length", "preset", "settings", "trained with"], body)
    machines = [", ".join(f"{k}: {v}" for k, v in m.items() if v is not None) for m in prov["machines"]]
    lines = [f"Code: KD Studio {_e(prov['kd_studio'])}, commit {_e(prov['commit'] or 'unknown (not a git checkout)')}",
             "Machine (benchmark): " + (_e("; ".join(machines)) if machines else NOT_MEASURED),
             f"Report made {_e(prov['date'])} for runs {_e(', '.join(data['runs']))}"]
    return _section("Provenance", runs_table, "<ul>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>")


def render(data: dict[str, Any]) -> str:
    """The whole page."""
    headlines = "".join(f"<p class='headline'>{_e(h)}</p>" for h in data["headlines"]) or (
        "<p class='headline'>No student with its teacher among these runs.</p>")
    charts = _chart_html([pareto_chart(data["models"]), accuracy_chart(data["models"])])
    body = [f"<button class='noprint print-btn' onclick='window.print()'>Print</button><h1>{_e(data['title'])}</h1>",
            f"<p class='muted'>KD Studio stakeholder report · {_e(data['provenance']['date'])} · runs "
            f"{_e(', '.join(data['runs']))}</p>", headlines, _trade_section(data), _accuracy_section(data),
            _speed_section(data), _section("Speed vs accuracy", *charts), _examples_section(data),
            _provenance_section(data)]
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(data['title'])}</title>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{STYLE}</style></head>"
            f"<body>{''.join(body)}</body></html>")

"""Plotly figures for the dashboard and reports: training curves, confusion heatmaps, benchmark charts, the
speed/accuracy Pareto scatter and probability bars.

Every function is pure: rows in (as read from the run store or returned by bench/evaluate), ``go.Figure``
out; no I/O and no Streamlit. Empty input gives a figure that says "no data yet" instead of raising, because
pages draw charts of runs that have only just started.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
import plotly.graph_objects as go

from distill_core.errors import UserError

__all__ = [
    "NO_DATA_TEXT", "TEMPLATE", "accuracy_curves", "confusion_heatmap", "empty_figure", "latency_chart",
    "loss_curves", "overlay_curves", "pareto_frontier", "per_class_f1", "probability_bars",
    "speed_accuracy_scatter", "speedup_bars", "throughput_chart",
]

TEMPLATE = "plotly_white"
NO_DATA_TEXT = "no data yet"
PERCENT_TICKS = ".0%"  # accuracies, F1 and probabilities are stored as fractions in [0, 1]
BENCH_AXES = {"batch_size": "batch size (examples)", "seq_len": "sequence length (tokens)"}


# ---- shared helpers ----------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(value)


def _styled(fig: go.Figure, title: str, x_title: str, y_title: str, *, y_percent: bool = False) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE,
        title=title,
        xaxis_title=x_title,
        yaxis_title=y_title,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0},
        margin={"l": 60, "r": 20, "t": 80, "b": 50},
        hovermode="closest",
        showlegend=True,  # also for one series, so its name (model, precision) stays visible
    )
    if y_percent:
        fig.update_yaxes(tickformat=PERCENT_TICKS)
    return fig


def empty_figure(title: str = "", message: str = NO_DATA_TEXT) -> go.Figure:
    """A blank figure carrying ``message`` in its centre (used when there is nothing to plot yet)."""
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE, title=title, xaxis={"visible": False}, yaxis={"visible": False})
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16})
    return fig


def _rows_of_kind(rows: Iterable[dict], kind: str) -> list[dict]:
    # Rows straight from metrics.jsonl mix step and epoch rows; rows without "kind" are taken as given.
    return [row for row in rows if row.get("kind", kind) == kind]


def _series(rows: list[dict], x_key: str, y_key: str) -> tuple[list, list]:
    points = [(row[x_key], row[y_key]) for row in rows if _is_number(row.get(x_key)) and _is_number(row.get(y_key))]
    points.sort(key=lambda point: point[0])
    return [x for x, _ in points], [y for _, y in points]


def _metric_axis(metric: str) -> tuple[str, bool]:
    label = metric.replace("_", " ")
    if "accuracy" in metric or "f1" in metric:
        return f"{label} (%)", True
    if "loss" in metric:
        return f"{label} (nats)", False
    return label, False


# ---- training curves ---------------------------------------------------------------------------------


def _curves(title: str, lines: Iterable[tuple[str, list, list]], mode: str, x_title: str, y_title: str, *,
            y_percent: bool = False) -> go.Figure:
    """One trace per ``(name, xs, ys)`` that has points; the "no data yet" figure when none has."""
    fig = go.Figure()
    for name, xs, ys in lines:
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode=mode, name=name))
    if not fig.data:
        return empty_figure(title)
    return _styled(fig, title, x_title, y_title, y_percent=y_percent)


def loss_curves(step_rows: list[dict]) -> go.Figure:
    """Total, CE and KD loss per optimiser step; the KD line is left out when a run has no teacher."""
    rows = _rows_of_kind(step_rows, "step")
    lines = [(name, *_series(rows, "step", key))
             for key, name in (("loss", "total"), ("ce_loss", "CE (gold labels)"), ("kd_loss", "KD (teacher)"))]
    return _curves("Training loss per step", lines, "lines", "optimiser step", "loss (nats)")


def accuracy_curves(epoch_rows: list[dict]) -> go.Figure:
    """Training and validation accuracy per epoch."""
    rows = _rows_of_kind(epoch_rows, "epoch")
    lines = [(name, *_series(rows, "epoch", key))
             for key, name in (("training_accuracy", "training"), ("valid_accuracy", "validation"))]
    return _curves("Accuracy per epoch", lines, "lines+markers", "epoch", "accuracy (%)", y_percent=True)


def overlay_curves(runs: dict[str, list[dict]], metric: str = "valid_accuracy") -> go.Figure:
    """One line per run of an epoch metric, to compare runs (e.g. a temperature or alpha sweep)."""
    y_title, y_percent = _metric_axis(metric)
    title = f"{metric.replace('_', ' ').capitalize()} per epoch, by run"
    lines = [(run_name, *_series(_rows_of_kind(rows, "epoch"), "epoch", metric)) for run_name, rows in runs.items()]
    return _curves(title, lines, "lines+markers", "epoch", y_title, y_percent=y_percent)


# ---- classification results --------------------------------------------------------------------------


def confusion_heatmap(
    matrix: list[list[int]], label_names: list[str], title: str, normalize: bool = True
) -> go.Figure:
    """Confusion matrix (rows = true class, columns = predicted), coloured by row share, annotated with counts.

    Row normalisation makes classes of different sizes comparable: a cell reads "share of the true class
    predicted as this class", so the diagonal is per-class recall.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    if counts.size == 0:
        return empty_figure(title)
    size = len(label_names)
    if counts.shape != (size, size):
        raise UserError(f"confusion matrix has shape {counts.shape} but there are {size} label names")

    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros(counts.shape, dtype=np.float64), where=row_totals > 0)
    fig = go.Figure(
        go.Heatmap(
            z=shares if normalize else counts,
            x=list(label_names),
            y=list(label_names),
            text=counts,
            texttemplate="%{text}",
            customdata=shares,
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text} examples (%{customdata:.1%} of row)<extra></extra>",
            colorscale="Blues",
            zmin=0,
            zmax=1 if normalize else None,
            colorbar={
                "title": "share of true class" if normalize else "examples",
                "tickformat": PERCENT_TICKS if normalize else "",
            },
        )
    )
    _styled(fig, title, "predicted class", "true class")
    # Reading order: the first class in the top-left corner, as in a printed confusion matrix.
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", side="bottom")
    return fig


def per_class_f1(per_model: dict[str, dict[str, dict]]) -> go.Figure:
    """Grouped bars of per-class F1, one group per class and one bar per model."""
    title = "F1 per class"
    class_names: list[str] = []
    for per_class in per_model.values():
        class_names.extend(name for name in per_class if name not in class_names)
    if not class_names:
        return empty_figure(title)

    fig = go.Figure()
    for model_name, per_class in per_model.items():
        scores = [per_class.get(name, {}).get("f1") for name in class_names]
        fig.add_trace(
            go.Bar(x=class_names, y=scores, name=model_name, texttemplate="%{y:.0%}", textposition="outside")
        )
    _styled(fig, title, "class", "F1 (%)", y_percent=True)
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.1])
    return fig


def probability_bars(probs_by_model: dict[str, list[float]], label_names: list[str]) -> go.Figure:
    """Class probabilities of one text under several models, as grouped horizontal bars."""
    title = "Predicted class probabilities"
    if not probs_by_model or not label_names:
        return empty_figure(title)
    fig = go.Figure()
    for model_name, probs in probs_by_model.items():
        probs = [float(p) for p in probs]
        if len(probs) != len(label_names):
            raise UserError(
                f"model {model_name!r} gave {len(probs)} probabilities but there are {len(label_names)} labels"
            )
        fig.add_trace(
            go.Bar(
                x=probs,
                y=list(label_names),
                orientation="h",
                name=model_name,
                texttemplate="%{x:.1%}",
                textposition="auto",
            )
        )
    _styled(fig, title, "probability (%)", "class")
    fig.update_layout(barmode="group")
    fig.update_xaxes(range=[0, 1], tickformat=PERCENT_TICKS)
    fig.update_yaxes(autorange="reversed", type="category")
    return fig


# ---- benchmarks --------------------------------------------------------------------------------------


def _bench_series(rows: list[dict], x: str) -> dict[str, list[dict]]:
    if x not in BENCH_AXES:
        raise UserError(f"benchmark x axis must be one of {sorted(BENCH_AXES)}, got {x!r}")
    # The dimension not on the x axis becomes part of the series, so each line varies in one thing only.
    other, other_label = ("seq_len", "seq") if x == "batch_size" else ("batch_size", "batch")
    series: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if _is_number(row.get(x)):
            name = f"{row.get('model', '?')} · {row.get('precision', '?')} · {other_label} {row.get(other, '?')}"
            series[name].append(row)
    return {name: sorted(points, key=lambda row: row[x]) for name, points in series.items()}


def _bench_line_chart(rows: list[dict], x: str, y_key: str, title: str, y_title: str) -> go.Figure:
    fig = go.Figure()
    for name, points in _bench_series(rows, x).items():
        points = [row for row in points if _is_number(row.get(y_key))]
        if not points:
            continue
        trace = go.Scatter(x=[p[x] for p in points], y=[p[y_key] for p in points], mode="lines+markers", name=name)
        if y_key == "latency_ms_p50":
            # Asymmetric bar from p50 up to p95: the tail latency a user actually waits for now and then.
            p95 = [row["latency_ms_p95"] if _is_number(row.get("latency_ms_p95")) else row[y_key] for row in points]
            tail_ms = [max(high - row[y_key], 0.0) for high, row in zip(p95, points, strict=True)]
            trace.error_y = {"type": "data", "symmetric": False, "array": tail_ms, "arrayminus": [0.0] * len(points)}
        fig.add_trace(trace)
    if not fig.data:
        return empty_figure(title)
    _styled(fig, title, BENCH_AXES[x], y_title)
    # Batch sizes and lengths are powers of two: a log axis spaces them evenly; ticks at the measured values.
    ticks = sorted({row[x] for row in rows if _is_number(row.get(x))})
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=[str(t) for t in ticks])
    return fig


def latency_chart(rows: list[dict], x: str = "batch_size") -> go.Figure:
    """Median latency per batch against batch size or length; the error bar reaches up to the p95."""
    return _bench_line_chart(rows, x, "latency_ms_p50", "Latency per batch (p50, bar to p95)", "latency per batch (ms)")


def throughput_chart(rows: list[dict], x: str = "batch_size") -> go.Figure:
    """Examples processed per second against batch size or length (higher is better)."""
    return _bench_line_chart(rows, x, "samples_per_s", "Throughput", "throughput (samples/s)")


def speedup_bars(rows: list[dict], baseline_model: str) -> go.Figure:
    """Throughput of each model relative to ``baseline_model`` at the same batch size, length and precision."""
    title = f"Speed-up over {baseline_model}"
    if not rows:
        return empty_figure(title)

    def setting(row: dict) -> tuple:
        return row.get("precision"), row.get("batch_size"), row.get("seq_len")

    baseline = {
        setting(row): row["samples_per_s"]
        for row in rows
        if row.get("model") == baseline_model and _is_number(row.get("samples_per_s")) and row["samples_per_s"] > 0
    }
    if not baseline:
        return empty_figure(title, f"no benchmark rows for the baseline {baseline_model}")

    bars: dict[str, dict[tuple, float]] = defaultdict(dict)
    for row in rows:
        comparable = setting(row) in baseline and _is_number(row.get("samples_per_s"))
        if row.get("model") == baseline_model or not comparable:
            continue
        series_name = f"{row.get('model')} · {row.get('precision')}"
        bars[series_name][setting(row)[1:]] = row["samples_per_s"] / baseline[setting(row)]
    if not bars:
        return empty_figure(title)

    settings = sorted({key for speedups in bars.values() for key in speedups}, key=lambda key: (key[0], key[1]))
    categories = [f"batch {batch} · seq {seq}" for batch, seq in settings]
    fig = go.Figure()
    for name, speedups in bars.items():
        fig.add_trace(
            go.Bar(
                x=categories,
                y=[speedups.get(key) for key in settings],
                name=name,
                texttemplate="%{y:.1f}×",
                textposition="outside",
            )
        )
    _styled(fig, title, "batch size · sequence length (tokens)", "speed-up (× baseline throughput)")
    fig.update_layout(barmode="group")
    fig.add_hline(y=1.0, line_dash="dash", line_color="grey", annotation_text=f"{baseline_model} = 1×")
    return fig


# ---- speed vs accuracy -------------------------------------------------------------------------------


def pareto_frontier(points: list[dict], x: str = "samples_per_s", y: str = "accuracy") -> list[dict]:
    """The points no other point beats: higher ``x`` and higher ``y`` are both better.

    A point is dominated when another is at least as good on both axes and strictly better on one, so exact
    ties are all kept. Points missing either value are ignored. Returned sorted by ``x`` ascending (``y``
    then descends along the frontier), ready to draw as a staircase.
    """
    candidates = [point for point in points if _is_number(point.get(x)) and _is_number(point.get(y))]

    def dominated(point: dict) -> bool:
        return any(
            other[x] >= point[x] and other[y] >= point[y] and (other[x] > point[x] or other[y] > point[y])
            for other in candidates
        )

    # O(n^2) is fine: a comparison holds a handful of models, and this is obviously correct.
    frontier = [point for point in candidates if not dominated(point)]
    return sorted(frontier, key=lambda point: (point[x], -point[y]))


def _point_hover(point: dict) -> str:
    lines = [str(point.get("name", "")), f"{point['samples_per_s']:.1f} samples/s", f"accuracy {point['accuracy']:.2%}"]
    if _is_number(point.get("size_mb")):
        lines.append(f"{point['size_mb']:.1f} MB on disk")
    return "<br>".join(lines)


def speed_accuracy_scatter(points: list[dict]) -> go.Figure:
    """Accuracy against throughput, one marker per model (sized by ``size_mb`` when every point has it),
    with the Pareto frontier drawn as a staircase."""
    title = "Accuracy vs throughput"
    valid = [p for p in points if _is_number(p.get("samples_per_s")) and _is_number(p.get("accuracy"))]
    if not valid:
        return empty_figure(title)

    marker: dict[str, Any] = {"size": 14}
    sizes_mb = [p["size_mb"] for p in valid if _is_number(p.get("size_mb")) and p["size_mb"] > 0]
    if len(sizes_mb) == len(valid):
        # Area proportional to size on disk; the largest marker is about 48 px across.
        marker = {"size": sizes_mb, "sizemode": "area", "sizeref": 2.0 * max(sizes_mb) / 48**2, "sizemin": 8}
    fig = go.Figure(
        go.Scatter(
            x=[p["samples_per_s"] for p in valid],
            y=[p["accuracy"] for p in valid],
            mode="markers+text",
            text=[str(p.get("name", "")) for p in valid],
            textposition="top center",
            cliponaxis=False,  # labels of the fastest or most accurate model sit at the plot's edge
            marker=marker,
            hovertext=[_point_hover(p) for p in valid],
            hoverinfo="text",
            name="models",
        )
    )
    frontier = pareto_frontier(valid)
    # "vh": from each frontier point drop to the next one's accuracy, then run right to it; the area below
    # and to the left of the staircase is what the frontier models dominate.
    fig.add_trace(
        go.Scatter(
            x=[p["samples_per_s"] for p in frontier],
            y=[p["accuracy"] for p in frontier],
            mode="lines",
            line={"shape": "vh", "dash": "dash", "color": "grey"},
            name="Pareto frontier",
            hoverinfo="skip",
        )
    )
    return _styled(fig, title, "throughput (samples/s)", "accuracy (%)", y_percent=True)


def fit_percent_axis(fig, pad: float = 0.02):
    """A y axis of fractions shown as percent that fits the data (Plotly pads a flat line to 0-200%), with
    one decimal in the ticks, because runs and epochs often differ by tenths of a percent."""
    values = [y for trace in fig.data for y in (getattr(trace, "y", None) or ())
              if isinstance(y, (int, float)) and math.isfinite(y)]
    if values:
        low, high = min(values), max(values)
        fig.update_yaxes(range=[max(low - pad - 0.05 * (high - low), 0.0), min(high + pad, 1.0) + pad / 2])
    fig.update_yaxes(tickformat=".1%")
    return fig

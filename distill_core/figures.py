"""Plotly figures for the dashboard and reports: training curves, confusion heatmaps, per-class F1 and
probability bars, and each chart's text alternative (figure_table). Speed charts live in figures_speed.py, the
sweep heatmap in figures_sweep.py; both build on the helpers here.

Every function is pure: rows in (as read from the run store or returned by bench/evaluate), ``go.Figure``
out; no I/O and no Streamlit. Empty input gives a figure that says "no data yet" instead of raising, because
pages draw charts of runs that have only just started.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import plotly.graph_objects as go

from distill_core.errors import UserError

__all__ = [
    "NO_DATA_TEXT", "TEMPLATE", "accuracy_curves", "confusion_heatmap", "empty_figure", "figure_table",
    "figure_title", "fit_percent_axis", "is_number", "loss_curves", "overlay_curves", "per_class_f1",
    "probability_bars", "styled", "whole_epoch_axis",
]

TEMPLATE = "plotly_white"
NO_DATA_TEXT = "no data yet"
PERCENT_TICKS = ".0%"  # accuracies, F1 and probabilities are stored as fractions in [0, 1]
EPOCH_TICKS_MAX = 12  # more epochs than this: a tick every k-th epoch, still whole numbers
SMALL_STEP_AXIS = 30  # up to this many optimiser steps, whole-step ticks (beyond, Plotly's own are whole)
SAME_LOSS_REL_TOL = 1e-6  # total == CE (or KD) up to float noise: one term has weight 0


# ---- shared helpers ----------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    """A finite int or float (numpy's too); bools and missing or NaN values are not drawn."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(value)


def styled(fig: go.Figure, title: str, x_title: str, y_title: str, *, y_percent: bool = False) -> go.Figure:
    """The house look every figure shares: template, titles, legend above the plot, percent ticks if asked."""
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
    points = [(row[x_key], row[y_key]) for row in rows if is_number(row.get(x_key)) and is_number(row.get(y_key))]
    points.sort(key=lambda point: point[0])
    return [x for x, _ in points], [y for _, y in points]


def _metric_words(metric: str) -> str:
    """A metrics-file key in words: "valid_loss" -> "validation loss"."""
    return metric.replace("valid_", "validation_").replace("_", " ")


def _metric_axis(metric: str) -> tuple[str, bool]:
    label = _metric_words(metric)
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
        if xs:  # a lone point drawn as a line is invisible: give it a marker
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers" if len(xs) == 1 else mode, name=name))
    if not fig.data:
        return empty_figure(title)
    return styled(fig, title, x_title, y_title, y_percent=y_percent)


def _same_line(a: tuple[list, list], b: tuple[list, list]) -> bool:
    """Whether two (xs, ys) series are the same line, so drawing both would hide one under the other."""
    return bool(a[0]) and a[0] == b[0] and all(
        math.isclose(y1, y2, rel_tol=SAME_LOSS_REL_TOL, abs_tol=1e-12) for y1, y2 in zip(a[1], b[1], strict=True))


# Intermediate-layer terms (objective.LAYER_TERMS) as their step rows name them, and their legend entries; a run
# logs only those it trains on (weight > 0).
LAYER_LOSS_LINES = {"hidden_loss": "hidden MSE (teacher layers)", "attention_loss": "attention KL (teacher layers)",
                    "cosine_loss": "cosine (teacher last layer)"}


def _step_loss_lines(rows: list[dict]) -> list[tuple[str, list, list]]:
    """Total, CE, KD and the layer terms a run logs, per step; when the total is one of CE and KD (alpha = 1 or
    0, no layer term, or no teacher), one line named for both, and the other term (if logged) named as not
    trained on."""
    total, ce, kd = (_series(rows, "step", key) for key in ("loss", "ce_loss", "kd_loss"))
    layers = [(name, *_series(rows, "step", key)) for key, name in LAYER_LOSS_LINES.items()]
    if _same_line(total, ce):
        return [("total = CE (gold labels)", *total), ("KD (teacher, weight 0)", *kd), *layers]
    if _same_line(total, kd):
        return [("total = KD (teacher)", *total), ("CE (gold labels, weight 0)", *ce), *layers]
    return [("total", *total), ("CE (gold labels)", *ce), ("KD (teacher)", *kd), *layers]


def _epoch_steps(epoch_rows: list[dict], step_rows: list[dict]) -> list[tuple[float, dict]]:
    """(optimiser step at the end of the epoch, epoch row): the row's own "step", else the last step row logged
    within that epoch (step rows carry a fractional epoch)."""
    placed: list[tuple[float, dict]] = []
    for row in epoch_rows:
        step = row.get("step")
        if not is_number(step) and is_number(row.get("epoch")):
            within = [r["step"] for r in step_rows if is_number(r.get("step")) and is_number(r.get("epoch"))
                      and r["epoch"] <= row["epoch"] + 1e-9]
            step = max(within, default=None)
        if step is not None and is_number(step):
            placed.append((float(step), row))
    return sorted(placed, key=lambda pair: pair[0])


def loss_curves(step_rows: list[dict], epoch_rows: list[dict] | None = None) -> go.Figure:
    """Training loss per optimiser step (total, CE, KD and the intermediate-layer terms a run trains on; KD left
    out when a run has no teacher, and a total equal to one term drawn once), plus the validation loss of each
    epoch at the step where the epoch ended.

    ``epoch_rows`` may be the epoch rows or the whole metrics file; without them, epoch rows mixed into
    ``step_rows`` are used. The validation loss is cross-entropy on gold labels: compare it with the CE line.
    """
    title = "Training loss per step, validation loss per epoch"
    steps = _rows_of_kind(step_rows, "step")
    epochs = _rows_of_kind(epoch_rows if epoch_rows is not None else step_rows, "epoch")
    if epoch_rows is None and all("kind" not in row for row in step_rows):
        epochs = []  # bare step rows: no epoch rows hidden among them
    lines = _step_loss_lines(steps)
    placed = [(step, row) for step, row in _epoch_steps(epochs, steps) if is_number(row.get("valid_loss"))]
    fig = _curves(title, lines, "lines", "optimiser step", "loss (nats)")
    if placed:
        if not fig.data:  # validation rows before any step row: the empty placeholder has no axes to draw on
            fig = styled(go.Figure(), title, "optimiser step", "loss (nats)")
        fig.add_trace(go.Scatter(
            x=[step for step, _ in placed], y=[row["valid_loss"] for _, row in placed], mode="lines+markers",
            name="validation CE (per epoch)",
            customdata=[f"{row.get('epoch', '?')}{' (partial)' if row.get('partial') else ''}" for _, row in placed],
            hovertemplate="validation CE %{y:.4f}<br>end of epoch %{customdata} (step %{x})<extra></extra>"))
    return _loss_layout(fig) if fig.data else fig


def _loss_layout(fig: go.Figure) -> go.Figure:
    # Four series do not fit above a half-width chart without running into its title: the legend goes below.
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0},
                      margin={"b": 110})
    last_step = max(x for trace in fig.data for x in trace.x)
    if last_step <= SMALL_STEP_AXIS:  # a few steps: Plotly would tick 1.5 and 2.5
        fig.update_xaxes(tickmode="linear", tick0=0, dtick=max(1, math.ceil(last_step / 10)), tickformat="d")
    return fig


def whole_epoch_axis(fig: go.Figure, axis: str = "x") -> go.Figure:
    """Ticks at whole epochs only: Plotly would label 0.5 and 1.5 on a two-epoch run, and there is no half
    epoch. Beyond EPOCH_TICKS_MAX epochs, a tick every k-th epoch."""
    values = [v for trace in fig.data for v in (getattr(trace, axis, None) or ()) if is_number(v)]
    first, last = min(values, default=1), max(values, default=1)
    every = max(1, math.ceil(last / EPOCH_TICKS_MAX))
    fig.update_xaxes(tickmode="linear", tick0=1 if every == 1 else 0, dtick=every, tickformat="d")
    if last - first < 2:  # one or two epochs: Plotly would pad the axis to epoch 0 and beyond the last one
        fig.update_xaxes(range=[first - 0.5, last + 0.5])
    return fig


def accuracy_curves(epoch_rows: list[dict]) -> go.Figure:
    """Training and validation accuracy per epoch."""
    rows = _rows_of_kind(epoch_rows, "epoch")
    lines = [(name, *_series(rows, "epoch", key))
             for key, name in (("training_accuracy", "training"), ("valid_accuracy", "validation"))]
    fig = _curves("Accuracy per epoch", lines, "lines+markers", "epoch", "accuracy (%)", y_percent=True)
    return whole_epoch_axis(fig) if fig.data else fig


def overlay_curves(runs: dict[str, list[dict]], metric: str = "valid_accuracy") -> go.Figure:
    """One line per run of an epoch metric, to compare runs (e.g. a temperature or alpha sweep)."""
    y_title, y_percent = _metric_axis(metric)
    title = f"{_metric_words(metric).capitalize()} per epoch, by run"
    lines = [(run_name, *_series(_rows_of_kind(rows, "epoch"), "epoch", metric)) for run_name, rows in runs.items()]
    fig = _curves(title, lines, "lines+markers", "epoch", y_title, y_percent=y_percent)
    return whole_epoch_axis(fig) if fig.data else fig


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
    styled(fig, title, "predicted class", "true class")
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
    styled(fig, title, "class", "F1 (%)", y_percent=True)
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
    styled(fig, title, "probability (%)", "class")
    fig.update_layout(barmode="group")
    fig.update_xaxes(range=[0, 1], tickformat=PERCENT_TICKS)
    fig.update_yaxes(autorange="reversed", type="category")
    return fig


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


# ---- text alternative --------------------------------------------------------------------------------


def figure_title(fig: go.Figure, default: str = "") -> str:
    """The figure's title as plain text (Plotly titles may carry <b> and <br> tags): the chart's accessible name."""
    text = fig.layout.title.text if fig.layout.title and fig.layout.title.text else ""
    return " ".join(re.sub(r"<[^>]+>", " ", text).split()) or default


def _axis_column(axis) -> tuple[str, bool]:
    """(column name, whether values are fractions shown as percent) of a figure axis."""
    title = axis.title.text if axis.title and axis.title.text else ""
    return title, "%" in (axis.tickformat or "")


def _cell(value: Any, percent: bool) -> Any:
    if is_number(value):
        return round(float(value) * 100, 2) if percent else round(float(value), 6)
    return value


def _heatmap_table(trace, x_title: str, y_title: str) -> list[dict]:
    """One row per y category, one column per x category; the trace's text (counts) where it has them."""
    values = trace.text if trace.text is not None else trace.z
    return [{y_title or "row": y, **{f"{x_title or 'column'}: {x}": _cell(value, False)
                                     for x, value in zip(trace.x, row, strict=True)}}
            for y, row in zip(trace.y, values, strict=True)]


def figure_table(fig: go.Figure) -> list[dict]:
    """The numbers behind a figure as table rows: the text alternative of a chart (one row per point, named by
    its series and axis titles; percent axes in percent). Guide traces (hover skipped, e.g. a frontier line)
    are left out: they repeat points already listed. An empty figure gives no rows."""
    x_title, x_percent = _axis_column(fig.layout.xaxis)
    y_title, y_percent = _axis_column(fig.layout.yaxis)
    x_title, y_title = x_title or "x", y_title or "y"
    table: list[dict] = []
    for trace in fig.data:
        if trace.type == "heatmap":
            table.extend(_heatmap_table(trace, x_title, y_title))
            continue
        if getattr(trace, "hoverinfo", None) == "skip" or trace.x is None or trace.y is None:
            continue
        labels = trace.text if "text" in (getattr(trace, "mode", None) or "") and trace.text is not None else None
        for i, (x, y) in enumerate(zip(trace.x, trace.y, strict=False)):
            row = {"series": trace.name or ""}
            if labels is not None and not isinstance(labels, str):
                row["point"] = labels[i]
            row.update({x_title: _cell(x, x_percent), y_title: _cell(y, y_percent)})
            table.append(row)
    return table

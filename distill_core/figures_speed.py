"""Speed figures: latency, throughput and paired speed-up charts of benchmark rows, and the accuracy vs
throughput scatter with its Pareto frontier. Pure, like figures.py: rows in (bench/bench_stats), ``go.Figure`` out.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import plotly.graph_objects as go

from distill_core.errors import UserError
from distill_core.figures import empty_figure, is_number, styled

__all__ = ["BENCH_AXES", "latency_chart", "pareto_frontier", "speed_accuracy_scatter", "speedup_bars",
           "throughput_chart"]

BENCH_AXES = {"batch_size": "batch size (examples)", "seq_len": "sequence length (tokens)"}

# ---- benchmarks --------------------------------------------------------------------------------------


def _bench_series(rows: list[dict], x: str) -> dict[str, list[dict]]:
    if x not in BENCH_AXES:
        raise UserError(f"benchmark x axis must be one of {sorted(BENCH_AXES)}, got {x!r}")
    # The dimension not on the x axis becomes part of the series, so each line varies in one thing only.
    other, other_label = ("seq_len", "seq") if x == "batch_size" else ("batch_size", "batch")
    series: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if is_number(row.get(x)):
            name = f"{row.get('model', '?')} · {row.get('precision', '?')} · {other_label} {row.get(other, '?')}"
            series[name].append(row)
    return {name: sorted(points, key=lambda row: row[x]) for name, points in series.items()}


def _bench_line_chart(rows: list[dict], x: str, y_key: str, title: str, y_title: str) -> go.Figure:
    fig = go.Figure()
    for name, points in _bench_series(rows, x).items():
        points = [row for row in points if is_number(row.get(y_key))]
        if not points:
            continue
        trace = go.Scatter(x=[p[x] for p in points], y=[p[y_key] for p in points], mode="lines+markers", name=name)
        if y_key == "latency_ms_p50":
            # Asymmetric bar from p25 (the lower quartile: how tight the typical passes are) up to p95 (the tail
            # latency a user waits for now and then); rows without quartiles draw only the upper part.
            p95 = [row["latency_ms_p95"] if is_number(row.get("latency_ms_p95")) else row[y_key] for row in points]
            p25 = [row["latency_ms_p25"] if is_number(row.get("latency_ms_p25")) else row[y_key] for row in points]
            tail_ms = [max(high - row[y_key], 0.0) for high, row in zip(p95, points, strict=True)]
            low_ms = [max(row[y_key] - low, 0.0) for low, row in zip(p25, points, strict=True)]
            trace.error_y = {"type": "data", "symmetric": False, "array": tail_ms, "arrayminus": low_ms}
        fig.add_trace(trace)
    if not fig.data:
        return empty_figure(title)
    styled(fig, title, BENCH_AXES[x], y_title)
    # Batch sizes and lengths are powers of two: a log axis spaces them evenly; ticks at the measured values.
    ticks = sorted({row[x] for row in rows if is_number(row.get(x))})
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=[str(t) for t in ticks])
    return fig


def latency_chart(rows: list[dict], x: str = "batch_size") -> go.Figure:
    """Median latency per batch against batch size or length; the error bar spans p25 to p95."""
    return _bench_line_chart(rows, x, "latency_ms_p50", "Latency per batch (p50, bar from p25 to p95)",
                             "latency per batch (ms)")


def throughput_chart(rows: list[dict], x: str = "batch_size") -> go.Figure:
    """Examples processed per second against batch size or length (higher is better)."""
    return _bench_line_chart(rows, x, "samples_per_s", "Throughput", "throughput (samples/s)")


def speedup_bars(rows: list[dict], baseline_model: str) -> go.Figure:
    """How many times faster each model is than ``baseline_model`` at the same batch size, length and precision:
    the paired speed-up (``bench_stats.paired_speedups``: median of per-round ratios), bars from p25 to p75."""
    from distill_core.bench_stats import paired_speedups

    title = f"Speed-up over {baseline_model} (paired; bar p25 to p75)"
    if not rows:
        return empty_figure(title)
    if not any(row.get("model") == baseline_model for row in rows):
        return empty_figure(title, f"no benchmark rows for the baseline {baseline_model}")
    bars: dict[str, dict[tuple, dict]] = defaultdict(dict)
    for speedup in paired_speedups(rows, baseline_model):
        bars[f"{speedup['model']} · {speedup['precision']}"][(speedup["batch_size"], speedup["seq_len"])] = speedup
    if not bars:
        return empty_figure(title)

    settings = sorted({key for speedups in bars.values() for key in speedups}, key=lambda key: (key[0], key[1]))
    categories = [f"batch {batch} · seq {seq}" for batch, seq in settings]
    fig = go.Figure()
    for name, speedups in bars.items():
        cells = [speedups.get(key) for key in settings]
        fig.add_trace(
            go.Bar(
                x=categories,
                y=[c["speedup"] if c else None for c in cells],
                error_y={"type": "data", "symmetric": False,
                         "array": [c["speedup_p75"] - c["speedup"] if c else 0.0 for c in cells],
                         "arrayminus": [c["speedup"] - c["speedup_p25"] if c else 0.0 for c in cells]},
                name=name,
                texttemplate="%{y:.1f}×",
                textposition="outside",
            )
        )
    styled(fig, title, "batch size · sequence length (tokens)", "speed-up (× baseline throughput)")
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
    candidates = [point for point in points if is_number(point.get(x)) and is_number(point.get(y))]

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
    if is_number(point.get("accuracy_std")):
        lines[2] += f" ± {point['accuracy_std']:.2%} (std over {point.get('n_seeds', 'several')} seeds)"
    if is_number(point.get("size_mb")):
        lines.append(f"{point['size_mb']:.1f} MB on disk")
    return "<br>".join(lines)


def speed_accuracy_scatter(points: list[dict]) -> go.Figure:
    """Accuracy against throughput, one marker per model (sized by ``size_mb`` when every point has it),
    with the Pareto frontier drawn as a staircase. A point standing for several seeds of one setting carries
    ``accuracy_std`` (and ``samples_per_s_std``): drawn as error bars of one standard deviation each way."""
    title = "Accuracy vs throughput"
    valid = [p for p in points if is_number(p.get("samples_per_s")) and is_number(p.get("accuracy"))]
    if not valid:
        return empty_figure(title)

    marker: dict[str, Any] = {"size": 14}
    sizes_mb = [p["size_mb"] for p in valid if is_number(p.get("size_mb")) and p["size_mb"] > 0]
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
    for axis, key in (("error_y", "accuracy_std"), ("error_x", "samples_per_s_std")):
        if any(is_number(p.get(key)) for p in valid):
            spread = [p[key] if is_number(p.get(key)) else 0.0 for p in valid]  # 0: a single run, no bar
            fig.update_traces({axis: {"type": "data", "array": spread, "visible": True, "thickness": 1.5}},
                              selector={"name": "models"})
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
    return styled(fig, title, "throughput (samples/s)", "accuracy (%)", y_percent=True)

"""The sweep heatmap: validation accuracy over (T, alpha), the mean over seeds in each cell with its spread, and
the best setting marked. Pure, like figures.py: setting rows (sweep.setting_results) in, ``go.Figure`` out.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from .figures import NO_DATA_TEXT, TEMPLATE, empty_figure

TITLE = "Validation accuracy over temperature T and α"
X_TITLE = "α (weight of the label loss)"
Y_TITLE = "temperature T"
BEST_NAME = "best setting"
WAITING_WORDS = {"queued": "queued", "running": "running"}


def _label(value: float) -> str:
    return f"{value:g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def cell_text(setting: dict[str, Any]) -> str:
    """What a heatmap cell says: mean and spread over seeds (in points), how many seeds are in, or its state."""
    mean, std = setting.get("valid_mean"), setting.get("valid_std")
    if mean is None:
        states = setting.get("states") or []
        live = next((WAITING_WORDS[s] for s in ("running", "queued") if s in states), None)
        return live or (states[0] if states else NO_DATA_TEXT)
    text = _percent(mean) + (f"<br>± {100 * std:.1f}" if std is not None else "")
    if setting.get("measured", 0) < setting.get("seeds", 0):
        text += f"<br>{setting['measured']}/{setting['seeds']} seeds"
    return text


def _hover(setting: dict[str, Any]) -> str:
    lines = [f"T = {_label(setting['T'])}, α = {_label(setting['alpha'])}"]
    if setting.get("method"):
        lines.append(f"method: {setting['method']}")
    if setting.get("valid_mean") is None:
        lines.append("no validation accuracy yet")
    else:
        spread = f" ± {100 * setting['valid_std']:.2f} (std over seeds)" if setting.get("valid_std") is not None \
            else " (one seed)"
        lines.append(f"validation accuracy: {_percent(setting['valid_mean'])}{spread}")
        if setting.get("measured", 0) > 1:
            lines.append(f"range: {_percent(setting['valid_min'])} .. {_percent(setting['valid_max'])}")
    if setting.get("test_mean") is not None:
        lines.append(f"test accuracy: {_percent(setting['test_mean'])}")
    lines.append(f"seeds measured: {setting.get('measured', 0)} of {setting.get('seeds', 0)}")
    return "<br>".join(lines)


def sweep_heatmap(settings: Sequence[dict[str, Any]], best: dict[str, Any] | None = None, *,
                  title: str = TITLE) -> go.Figure:
    """Heatmap of mean validation accuracy, alpha across and T up; each cell's text gives the mean and the spread
    over seeds (sample std, in points), hover adds the range and test accuracy. ``best`` (a setting of
    ``settings``) is marked with a star. Settings of one method only: a sweep over methods draws one per method."""
    if not settings:
        return empty_figure(title)
    alphas = sorted({s["alpha"] for s in settings})
    temperatures = sorted({s["T"] for s in settings})
    at = {(s["T"], s["alpha"]): s for s in settings}
    z: list[list[float | None]] = []
    text: list[list[str]] = []
    hover: list[list[str]] = []
    for temperature in temperatures:
        row = [at.get((temperature, alpha)) for alpha in alphas]
        z.append([s["valid_mean"] if s else None for s in row])
        text.append([cell_text(s) if s else "" for s in row])
        hover.append([_hover(s) if s else "not in this sweep" for s in row])
    x = [_label(a) for a in alphas]
    y = [_label(t) for t in temperatures]
    fig = go.Figure(go.Heatmap(
        x=x, y=y, z=z, text=text, texttemplate="%{text}", customdata=hover,
        hovertemplate="%{customdata}<extra></extra>", colorscale="Viridis", hoverongaps=True,
        colorbar={"title": "validation<br>accuracy", "tickformat": ".0%"},
        name="validation accuracy (mean over seeds)", xgap=2, ygap=2))
    if best is not None and (best["T"], best["alpha"]) in at:
        fig.add_trace(go.Scatter(
            x=[_label(best["alpha"])], y=[_label(best["T"])], mode="markers+text", name=BEST_NAME,
            text=["best"], textposition="top center", textfont={"color": "white", "size": 13},
            marker={"symbol": "star", "size": 22, "color": "gold", "line": {"color": "black", "width": 1.5}},
            hovertext=[f"best setting: {_hover(best)}"], hoverinfo="text"))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=X_TITLE, yaxis_title=Y_TITLE,
                      margin={"l": 70, "r": 20, "t": 80, "b": 60}, showlegend=best is not None,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0})
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig

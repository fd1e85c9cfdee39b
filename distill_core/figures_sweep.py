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
BEST_LABEL = "★ best"
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


def mark_best(fig: go.Figure, column: int, row: int, best: dict[str, Any]) -> None:
    """A gold outline around the best cell and a label on its top edge, not a marker on its centre: the cell's
    own mean and spread stay readable. Category axes place shapes and annotations by category index."""
    fig.add_shape(type="rect", xref="x", yref="y", x0=column - 0.5, x1=column + 0.5, y0=row - 0.5, y1=row + 0.5,
                  line={"color": "gold", "width": 4})
    fig.add_annotation(x=column, y=row + 0.5, xref="x", yref="y", text=BEST_LABEL, showarrow=False, yshift=-10,
                       font={"color": "black", "size": 12}, bgcolor="gold", borderpad=2,
                       hovertext=f"best setting: {_hover(best)}")


def sweep_heatmap(settings: Sequence[dict[str, Any]], best: dict[str, Any] | None = None, *,
                  title: str = TITLE) -> go.Figure:
    """Heatmap of mean validation accuracy, alpha across and T up; each cell's text gives the mean and the spread
    over seeds (sample std, in points), hover adds the range and test accuracy. ``best`` (a setting of
    ``settings``) is outlined and labelled. Settings of one method only: a sweep over methods draws one per method."""
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
    values = [v for row_values in z for v in row_values if v is not None]
    # Equal accuracies everywhere would get a colour scale around them reaching below 0% and above 100%.
    flat = bool(values) and max(values) == min(values)
    fig = go.Figure(go.Heatmap(
        zmin=max(0.0, values[0] - 0.01) if flat else None, zmax=min(1.0, values[0] + 0.01) if flat else None,
        x=x, y=y, z=z, text=text, texttemplate="%{text}", customdata=hover,
        hovertemplate="%{customdata}<extra></extra>", colorscale="Viridis", hoverongaps=True,
        colorbar={"title": "validation<br>accuracy", "tickformat": ".0%"},
        name="validation accuracy (mean over seeds)", xgap=2, ygap=2))
    if best is not None and (best["T"], best["alpha"]) in at:
        mark_best(fig, alphas.index(best["alpha"]), temperatures.index(best["T"]), best)
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=X_TITLE, yaxis_title=Y_TITLE,
                      margin={"l": 70, "r": 20, "t": 80, "b": 60}, showlegend=False)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig

"""distill_core.app.reports and app.playground: exports and the Playground's helpers."""
from __future__ import annotations

import plotly.graph_objects as go
import pytest

from distill_core.app import playground, reports


def test_html_report_is_self_contained_and_escapes_cells():
    page = reports.html_report("Bench <1>", [go.Figure(go.Bar(x=[1], y=[2])), go.Figure()],
                               [{"model": "<script>", "latency_ms_p50": 1.23456}])
    assert page.count("plotly.js v") == 1 and '<script src="http' not in page  # plotly.js inlined, once
    assert "&lt;script&gt;" in page and "1.235" in page and "Bench &lt;1&gt;" in page


def test_rows_to_csv_has_a_header_of_all_keys():
    assert reports.rows_to_csv([{"a": 1}, {"a": 2, "b": 3}]).splitlines() == ["a,b", "1,", "2,3"]


def test_sample_texts_cover_every_class(data_root):
    samples = playground.sample_texts(str(data_root / "tiny"), n=4)
    assert len(samples) == 4 and len(set(samples)) == 4


def test_softened_distribution_flattens_with_temperature():
    sharp, soft = playground.softened([4.0, 0.0, -1.0], 1.0), playground.softened([4.0, 0.0, -1.0], 4.0)
    assert sum(soft) == pytest.approx(1.0) and max(soft) < max(sharp) and soft.index(max(soft)) == 0

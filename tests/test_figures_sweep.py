"""The sweep heatmap (figures_sweep): cells in grid order with mean and spread, a missing setting left empty, and
the best setting outlined and labelled beside its number rather than over it."""
from __future__ import annotations

from distill_core.figures_sweep import BEST_LABEL, cell_text, sweep_heatmap


def setting(temperature, alpha, mean, std=None, seeds=1):
    return {"method": "logits", "T": temperature, "alpha": alpha, "seeds": seeds, "measured": seeds,
            "valid_mean": mean, "valid_std": std, "valid_min": mean, "valid_max": mean, "test_mean": mean,
            "test_std": std, "runs": [f"g-T{temperature}-a{alpha}"], "states": ["done"] * seeds, "finished": True}


def test_cells_sit_in_grid_order_with_mean_and_spread_and_a_gap_where_a_setting_is_missing():
    settings = [setting(2.0, 0.5, 0.90, 0.004, seeds=3), setting(1.0, 0.1, 0.88), setting(2.0, 0.1, 0.91)]
    heatmap = sweep_heatmap(settings).data[0]
    assert list(heatmap.x) == ["0.1", "0.5"] and list(heatmap.y) == ["1", "2"]
    assert [list(row) for row in heatmap.z] == [[0.88, None], [0.91, 0.90]]
    assert heatmap.text[1][1] == cell_text(settings[0]) and "± 0.4" in heatmap.text[1][1]
    assert heatmap.text[0][1] == ""


def test_the_best_cell_is_outlined_with_a_label_on_its_top_edge_not_over_its_number():
    settings = [setting(1.0, 0.1, 0.88), setting(1.0, 0.5, 0.89), setting(4.0, 0.1, 0.93), setting(4.0, 0.5, 0.90)]
    fig = sweep_heatmap(settings, best=settings[2])
    (outline,) = fig.layout.shapes
    assert (outline.x0, outline.x1, outline.y0, outline.y1) == (-0.5, 0.5, 0.5, 1.5)  # alpha 0.1, T 4
    (label,) = fig.layout.annotations
    assert label.text == BEST_LABEL and (label.x, label.y) == (0, 1.5) and label.yshift < 0
    assert len(fig.data) == 1, "no marker trace drawn over the cell's text"
    assert not sweep_heatmap(settings).layout.shapes  # no best given: nothing marked


def test_equal_accuracies_keep_the_colour_scale_within_0_and_100_percent():
    heatmap = sweep_heatmap([setting(1.0, 0.5, 0.25), setting(4.0, 0.5, 0.25)]).data[0]
    assert 0 <= heatmap.zmin < 0.25 < heatmap.zmax <= 1

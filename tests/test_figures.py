"""Plotly figure builders (distill_core.figures, distill_core.figures_speed)."""
from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio
import pytest

from distill_core.errors import UserError
from distill_core.figures import (
    NO_DATA_TEXT,
    accuracy_curves,
    confusion_heatmap,
    figure_table,
    figure_title,
    loss_curves,
    overlay_curves,
    per_class_f1,
    probability_bars,
)
from distill_core.figures_speed import (
    latency_chart,
    pareto_frontier,
    speed_accuracy_scatter,
    speedup_bars,
    throughput_chart,
)

DISTILL_STEPS = [
    {"kind": "step", "step": step, "epoch": 0, "loss": 1.0 / step, "ce_loss": 1.2 / step, "kd_loss": 0.8 / step}
    for step in range(1, 6)
]
FINETUNE_STEPS = [{"step": s, "loss": 1.0 / s, "ce_loss": 1.0 / s, "kd_loss": None} for s in range(1, 4)]
EPOCHS = [
    {"kind": "epoch", "epoch": 1, "training_accuracy": 0.70, "valid_accuracy": 0.72},
    {"kind": "epoch", "epoch": 2, "training_accuracy": 0.80, "valid_accuracy": 0.79},
    {"kind": "epoch", "epoch": 3, "training_accuracy": 0.85, "valid_accuracy": 0.81},
]


def _bench_row(model, precision, batch_size, seq_len, p50, p95, samples_per_s):
    return {
        "model": model,
        "precision": precision,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "latency_ms_p50": p50,
        "latency_ms_p95": p95,
        "samples_per_s": samples_per_s,
    }


BENCH = [
    _bench_row("teacher", "fp32", 1, 128, 20.0, 25.0, 50.0),
    _bench_row("teacher", "fp32", 8, 128, 100.0, 120.0, 80.0),
    _bench_row("student", "fp32", 1, 128, 5.0, 6.0, 200.0),
    _bench_row("student", "fp32", 8, 128, 20.0, 22.0, 400.0),
    _bench_row("student", "int8", 1, 128, 3.0, 4.0, 333.0),
    _bench_row("student", "int8", 8, 128, 12.0, 15.0, 666.0),
]


def _annotation_texts(fig: go.Figure) -> list[str]:
    return [annotation.text for annotation in fig.layout.annotations]


def _is_empty_placeholder(fig: go.Figure) -> bool:
    return isinstance(fig, go.Figure) and len(fig.data) == 0 and NO_DATA_TEXT in _annotation_texts(fig)


# ---- curves ------------------------------------------------------------------------------------------


def test_loss_curves_draw_total_ce_and_kd():
    fig = loss_curves(DISTILL_STEPS)
    assert [trace.name for trace in fig.data] == ["total", "CE (gold labels)", "KD (teacher)"]
    assert all(len(trace.x) == 5 for trace in fig.data)
    assert "nats" in fig.layout.yaxis.title.text and fig.layout.xaxis.title.text


def test_a_finetune_run_draws_its_loss_once_not_total_hidden_under_ce():
    fig = loss_curves(FINETUNE_STEPS)
    assert [trace.name for trace in fig.data] == ["total = CE (gold labels)"]


def test_alpha_one_draws_total_and_ce_as_one_line_and_says_kd_is_not_trained_on():
    # alpha = 1 with a teacher: the KD term is logged but weighs 0, so total == CE at every step.
    steps = [{**row, "loss": row["ce_loss"]} for row in DISTILL_STEPS]
    fig = loss_curves(steps)
    assert [trace.name for trace in fig.data] == ["total = CE (gold labels)", "KD (teacher, weight 0)"]


def test_alpha_zero_draws_total_and_kd_as_one_line():
    steps = [{**row, "loss": row["kd_loss"]} for row in DISTILL_STEPS]
    assert [trace.name for trace in loss_curves(steps).data] == ["total = KD (teacher)", "CE (gold labels, weight 0)"]


def test_loss_curves_draw_validation_loss_at_the_step_each_epoch_ended():
    epochs = [{"kind": "epoch", "epoch": 1, "step": 3, "valid_loss": 0.9},
              {"kind": "epoch", "epoch": 2, "step": 5, "valid_loss": 0.7, "partial": True}]
    fig = loss_curves(DISTILL_STEPS, epochs)
    validation = fig.data[-1]
    assert validation.name == "validation CE (per epoch)"
    assert list(validation.x) == [3, 5] and list(validation.y) == [0.9, 0.7]
    assert list(validation.customdata) == ["1", "2 (partial)"]
    assert [trace.name for trace in fig.data[:-1]] == ["total", "CE (gold labels)", "KD (teacher)"]


def test_validation_loss_without_a_step_is_placed_at_the_last_step_of_its_epoch():
    steps = [{"kind": "step", "step": s, "epoch": s / 4, "loss": 1.0, "ce_loss": 0.9, "kd_loss": 1.1}
             for s in range(1, 9)]  # 4 steps per epoch
    fig = loss_curves(steps, [{"kind": "epoch", "epoch": 1, "valid_loss": 0.8},
                              {"kind": "epoch", "epoch": 2, "valid_loss": 0.6}])
    assert list(fig.data[-1].x) == [4, 8]


def test_loss_curves_take_the_whole_metrics_file_as_epoch_rows():
    epochs = [{"kind": "epoch", "epoch": 1, "step": 5, "valid_loss": 0.5}]
    assert list(loss_curves(DISTILL_STEPS, DISTILL_STEPS + epochs).data[-1].y) == [0.5]
    assert list(loss_curves(DISTILL_STEPS + epochs).data[-1].y) == [0.5]  # the old call: one mixed list


def test_validation_loss_alone_is_drawn_before_any_step_row():
    fig = loss_curves([], [{"kind": "epoch", "epoch": 1, "step": 10, "valid_loss": 0.4}])
    assert [trace.name for trace in fig.data] == ["validation CE (per epoch)"]
    assert fig.layout.title.text and fig.layout.xaxis.title.text == "optimiser step"


def test_loss_curves_ignore_epoch_rows_from_the_metrics_file():
    fig = loss_curves(DISTILL_STEPS + EPOCHS)
    assert all(len(trace.x) == 5 for trace in fig.data)


def test_accuracy_curves_draw_training_and_validation():
    fig = accuracy_curves(EPOCHS + DISTILL_STEPS)
    assert [trace.name for trace in fig.data] == ["training", "validation"]
    assert list(fig.data[1].y) == [0.72, 0.79, 0.81]
    assert fig.layout.yaxis.tickformat == ".0%"


@pytest.mark.parametrize("build", [
    pytest.param(lambda rows: accuracy_curves(rows), id="accuracy"),
    pytest.param(lambda rows: overlay_curves({"a": rows, "b": rows[:1]}), id="overlay"),
])
@pytest.mark.parametrize("epochs", [1, 2, 3, 40])
def test_per_epoch_charts_tick_whole_epochs_only(build, epochs):
    rows = [{"kind": "epoch", "epoch": e, "training_accuracy": 0.5, "valid_accuracy": 0.6}
            for e in range(1, epochs + 1)]
    axis = build(rows).layout.xaxis
    assert axis.tickmode == "linear" and axis.tickformat == "d"
    assert float(axis.dtick).is_integer() and float(axis.tick0).is_integer()
    assert axis.dtick == (1 if epochs <= 12 else 4)  # at most about a dozen ticks


def test_overlay_curves_draw_one_line_per_run_with_data():
    runs = {"T=1": EPOCHS, "T=4": EPOCHS[:2], "queued": []}
    fig = overlay_curves(runs, metric="valid_accuracy")
    assert [trace.name for trace in fig.data] == ["T=1", "T=4"]
    assert [len(trace.x) for trace in fig.data] == [3, 2]


# ---- classification results --------------------------------------------------------------------------


def test_confusion_heatmap_is_row_normalised_and_annotated_with_counts():
    matrix = [[8, 2, 0], [1, 3, 0], [0, 0, 0]]
    fig = confusion_heatmap(matrix, ["a", "b", "c"], "Student")
    heatmap = fig.data[0]
    assert len(fig.data) == 1 and heatmap.type == "heatmap"
    assert [list(row) for row in heatmap.z] == [[0.8, 0.2, 0.0], [0.25, 0.75, 0.0], [0.0, 0.0, 0.0]]
    assert [list(row) for row in heatmap.text] == matrix
    assert fig.layout.title.text == "Student"


def test_confusion_heatmap_can_show_raw_counts():
    fig = confusion_heatmap([[1, 2], [3, 4]], ["a", "b"], "Counts", normalize=False)
    assert [list(row) for row in fig.data[0].z] == [[1, 2], [3, 4]]


def test_confusion_heatmap_rejects_mismatched_label_names():
    with pytest.raises(UserError, match="label names"):
        confusion_heatmap([[1, 2], [3, 4]], ["a", "b", "c"], "bad")


def test_per_class_f1_draws_one_bar_group_per_model():
    per_model = {
        "teacher": {"a": {"f1": 0.9}, "b": {"f1": 0.8}, "c": {"f1": 0.7}},
        "student": {"a": {"f1": 0.85}, "b": {"f1": 0.75}, "c": {"f1": 0.6}},
    }
    fig = per_class_f1(per_model)
    assert [trace.name for trace in fig.data] == ["teacher", "student"]
    assert list(fig.data[1].x) == ["a", "b", "c"] and list(fig.data[1].y) == [0.85, 0.75, 0.6]
    assert fig.layout.barmode == "group"


def test_probability_bars_draw_one_horizontal_trace_per_model():
    fig = probability_bars({"teacher": [0.7, 0.2, 0.1], "student": [0.5, 0.3, 0.2]}, ["a", "b", "c"])
    assert len(fig.data) == 2
    assert all(trace.orientation == "h" and len(trace.x) == 3 for trace in fig.data)


def test_probability_bars_reject_wrong_length():
    with pytest.raises(UserError, match="student"):
        probability_bars({"student": [0.5, 0.5]}, ["a", "b", "c"])


# ---- benchmarks --------------------------------------------------------------------------------------


def test_latency_chart_has_one_line_per_model_and_precision_with_p95_error_bars():
    fig = latency_chart(BENCH)
    assert len(fig.data) == 3
    student_int8 = next(trace for trace in fig.data if trace.name.startswith("student · int8"))
    assert list(student_int8.x) == [1, 8] and list(student_int8.y) == [3.0, 12.0]
    assert list(student_int8.error_y.array) == [1.0, 3.0]
    assert list(student_int8.error_y.arrayminus) == [0.0, 0.0]
    assert "ms" in fig.layout.yaxis.title.text


def test_latency_chart_without_p95_draws_no_error_bar():
    rows = [{**BENCH[0], "latency_ms_p95": None},
            {key: value for key, value in BENCH[1].items() if key != "latency_ms_p95"}]
    fig = latency_chart(rows)
    assert list(fig.data[0].error_y.array) == [0.0, 0.0]


def test_latency_chart_by_sequence_length_splits_series_by_batch_size():
    fig = latency_chart(BENCH, x="seq_len")
    assert len(fig.data) == 6  # 3 model/precision pairs x 2 batch sizes, one length each
    assert "tokens" in fig.layout.xaxis.title.text


def test_latency_chart_rejects_unknown_axis():
    with pytest.raises(UserError, match="threads"):
        latency_chart(BENCH, x="threads")


def test_throughput_chart_draws_samples_per_second():
    fig = throughput_chart(BENCH)
    assert len(fig.data) == 3
    assert sum(len(trace.y) for trace in fig.data) == len(BENCH)
    assert "samples/s" in fig.layout.yaxis.title.text


def test_speedup_bars_compare_at_equal_batch_length_and_precision():
    fig = speedup_bars(BENCH + [_bench_row("teacher", "int8", 1, 128, 10.0, 11.0, 111.0)], "teacher")
    by_name = {trace.name: trace for trace in fig.data}
    assert set(by_name) == {"student · fp32", "student · int8"}
    assert list(by_name["student · fp32"].y) == pytest.approx([4.0, 5.0])
    # int8 is compared with the int8 teacher at batch 1 only; batch 8 has no int8 teacher row.
    assert list(by_name["student · int8"].y) == pytest.approx([3.0, None])


def test_speedup_bars_without_baseline_rows_say_so():
    fig = speedup_bars(BENCH, "absent-model")
    assert len(fig.data) == 0
    assert any("absent-model" in text for text in _annotation_texts(fig))


# ---- speed vs accuracy -------------------------------------------------------------------------------

POINTS = [
    {"name": "teacher", "samples_per_s": 50.0, "accuracy": 0.95, "size_mb": 420.0},
    {"name": "student", "samples_per_s": 400.0, "accuracy": 0.91, "size_mb": 50.0},
    {"name": "student-int8", "samples_per_s": 700.0, "accuracy": 0.90, "size_mb": 20.0},
    {"name": "dominated", "samples_per_s": 300.0, "accuracy": 0.89, "size_mb": 60.0},
    {"name": "tie-of-student", "samples_per_s": 400.0, "accuracy": 0.91, "size_mb": 55.0},
    {"name": "same-speed-worse", "samples_per_s": 700.0, "accuracy": 0.85, "size_mb": 20.0},
    {"name": "unmeasured", "samples_per_s": None, "accuracy": 0.99},
]


def test_pareto_frontier_keeps_ties_and_drops_dominated_points():
    frontier = pareto_frontier(POINTS)
    assert [point["name"] for point in frontier] == ["teacher", "student", "tie-of-student", "student-int8"]


@pytest.mark.parametrize(
    ("points", "expected_names"),
    [
        ([], []),
        ([{"name": "only", "samples_per_s": 1.0, "accuracy": 0.5}], ["only"]),
        (
            [
                {"name": "best", "samples_per_s": 10.0, "accuracy": 0.9},
                {"name": "worse-both", "samples_per_s": 5.0, "accuracy": 0.8},
                {"name": "equal-x-worse-y", "samples_per_s": 10.0, "accuracy": 0.7},
            ],
            ["best"],
        ),
    ],
    ids=["empty", "single", "one-dominates-all"],
)
def test_pareto_frontier_small_cases(points, expected_names):
    assert [point["name"] for point in pareto_frontier(points)] == expected_names


def test_pareto_frontier_uses_the_named_axes():
    points = [{"name": "a", "latency": 1, "f1": 0.2}, {"name": "b", "latency": 2, "f1": 0.1}]
    assert [p["name"] for p in pareto_frontier(points, x="latency", y="f1")] == ["a", "b"]


def test_speed_accuracy_scatter_draws_points_and_staircase_frontier():
    fig = speed_accuracy_scatter(POINTS)
    markers, frontier = fig.data
    assert len(markers.x) == 6  # the unmeasured point is left out
    assert list(markers.marker.size) == [420.0, 50.0, 20.0, 60.0, 55.0, 20.0]
    assert len(frontier.x) == 4 and frontier.line.shape == "vh"


def test_speed_accuracy_scatter_uses_fixed_marker_size_without_sizes():
    fig = speed_accuracy_scatter([{"name": "a", "samples_per_s": 1.0, "accuracy": 0.5}])
    assert fig.data[0].marker.size == 14


# ---- empty inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: loss_curves([]),
        lambda: accuracy_curves([]),
        lambda: accuracy_curves(DISTILL_STEPS),
        lambda: overlay_curves({}),
        lambda: overlay_curves({"run": []}),
        lambda: confusion_heatmap([], [], "empty"),
        lambda: per_class_f1({}),
        lambda: latency_chart([]),
        lambda: throughput_chart([]),
        lambda: speed_accuracy_scatter([]),
        lambda: probability_bars({}, ["a"]),
        lambda: speedup_bars([], "teacher"),
    ],
    ids=[
        "loss",
        "accuracy",
        "accuracy-only-steps",
        "overlay",
        "overlay-empty-run",
        "confusion",
        "per-class-f1",
        "latency",
        "throughput",
        "scatter",
        "probabilities",
        "speedup",
    ],
)
def test_empty_inputs_give_a_no_data_figure(build):
    assert _is_empty_placeholder(build())


@pytest.mark.parametrize(
    "fig",
    [
        pytest.param(lambda: loss_curves(DISTILL_STEPS), id="loss"),
        pytest.param(lambda: latency_chart(BENCH), id="latency"),
        pytest.param(lambda: speed_accuracy_scatter(POINTS), id="scatter"),
        pytest.param(lambda: loss_curves(FINETUNE_STEPS), id="loss-finetune"),
        pytest.param(lambda: accuracy_curves(EPOCHS), id="accuracy"),
        pytest.param(lambda: overlay_curves({"a": EPOCHS}, "valid_accuracy"), id="overlay"),
        pytest.param(lambda: confusion_heatmap([[1, 0], [0, 1]], ["a", "b"], "Confusion"), id="confusion"),
        pytest.param(lambda: per_class_f1({"m": {"a": {"f1": 0.5}}}), id="per-class-f1"),
        pytest.param(lambda: probability_bars({"m": [0.2, 0.8]}, ["a", "b"]), id="probabilities"),
        pytest.param(lambda: throughput_chart(BENCH), id="throughput"),
        pytest.param(lambda: speedup_bars(BENCH, "teacher"), id="speedup"),
    ],
)
def test_figures_share_the_clean_template_and_have_titles(fig):
    built = fig()
    assert built.layout.template == pio.templates["plotly_white"]
    assert built.layout.title.text
    assert built.layout.xaxis.title.text and built.layout.yaxis.title.text


# ---- text alternative --------------------------------------------------------------------------------


def test_figure_title_is_plain_text_for_an_accessible_name():
    fig = accuracy_curves(EPOCHS)
    fig.update_layout(title="<b>Accuracy</b><br>per epoch")
    assert figure_title(fig) == "Accuracy per epoch"
    assert figure_title(go.Figure(), default="chart key") == "chart key"


def test_figure_table_lists_every_point_by_series_with_percent_axes_in_percent():
    table = figure_table(accuracy_curves(EPOCHS))
    assert len(table) == 6
    assert table[0] == {"series": "training", "epoch": 1, "accuracy (%)": 70.0}
    assert table[-1] == {"series": "validation", "epoch": 3, "accuracy (%)": 81.0}


def test_figure_table_of_a_confusion_matrix_holds_the_counts():
    table = figure_table(confusion_heatmap([[8, 2], [1, 3]], ["a", "b"], "Confusion"))
    assert table == [{"true class": "a", "predicted class: a": 8, "predicted class: b": 2},
                     {"true class": "b", "predicted class: a": 1, "predicted class: b": 3}]


def test_figure_table_names_scatter_points_and_skips_the_frontier_guide():
    table = figure_table(speed_accuracy_scatter(POINTS))
    assert len(table) == len([p for p in POINTS if p.get("samples_per_s") and p.get("accuracy")])
    assert all(row["series"] == "models" and "point" in row for row in table)


def test_figure_table_of_horizontal_bars_and_of_nothing():
    table = figure_table(probability_bars({"m": [0.25, 0.75]}, ["a", "b"]))
    assert table == [{"series": "m", "probability (%)": 25.0, "class": "a"},
                     {"series": "m", "probability (%)": 75.0, "class": "b"}]
    assert figure_table(loss_curves([])) == []


def test_overlay_titles_say_validation_not_valid():
    fig = overlay_curves({"a": [{"kind": "epoch", "epoch": 1, "valid_loss": 0.5}]}, "valid_loss")
    assert fig.layout.title.text == "Validation loss per epoch, by run"
    assert fig.layout.yaxis.title.text == "validation loss (nats)"


def test_a_run_with_one_logged_step_still_shows_its_loss_and_ticks_whole_steps():
    # max_steps 2, logging every 10: one step row. A lone point drawn as a line would be invisible.
    fig = loss_curves([{"kind": "step", "step": 2, "epoch": 1.0, "loss": 0.7, "ce_loss": 0.7, "kd_loss": None}],
                      [{"kind": "epoch", "epoch": 1, "step": 2, "valid_loss": 1.3}])
    assert all("markers" in trace.mode for trace in fig.data)
    assert fig.layout.xaxis.tickformat == "d" and fig.layout.xaxis.dtick == 1
    assert fig.layout.legend.y < 0  # below the plot: four series above a half-width chart hit its title

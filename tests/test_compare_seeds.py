"""Several seeds of one setting are one result, mean ± std: the grouping (pure), its table cells, its point on
the speed/accuracy chart, and Compare's table over a store holding two seeds of one setting."""
from __future__ import annotations

import math

import pytest
from test_app_pages import app_env, make_finished_run, open_page  # noqa: F401  (app_env: the pages' fixture)

from distill_core import figures_speed, runs, storage
from distill_core.app import compare, seed_groups


def test_mean_std_is_the_sample_standard_deviation():
    mean, std = seed_groups.mean_std([0.80, 0.82, 0.87])
    assert mean == pytest.approx(0.83)
    # deviations -0.03, -0.01, 0.04: squares 9e-4 + 1e-4 + 16e-4 = 26e-4, over n - 1 = 2 -> 13e-4
    assert std == pytest.approx(math.sqrt(13e-4))
    assert seed_groups.mean_std([0.5]) == (0.5, 0.0)
    with pytest.raises(ValueError):
        seed_groups.mean_std([])


def test_setting_key_ignores_only_the_seed_notes_and_provenance():
    base = {"mode": "distill", "temperature": 2.0, "alpha": 0.5, "data": {"source": "d"}, "seed": 1,
            "extra": {"preset": "Custom"}, "provenance": {"created_at": 1.0}}
    other_seed = {**base, "seed": 2, "extra": {"sweep": "g"}, "provenance": {"created_at": 2.0}}
    assert seed_groups.setting_key(base) == seed_groups.setting_key(other_seed)
    assert seed_groups.setting_key(base) != seed_groups.setting_key({**base, "alpha": 0.7})
    assert seed_groups.setting_key(base) != seed_groups.setting_key({**base, "data": {"source": "e"}})


def row(model: str, accuracy: float | None, **extra) -> dict:
    return {"model": model, "role": "student", "spec": "truncate:1", "test_accuracy": accuracy, "ece": 0.05,
            "baseline": "teacher of a", "n_test": 80, **extra}


def test_group_rows_merges_seeds_of_one_setting_at_the_first_ones_place():
    rows = [row("run a", 0.80), row("run other", 0.70), row("run b", 0.84), row("run c", 0.82),
            {"model": "teacher of a", "role": "teacher", "test_accuracy": 0.9}]
    settings = {"run a": ("S", 1), "run b": ("S", 2), "run c": ("S", 3), "run other": ("T", 1)}
    grouped = seed_groups.group_rows(rows, settings)
    assert [r["model"] for r in grouped] == ["runs a, b, c (3 seeds)", "run other", "teacher of a"]
    merged = grouped[0]
    assert merged["test_accuracy"] == pytest.approx(0.82)
    assert merged["test_accuracy_std"] == pytest.approx(0.02)  # deviations -0.02, 0.02, 0: 8e-4 / 2 = 4e-4
    assert merged["ece_std"] == pytest.approx(0.0)
    assert (merged["n_seeds"], merged["seeds"], merged["runs"]) == (3, [1, 2, 3], ["run a", "run b", "run c"])
    assert merged["baseline"] == "teacher of a" and merged["n_test"] == 80
    assert "test_accuracy_std" not in grouped[1]  # a setting of one run stays a plain row


def test_a_baseline_that_was_merged_points_at_the_merged_row():
    rows = [row("run t1", 0.9, role="teacher", baseline=None), row("run t2", 0.92, role="teacher", baseline=None),
            row("run s", 0.8, baseline="run t1")]
    grouped = seed_groups.group_rows(rows, {"run t1": ("T", 1), "run t2": ("T", 2), "run s": ("S", 1)})
    assert grouped[1]["baseline"] == "runs t1, t2 (2 seeds)"


def test_display_table_shows_mean_plus_minus_std():
    grouped = seed_groups.group_rows([row("run a", 0.75), row("run b", 0.80)], {"run a": ("S", 1), "run b": ("S", 2)})
    cells = compare.display_table(grouped, {"model": "text", "test_accuracy": "percent", "ece": "three_decimals"})
    # mean 0.775; sample std of (0.75, 0.80) = 0.05 / sqrt(2) = 0.0354
    assert cells == [{"model": "runs a, b (2 seeds)", "test_accuracy": "77.5 ± 3.5%", "ece": "0.050 ± 0.000"}]


def test_a_group_is_one_point_with_error_bars_on_the_speed_accuracy_chart():
    grouped = seed_groups.group_rows(
        [row("run a", 0.75, samples_per_s_b1=100.0), row("run b", 0.80, samples_per_s_b1=110.0),
         row("run c", 0.70, samples_per_s_b1=300.0)], {"run a": ("S", 1), "run b": ("S", 2), "run c": ("T", 1)})
    points, batch = compare.speed_accuracy_points(grouped)
    assert batch == 1 and len(points) == 2
    fig = figures_speed.speed_accuracy_scatter(points)
    models = next(trace for trace in fig.data if trace.name == "models")
    assert list(models.x) == pytest.approx([105.0, 300.0])
    assert list(models.error_y.array) == pytest.approx([0.05 / math.sqrt(2), 0.0])
    assert list(models.error_x.array) == pytest.approx([10 / math.sqrt(2), 0.0])


def seeded_run(env, name: str, seed: int, accuracy: float) -> None:
    run_dir = make_finished_run(env, name)
    config = storage.read_json(run_dir / runs.CONFIG_FILE)
    storage.write_json_atomic(run_dir / runs.CONFIG_FILE, {**config, "seed": seed})
    evaluation = storage.read_json(runs.eval_path(run_dir))
    evaluation["student"]["accuracy"] = accuracy
    storage.write_json_atomic(runs.eval_path(run_dir), evaluation)


def test_compare_shows_two_seeds_of_one_setting_as_one_row(app_env):  # noqa: F811  (the imported fixture)
    seeded_run(app_env, "kd-s1", 1, 0.75)
    seeded_run(app_env, "kd-s2", 2, 0.80)
    at = open_page("app_pages/compare.py", query={"runs": "kd-s1,kd-s2"})
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["model"]) == ["runs kd-s1, kd-s2 (2 seeds)", "teacher of kd-s1, kd-s2"]
    assert table["test_accuracy"].tolist() == ["77.5 ± 3.5%", "80.0%"]
    at.toggle(key="c_each_seed").set_value(True).run()
    table = at.dataframe[0].value
    assert list(table["model"]) == ["run kd-s1", "teacher of kd-s1, kd-s2", "run kd-s2"]

"""The Sweeps page and Train's sweep form through Streamlit's AppTest, offline, over a store holding a sweep whose
cells have finished as their workers leave them (config, metrics, eval, status): the heatmap with the best setting,
the open-run click, the empty state, and the form's cell count and its errors (which create nothing)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from distill_core import runs, storage, sweep
from distill_core.config import DataConfig, TrainConfig

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"
TIMEOUT_S = 180
# validation accuracy of each cell: (T, alpha) -> per seed; T=2, alpha=0.5 is best on average
ACCURACY = {(1.0, 0.25): (0.60, 0.62), (1.0, 0.5): (0.70, 0.66), (2.0, 0.25): (0.64, 0.68), (2.0, 0.5): (0.80, 0.76)}


@pytest.fixture
def store(monkeypatch, tmp_path, tiny_data_dir, tiny_teacher_dir):
    root = tmp_path / "runs"
    shutil.copytree(tiny_data_dir, tmp_path / "data" / "tiny")
    monkeypatch.setenv("KD_RUNS_DIR", str(root))
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("KD_EXTRA_MODELS", str(tiny_teacher_dir))
    return root


def tiny_base(tiny_data_dir: Path, tiny_teacher_dir: Path) -> TrainConfig:
    return TrainConfig(mode="distill", data=DataConfig(source=str(tiny_data_dir), max_length=24),
                       student="truncate:1", teacher=str(tiny_teacher_dir), epochs=1)


def finished_group(root: Path, tiny_data_dir: Path, tiny_teacher_dir: Path) -> sweep.Group:
    """A 2 x 2 x 2-seed sweep whose cells ended as a worker leaves them (the tiny teacher stands in for a model)."""
    plan = sweep.SweepConfig(tiny_base(tiny_data_dir, tiny_teacher_dir), (1.0, 2.0), (0.25, 0.5), (1, 2))
    group = sweep.create_group(root, "grid", plan)
    for cell, run_dir in zip(group.cells, group.run_dirs, strict=True):
        accuracy = ACCURACY[(cell["T"], cell["alpha"])][cell["seed"] - 1]
        shutil.copytree(tiny_teacher_dir, run_dir / "model")
        runs.append_metric(run_dir, {"kind": "epoch", "epoch": 1, "training_accuracy": 0.5, "valid_accuracy": accuracy,
                                     "training_loss": 1.0, "valid_loss": 1.0})
        storage.write_json_atomic(runs.eval_path(run_dir), {"split": "test", "student": {"accuracy": accuracy - 0.02}})
        runs.set_status(run_dir, "done")
    return group


def open_sweeps(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    return at.switch_page("app_pages/sweeps.py").run()


def chart_specs(at: AppTest) -> list[str]:
    return [element.proto.spec for element in at.get("plotly_chart")]


def test_sweeps_page_says_how_to_start_one_when_there_is_none(store):
    at = open_sweeps()
    assert not at.exception, at.exception
    assert at.title[0].value == "Sweeps"
    assert any("No sweeps yet" in info.value for info in at.info)


def test_heatmap_best_setting_and_open_run_land_on_the_cell(store, tiny_data_dir, tiny_teacher_dir):
    group = finished_group(store, tiny_data_dir, tiny_teacher_dir)
    at = open_sweeps()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "8 of 8 cells done" in "\n".join(m.value for m in at.markdown)
    specs = chart_specs(at)
    assert len(specs) == 1 and "Validation accuracy over temperature T and" in specs[0] and "best setting" in specs[0]
    best = "\n".join(s.value for s in at.success)
    assert "T = 2, α = 0.5" in best and "78.0% ± 2.8 over 2 seeds" in best and "run grid-T2-a0.5-s1" in best
    picker = at.selectbox(key="s_cell_grid")
    assert picker.value == "grid-T2-a0.5-s1" and len(picker.options) == len(group.cells)  # the best first

    picker.set_value("grid-T1-a0.25-s2").run()
    at.button(key="s_open").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Train"
    assert at.query_params["run"] == "grid-T1-a0.25-s2"


def panel_script() -> None:
    import os

    from app_pages.sweep_panel import sweep_section
    from distill_core.config import DataConfig, TrainConfig

    base = TrainConfig(mode="distill", data=DataConfig(source=os.environ["SWEEP_DATA"], max_length=24),
                       student="truncate:1", teacher=os.environ["SWEEP_TEACHER"], epochs=1)
    sweep_section(base, [])


def test_sweep_form_counts_cells_and_names_bad_values_in_its_labels(store, monkeypatch, tiny_data_dir,
                                                                      tiny_teacher_dir):
    monkeypatch.setenv("SWEEP_DATA", str(tiny_data_dir))
    monkeypatch.setenv("SWEEP_TEACHER", str(tiny_teacher_dir))
    at = AppTest.from_function(panel_script, default_timeout=TIMEOUT_S).run()
    assert not at.exception, at.exception
    assert any("**9 cells**" in info.value and "estimated" in info.value for info in at.info)

    at.text_input(key="sw_alphas").set_value("0.5, 1.5, x").run()
    at.button(key="sw_start").click().run()
    errors = "\n".join(e.value for e in at.error)
    assert "α values: 'x' is not a number" in errors
    at.text_input(key="sw_alphas").set_value("0.5, 1.5").run()
    at.button(key="sw_start").click().run()
    assert "α values must be within [0, 1]" in "\n".join(e.value for e in at.error)
    assert not store.exists() or not any(store.iterdir())  # nothing created

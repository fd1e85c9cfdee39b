"""The stakeholder report (distill_core/report.py, CLI `report`, Compare's report section and ?runs= link) on
real tiny finished runs: a fine-tuned teacher run, a smaller distilled student, both benchmarked for real."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from distill_core import cli, pipeline, report, runs, storage
from distill_core.app import compare, reports
from distill_core.config import DataConfig, TrainConfig
from tests.conftest import LABEL_NAMES

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"
CONFUSION = [[15, 2, 2, 1], [1, 17, 1, 1], [3, 1, 14, 2], [2, 1, 3, 14]]


def _metrics(accuracy: float) -> dict:
    return {"accuracy": accuracy, "macro_f1": accuracy - 0.01, "ece": 0.05, "n_examples": 80,
            "label_names": LABEL_NAMES, "confusion_matrix": CONFUSION,
            "per_class": {n: {"precision": 0.7, "recall": 0.7, "f1": 0.7, "support": 20} for n in LABEL_NAMES}}


def _finish(root: Path, name: str, config: TrainConfig, model: Path, evaluation: dict) -> Path:
    run_dir = runs.create_run(root, name, pipeline.run_record(config))
    shutil.copytree(model, run_dir / "model")
    runs.append_metric(run_dir, {"kind": "epoch", "epoch": 1, "valid_accuracy": 0.7, "training_accuracy": 0.7})
    storage.write_json_atomic(runs.eval_path(run_dir), {"split": "test", "label_names": LABEL_NAMES, **evaluation})
    runs.set_status(run_dir, "done")
    return run_dir


def _small_student(folder: Path, teacher: Path) -> Path:
    """A 1-layer, 32-wide BERT classifier with the teacher's vocabulary (stands in for a trained student)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from distill_core.models import label_maps

    torch.manual_seed(1)
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512,
                        architectures=["BertForSequenceClassification"], **label_maps(LABEL_NAMES))
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_teacher_dir, tiny_data_dir, one_torch_thread):
    """runs/teacher (fine-tuned), runs/student (distilled from it, smaller), both benchmarked at batch 1 and 32
    through the Benchmark page's functions; runs/unmeasured (a second student, never benchmarked)."""
    from distill_core.inference import benchmark_specs

    root = tmp_path_factory.mktemp("report-store")
    data = DataConfig(source=str(tiny_data_dir))
    teacher = _finish(root, "teacher", TrainConfig(mode="finetune", data=data, student=str(tiny_teacher_dir)),
                      tiny_teacher_dir, {"student": {**_metrics(0.8), "spec": str(tiny_teacher_dir)}})
    small = _small_student(tmp_path_factory.mktemp("small-student"), tiny_teacher_dir)
    distill = TrainConfig(mode="distill", data=data, student="truncate:1", teacher=str(teacher))
    evaluation = {"student": {**_metrics(0.75), "agreement": 0.85, "spec": "truncate:1"},
                  "teacher": {**_metrics(0.8), "spec": str(teacher)}}
    student = _finish(root, "student", distill, small, evaluation)
    _finish(root, "unmeasured", distill, small, evaluation)
    specs = [str(teacher), str(student)]
    rows = benchmark_specs(specs, batch_sizes=[1, 32], seq_lens=[16], precisions=["fp32"], warmup=1, repeats=3)
    reports.save_bench_rows(rows, {str(teacher): teacher, str(student): student})
    return root


def _numbers(sentence: str) -> list[float]:
    return [float(x) for x in re.findall(r"(\d+(?:\.\d+)?)[×%]", sentence)]


def _said(ratio: float) -> float:
    """A speed or size ratio as the headline says it: 0.8× reads "1.2× slower", never "0.8× faster"."""
    return ratio if ratio >= 1 else 1 / ratio


def _cell(text: str) -> float:
    """A number from a Compare table cell ("1.3×", "75.0%")."""
    return float(text.rstrip("×%"))


# ---------------------------------------------------------------------------------------- pure functions

@pytest.mark.parametrize(("successes", "n", "low", "high"), [
    (81, 263, 0.2553, 0.3662),    # Wilson (1927) as in Newcombe (1998), example of 81/263
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (50, 100, 0.4038, 0.5962),
    (1, 1, 0.2065, 1.0),
])
def test_wilson_interval_matches_known_values(successes, n, low, high):
    assert report.wilson_interval(successes, n) == pytest.approx((low, high), abs=1e-4)


@pytest.mark.parametrize(("successes", "n"), [(1, 0), (-1, 5), (6, 5)])
def test_wilson_interval_refuses_impossible_counts(successes, n):
    with pytest.raises(ValueError):
        report.wilson_interval(successes, n)


def test_cost_per_million_predictions():
    # 0.36 USD/h = 0.0001 USD/s; at 100 samples/s a million predictions take 10,000 s = 1 USD.
    assert report.cost_per_million(100.0, 0.36) == pytest.approx(1.0)
    assert report.cost_per_million(1000.0, 0.10) == pytest.approx(0.10 / 3600 / 1000 * 1e6)
    assert report.cost_per_million(None, 0.10) is None and report.cost_per_million(0.0, 0.10) is None


def test_headline_says_what_was_not_measured():
    sentence = compare.headline({"speedup_b1": None, "speedup_b32": None, "smaller": 2.04, "accuracy_kept": 0.9375})
    assert sentence == ("The student is 2.0× smaller and keeps 93.8% of the teacher's accuracy (speed at batch 1 "
                        "and batch 32 not measured: run Benchmark).")


# ---------------------------------------------------------------------------------------- the report

def test_headline_numbers_are_the_comparison_rows_values(store):
    rows = {r["model"]: r for r in compare.comparison_rows(store, ["student"])}
    student, teacher = rows["run student"], rows["run teacher"]  # the teacher is a run of the store
    expected = [_said(teacher["latency_ms_b1"] / student["latency_ms_b1"]),
                _said(teacher["latency_ms_b32"] / student["latency_ms_b32"]),
                _said(teacher["size_mb"] / student["size_mb"]),
                100 * student["test_accuracy"] / teacher["test_accuracy"]]
    data = report.report_data(store, ["student"])
    assert _numbers(data["headlines"][0]) == [round(x, 1) for x in expected]
    assert data["headlines"][0].startswith("The student is ") and "teacher's accuracy" in data["headlines"][0]
    page = report.build_report(store, ["student"])
    assert data["headlines"][0].replace("'", "&#x27;") in page


def test_page_inlines_plotly_once_and_has_every_section(store):
    page = report.build_report(store, ["student", "unmeasured"], price_per_hour=0.25)
    assert page.count("plotly.js v") == 1 and '<script src="http' not in page
    assert page.count("class='chart'") == 2
    for section in ("Gains and losses", "Accuracy", "95% interval", "Speed and cost", "Speed vs accuracy",
                    "Where teacher and student disagree", "Provenance", "@media print", "0.25 USD per hour"):
        assert section in page, section
    # The unbenchmarked student: said, not invented.
    unmeasured = next(h for h in report.report_data(store, ["student", "unmeasured"])["headlines"]
                      if h.startswith("Student unmeasured"))
    assert unmeasured.endswith("keeps 93.8% of the teacher's accuracy (speed at batch 1 and batch 32 not measured: "
                               "run Benchmark).")
    assert unmeasured.replace("'", "&#x27;") in page and "not measured: run Benchmark</span>" in page
    assert len(page.encode()) < 6_000_000


def test_report_rows_carry_interval_and_cost(store):
    data = report.report_data(store, ["student"], price_per_hour=0.5)
    student = next(m for m in data["models"] if m["model"] == "run student")
    assert student["accuracy_interval"] == report.wilson_interval(60, 80)
    assert student["cost_b32"] == pytest.approx(0.5 / 3600 / student["samples_per_s_b32"] * 1e6)
    assert "usable cores" in data["provenance"]["machines"][0]["machine"]  # stamped by save_bench_rows
    assert data["provenance"]["runs"][0]["settings"]["mode"] == "distill"


# ---------------------------------------------------------------------------------------- CLI

def test_cli_writes_the_report_with_disagreement_examples(store, tmp_path, capsys):
    out = tmp_path / "out" / "report.html"
    assert cli.main(["report", "--run", str(store / "teacher"), "--run", str(store / "student"), "--out", str(out),
                     "--price-per-hour", "0.2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bytes"] == out.stat().st_size and result["headlines"]
    page = out.read_text(encoding="utf-8")
    assert "student and teacher disagree on" in page and "0.20 USD per hour" in page
    assert (store / "student" / runs.PREDICTIONS_FILE).is_file()  # computed once, kept in the run


def test_cli_report_of_zero_runs_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "report.html"
    assert cli.main(["report", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: a report needs at least one finished run") and "\n" not in err
    assert not out.exists()


def test_cli_report_of_an_unfinished_run_is_refused(store, tmp_path, capsys):
    runs.create_run(store, "queued-run", {"mode": "distill"})
    out = tmp_path / "report.html"
    assert cli.main(["report", "--run", str(store / "student"), "--run", str(store / "queued-run"),
                     "--out", str(out)]) == 2
    assert "run 'queued-run' has not finished (state: queued)" in capsys.readouterr().err
    assert not out.exists()
    shutil.rmtree(store / "queued-run")


def test_cli_report_refuses_a_missing_folder_and_a_negative_price(store, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert cli.main(["report", "--run", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert cli.main(["report", "--run", str(store / "student"), "--out", str(out), "--price-per-hour", "-1"]) == 2
    assert "CPU price" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------- Compare page

@pytest.fixture
def compare_env(monkeypatch, store, tmp_path):
    monkeypatch.setenv("KD_RUNS_DIR", str(store))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path / "data"))
    return store


def open_compare(query: dict[str, str]) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=180)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception, at.exception
    return at


def test_compare_link_preselects_runs_and_the_report_matches_the_table(compare_env):
    at = open_compare({"runs": "teacher,student"})
    assert at.multiselect(key="c_runs").value == ["teacher", "student"]
    shown = [s.value for s in at.success]
    gains = at.dataframe[1].value  # the gains table, under the summary table
    row = {key: _cell(value) for key, value in gains[gains["model"] == "run student"].iloc[0].items()
           if key not in ("model", "baseline")}
    assert gains["baseline"].tolist() == ["run teacher"]  # the selected teacher run: not listed a second time
    # The table rounds to one decimal; a slower student's headline inverts the unrounded ratio: within 0.1.
    assert _numbers(shown[0]) == pytest.approx([_said(row["speedup_b1"]), _said(row["speedup_b32"]),
                                                _said(row["smaller"]), row["accuracy_kept"]], abs=0.1)
    table = at.dataframe[0].value
    assert table["model"].tolist() == ["run teacher", "run student"]
    accuracy = {model: _cell(cell) for model, cell in zip(table["model"], table["test_accuracy"], strict=True)}
    assert row["accuracy_kept"] == round(100 * accuracy["run student"] / accuracy["run teacher"], 1)
    assert [b for b in at.get("download_button") if b.proto.label == "Download report (HTML)"]
    page = at.session_state["c_report"]["html"]  # what the download button serves
    assert shown[0].replace("'", "&#x27;") in page and page.count("plotly.js v") == 1


def test_compare_link_with_unknown_runs_says_so_and_keeps_the_rest(compare_env):
    at = open_compare({"runs": "student,ghost"})
    assert at.multiselect(key="c_runs").value == ["student"]
    assert any("ghost" in w.value and "not finished runs of this store" in w.value for w in at.warning)


def test_compare_writes_the_selection_into_the_address(compare_env):
    at = open_compare({"runs": "student"})
    at.multiselect(key="c_runs").set_value(["student", "unmeasured"]).run()
    assert at.query_params["runs"] == ["student,unmeasured"] or at.query_params["runs"] == "student,unmeasured"

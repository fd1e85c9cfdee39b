"""Charts and words (issue 10, part 5), through Streamlit's AppTest: Compare lists each model once and never shows
"None" or "nan"; every chart on Compare and Playground has an accessible name and its numbers as a table; a cold
model load in the Playground says what it does. Real run folders (the tiny teacher's weights), no stubs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from distill_core import runs, storage

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"
LABELS = ["World", "Sports", "Business", "Sci/Tech"]
TIMEOUT_S = 180  # first loads import torch/transformers on a busy 2-core machine
NOT_SHOWN = ("None", "nan", "NaN")


def _metrics(accuracy: float) -> dict:
    return {"accuracy": accuracy, "macro_f1": accuracy - 0.01, "ece": 0.05, "n_examples": 80, "label_names": LABELS,
            "confusion_matrix": [[15, 2, 2, 1], [1, 17, 1, 1], [3, 1, 14, 2], [2, 1, 3, 14]],
            "per_class": {n: {"precision": 0.7, "recall": 0.7, "f1": 0.7, "support": 20} for n in LABELS}}


def finished_run(root: Path, name: str, weights: Path, *, teacher: str | None = None, bench_ms: float | None = None,
                 student_metrics: dict | None = None) -> Path:
    """A finished run as the worker leaves it: config, metrics, eval.json (with its teacher's numbers when it
    has one), the model folder, and bench.json when ``bench_ms`` is given."""
    config = {"mode": "distill" if teacher else "finetune", "data": {"source": "tiny"},
              "student": "truncate:1" if teacher else "bundled:minilm-l6", "teacher": teacher, "epochs": 2}
    run_dir = runs.create_run(root, name, config)
    shutil.copytree(weights, run_dir / "model")
    for epoch in (1, 2):
        runs.append_metric(run_dir, {"kind": "step", "step": epoch * 5, "epoch": float(epoch), "loss": 1.0 / epoch,
                                     "ce_loss": 1.0 / epoch, "kd_loss": None, "total_steps": 10})
        runs.append_metric(run_dir, {"kind": "epoch", "epoch": epoch, "step": epoch * 5, "valid_loss": 1.1 / epoch,
                                     "training_accuracy": 0.5 + epoch / 10, "valid_accuracy": 0.6 + epoch / 10})
    evaluation = {"split": "test", "label_names": LABELS,
                  "student": {**_metrics(0.75), "agreement": 0.8 if teacher else None, **(student_metrics or {})}}
    if teacher:
        evaluation["teacher"] = {**_metrics(0.8), "spec": teacher}
    storage.write_json_atomic(runs.eval_path(run_dir), evaluation)
    if bench_ms is not None:
        storage.write_json_atomic(run_dir / runs.BENCH_FILE, [
            {"model": name, "precision": "fp32", "batch_size": b, "seq_len": 16, "latency_ms_p50": bench_ms * b,
             "latency_ms_p95": bench_ms * b * 1.2, "samples_per_s": 1000 / bench_ms} for b in (1, 32)])
    runs.set_status(run_dir, "done")
    return run_dir


@pytest.fixture
def store(monkeypatch, tmp_path, tiny_teacher_dir):
    """runs/teach (fine-tuned), kd-a and kd-b distilled from it (its folder spelled two ways), kd-ext distilled
    from a teacher outside the store, and plain (fine-tuned, no macro-F1 recorded, never benchmarked)."""
    root = tmp_path / "runs"
    monkeypatch.setenv("KD_RUNS_DIR", str(root))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KD_EXTRA_MODELS", str(tiny_teacher_dir))
    teach = finished_run(root, "teach", tiny_teacher_dir, bench_ms=20.0)
    finished_run(root, "kd-a", tiny_teacher_dir, teacher=str(teach), bench_ms=10.0)
    finished_run(root, "kd-b", tiny_teacher_dir, teacher=str(teach / "model"))
    finished_run(root, "kd-ext", tiny_teacher_dir, teacher=str(tiny_teacher_dir))
    finished_run(root, "kd-ext2", tiny_teacher_dir, teacher=str(tiny_teacher_dir))
    finished_run(root, "plain", tiny_teacher_dir, student_metrics={"macro_f1": None, "ece": float("nan")})
    return root


def open_page(page: str, query: dict[str, str]) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def shown_words(at: AppTest) -> list[str]:
    """Every text a visitor reads on the page: messages, captions, table cells and chart titles."""
    words = [str(e.value) for kind in ("markdown", "caption", "success", "info", "warning", "error", "subheader")
             for e in getattr(at, kind)]
    for frame in at.dataframe:
        words += [str(cell) for cell in frame.value.to_numpy().ravel()] + [str(c) for c in frame.value.columns]
    words += [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]
    return words


def test_compare_lists_each_model_once_and_a_teacher_run_as_itself(store):
    at = open_page("app_pages/compare.py", {"runs": "teach,kd-a,kd-b,kd-ext,kd-ext2,plain"})
    table = at.dataframe[0].value
    models = table["model"].tolist()
    assert len(models) == len(set(models)), models
    # The teacher run is its own row (not also "teacher of kd-a"); the outside teacher is one row for both runs.
    assert models == ["run teach", "run kd-a", "run kd-b", "run kd-ext", "teacher of kd-ext, kd-ext2", "run kd-ext2",
                      "run plain"]
    roles = dict(zip(models, table["role"], strict=True))
    assert roles["run teach"] == roles["teacher of kd-ext, kd-ext2"] == "teacher"
    gains = at.dataframe[1].value
    assert dict(zip(gains["model"], gains["baseline"], strict=True)) == {
        "run kd-a": "run teach", "run kd-b": "run teach", "run kd-ext": "teacher of kd-ext, kd-ext2",
        "run kd-ext2": "teacher of kd-ext, kd-ext2"}
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    confusion = [t for t in titles if t.startswith("Confusion matrix")]
    assert len(confusion) == len(set(confusion)) == len(models)  # one matrix per model, none twice


def test_compare_shows_no_none_or_nan_and_says_what_was_not_measured(store):
    at = open_page("app_pages/compare.py", {"runs": "teach,kd-a,kd-b,plain"})
    words = shown_words(at)
    assert not [w for w in words if any(bad in w.split() or w == bad for bad in NOT_SHOWN)], words
    table = at.dataframe[0].value
    latency = dict(zip(table["model"], table["latency_ms_b1"], strict=True))
    assert latency == {"run teach": "20.0", "run kd-a": "10.0", "run kd-b": "not measured", "run plain": "not measured"}
    plain = table[table["model"] == "run plain"].iloc[0]
    assert plain["agreement"] == plain["macro_f1"] == plain["ece"] == "—"
    headlines = [s.value for s in at.success]
    assert any(h.startswith("Student kd-a is 2.0× faster at batch 1") for h in headlines), headlines
    assert any("kd-b" in h and "not measured: run Benchmark" in h for h in headlines), headlines


def test_every_chart_on_compare_has_an_accessible_name_and_its_numbers_as_a_table(store):
    at = open_page("app_pages/compare.py", {"runs": "teach,kd-a"})
    charts = at.get("plotly_chart")
    assert len(charts) == 5  # accuracy vs throughput, two confusion matrices, F1 per class, the training curves
    titles = []
    for chart in charts:
        title = json.loads(chart.proto.spec)["layout"]["title"]["text"]
        assert title and chart.proto.alt == f"Chart: {title}"
        titles.append(title)
    expanders = [e.label for e in at.expander]
    assert all(f"{t}: the numbers" in expanders for t in titles), expanders
    curves = json.loads(next(c for c in charts if "per epoch" in c.proto.spec).proto.spec)["layout"]["xaxis"]
    assert curves["dtick"] == 1 and curves["tickformat"] == "d"  # whole epochs


def test_playground_says_what_a_cold_load_does_then_serves_from_memory(store):
    st.cache_resource.clear()  # a fresh server: no model loaded yet
    at = open_page("app_pages/playground.py", {})
    chosen = at.multiselect(key="p_models").value
    assert len(chosen) == 2
    statuses = at.status
    assert len(statuses) == len(chosen), [s.label for s in statuses]
    for status in statuses:
        assert "is ready (first load: " in status.label, status.label  # after "Loading <name> (fp32; ...)…"
        steps = " ".join(m.value for m in status.markdown)
        assert "Reading the weights and tokenizer of " in steps and "MB on disk)" in steps, steps
        assert "Warming up" in steps
    assert len([m for m in at.metric if m.label == "Prediction"]) == 2
    charts = at.get("plotly_chart")
    assert charts and all(c.proto.alt.startswith("Chart: ") for c in charts)
    at.text_area(key="p_text").set_value("Shares rose after the merger.").run()
    assert not at.exception and not at.status  # loaded: no status box the second time
    assert len([m for m in at.metric if m.label == "Prediction"]) == 2


@pytest.mark.parametrize(("trade", "expected"), [
    ({"speedup_b1": 0.7, "speedup_b32": 2.0, "smaller": 1.5, "accuracy_kept": 0.9},
     "The student is 1.4× slower at batch 1 and 2.0× faster at batch 32, 1.5× smaller, and keeps 90.0% of the "
     "teacher's accuracy."),
    ({"speedup_b1": 1.02, "speedup_b32": 1.0, "smaller": 1.0, "accuracy_kept": 1.1},
     "The student is as fast (1.0×) at batch 1 and as fast (1.0×) at batch 32, the same size, and reaches 110.0% "
     "of the teacher's accuracy."),
    ({"speedup_b1": 3.0, "speedup_b32": None, "smaller": 0.5, "accuracy_kept": None},
     "The student is 3.0× faster at batch 1, 2.0× larger, and has no test accuracy (speed at batch 32 not "
     "measured: run Benchmark)."),
], ids=["slower", "same", "larger"])
def test_headlines_call_a_slower_or_larger_student_so(trade, expected):
    from distill_core.app import compare

    assert compare.headline(trade) == expected


def test_sample_texts_read_as_written():
    from distill_core.app.playground import readable

    assert readable("The nation #39;s \\ two &lt;b&gt;big&lt;/b&gt; firms: #36;5 AT&amp;T") == \
        "The nation's two <b>big</b> firms: $5 AT&T"

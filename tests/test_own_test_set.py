"""Bring your own test set: `evaluate` on a test-only folder, on a single file scored in full, with other column
names and with class names as labels; labels the model does not know; and Compare's "score on a file" section
through AppTest with an uploaded file. Real tiny models (conftest), real files, `cli.main` in this process."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import LABEL_NAMES, make_rows, write_csv

from distill_core import cli, runs, storage
from distill_core.errors import UserError
from distill_core.test_sets import TestSet, label_ids, load_test_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def evaluate(capsys, *argv: str) -> tuple[int, dict | None, str]:
    """(exit status, the JSON printed on stdout or None, stderr) of `python -m distill_core evaluate ...`."""
    code = cli.main(["evaluate", "--quiet", "--max-length", "32", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def expected_accuracy(model: Path, texts: list[str], gold_names: list[str]) -> float:
    """The model's accuracy computed independently: its own predictions, compared by class name."""
    from distill_core.inference import load_for_inference, predict_texts

    loaded = load_for_inference(str(model))
    loaded.max_length = 32
    preds = predict_texts(loaded, texts)["logits"].argmax(-1)
    return float(np.mean([loaded.label_names[p].lower() == g.lower() for p, g in zip(preds, gold_names,
                                                                                       strict=True)]))


@pytest.fixture
def headlines(tmp_path) -> tuple[Path, list[tuple[str, str]]]:
    """A folder holding only test.csv, with columns headline,topic and class names in mixed case as labels."""
    folder = tmp_path / "my-test-set"
    folder.mkdir()
    rows = [(text, [str.lower, str.upper, str][i % 3](LABEL_NAMES[label]))
            for i, (text, label) in enumerate(make_rows(6, seed=7))]
    write_csv(folder / "test.csv", rows, header=("headline", "topic"))
    return folder, rows


def test_a_test_only_folder_with_other_columns_and_class_names_is_scored_in_full(capsys, tmp_path, headlines,
                                                                                 tiny_teacher_dir):
    folder, rows = headlines
    out = tmp_path / "eval.json"
    code, report, err = evaluate(capsys, "--data", str(folder), "--model", str(tiny_teacher_dir),
                                 "--text-column", "headline", "--label-column", "topic", "--out", str(out))
    assert code == 0, err
    assert report is not None and report["n_examples"] == len(rows) == 24
    assert report["rows"] == "all" and report["data"].endswith("test.csv")
    # the same metrics as evaluate always gave (evaluate.classification_metrics)
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix", "ece", "label_names"} <= report.keys()
    assert report["label_names"] == LABEL_NAMES
    assert sum(map(sum, report["confusion_matrix"])) == len(rows)
    assert report["accuracy"] == pytest.approx(expected_accuracy(tiny_teacher_dir, [t for t, _ in rows],
                                                                 [n for _, n in rows]))
    assert json.loads(out.read_text())["accuracy"] == report["accuracy"]


def test_a_single_file_is_scored_in_full_with_joined_text_columns_and_a_reference(capsys, tmp_path,
                                                                                   tiny_teacher_dir):
    rows = [(text.split(" ", 1)[0], text.split(" ", 1)[-1], label) for text, label in make_rows(9, seed=8)]
    file = write_csv(tmp_path / "mine.csv", rows, header=("title", "body", "class_id"))
    code, report, err = evaluate(capsys, "--data", str(file), "--model", str(tiny_teacher_dir),
                                 "--text-column", "title+body", "--label-column", "class_id",
                                 "--reference", str(tiny_teacher_dir))
    assert code == 0, err
    assert report is not None and report["n_examples"] == len(rows) == 36  # every row, not a carved 20%
    assert report["agreement"] == 1.0  # the model agrees with itself
    assert report["accuracy"] == pytest.approx(expected_accuracy(
        tiny_teacher_dir, [f"{t} {b}" for t, b, _ in rows], [LABEL_NAMES[label] for _, _, label in rows]))
    # The split a training run carves from that file is still there when asked for.
    code, carved, err = evaluate(capsys, "--data", str(file), "--model", str(tiny_teacher_dir),
                                 "--text-column", "title+body", "--label-column", "class_id",
                                 "--test-fraction", "0.25")
    assert code == 0, err
    assert carved is not None and carved["n_examples"] == 9


def test_ids_with_a_classes_file_in_another_order_are_matched_to_the_model_by_name(capsys, tmp_path,
                                                                                   tiny_teacher_dir):
    order = [3, 1, 0, 2]  # the file's id i means LABEL_NAMES[order[i]]
    folder = tmp_path / "reordered"
    folder.mkdir()
    rows = [(text, order.index(label)) for text, label in make_rows(5, seed=9)]
    write_csv(folder / "test.csv", rows)
    (folder / "classes.txt").write_text("\n".join(LABEL_NAMES[i] for i in order) + "\n", encoding="utf-8")
    code, report, err = evaluate(capsys, "--data", str(folder), "--model", str(tiny_teacher_dir))
    assert code == 0, err
    assert report is not None and report["n_examples"] == 20
    assert report["accuracy"] == pytest.approx(expected_accuracy(
        tiny_teacher_dir, [t for t, _ in rows], [LABEL_NAMES[order[i]] for _, i in rows]))


def test_labels_the_model_does_not_know_are_one_clear_error_and_nothing_is_written(capsys, tmp_path,
                                                                                    tiny_teacher_dir):
    folder = tmp_path / "unknown"
    folder.mkdir()
    write_csv(folder / "test.csv", [("Shares rose", "Business"), ("Rain again", "Weather"),
                                    ("Goal in the final", "Football")], header=("headline", "topic"))
    out = tmp_path / "never.json"
    code, _, err = evaluate(capsys, "--data", str(folder), "--model", str(tiny_teacher_dir),
                            "--text-column", "headline", "--label-column", "topic", "--out", str(out))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "'Football', 'Weather'" in err and "World, Sports, Business, Sci/Tech" in err
    assert "--label-column" in err
    assert not out.exists()
    # an id outside the model's classes, likewise
    write_csv(folder / "test.csv", [("Shares rose", 2), ("Rain again", 7)], header=("headline", "topic"))
    code, _, err = evaluate(capsys, "--data", str(folder), "--model", str(tiny_teacher_dir),
                            "--text-column", "headline", "--label-column", "topic", "--out", str(out))
    assert code == 2 and "[7]" in err and "0..3" in err and not out.exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--text-column", "text"], "no column 'text' for --text-column; columns are ['headline', 'topic']"),
    (["--text-column", "headline"], "no column 'label' for --label-column"),
    (["--text-column", "headline", "--label-column", "topic", "--split", "validation"],
     "--split: "),
    (["--text-column", "headline", "--label-column", "topic", "--eval-samples", "4"], "--eval-samples: "),
])
def test_flags_that_do_not_fit_a_test_only_folder_are_refused_in_flag_words(capsys, headlines, tiny_teacher_dir,
                                                                             flags, message):
    folder, _ = headlines
    code, _, err = evaluate(capsys, "--data", str(folder), "--model", str(tiny_teacher_dir), *flags)
    assert code == 2 and message in err, err


def test_label_matching_is_by_name_case_insensitive_and_ids_stay_ids():
    names = ["World", "Sports", "Business", "Sci/Tech"]
    by_name = TestSet(["a", "b", "c"], ["sports", " SCI/TECH ", "World"], "topic", "t.csv")
    assert label_ids(by_name, names, "m").tolist() == [1, 3, 0]
    by_id = TestSet(["a", "b"], [3, "0"], "label", "t.csv")
    assert label_ids(by_id, names, "m").tolist() == [3, 0]
    with pytest.raises(UserError, match="empty label in data row"):
        label_ids(TestSet(["a", "b"], ["World", ""], "topic", "t.csv"), names, "m")


def test_a_folder_without_a_test_file_and_an_empty_file_are_refused(tmp_path):
    (tmp_path / "empty.csv").write_text("headline,topic\n", encoding="utf-8")
    with pytest.raises(UserError, match="header but no data rows"):
        load_test_set(tmp_path / "empty.csv", "headline", "topic")
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match="has no test file"):
        load_test_set(tmp_path / "folder")


def test_the_page_reads_a_local_datasets_test_file_guesses_columns_and_sends_big_files_to_the_cli(data_root):
    import pandas as pd

    from distill_core.app import scoring

    frame, where, class_names = scoring.read_local(data_root / "tiny")
    assert (where, len(frame), class_names) == ("test.csv", 80, LABEL_NAMES)
    assert scoring.guess_columns(frame) == ("text", "label")
    assert scoring.guess_columns(pd.DataFrame(columns=["Category", "Headline", "id"])) == ("Headline", "Category")
    scoring.check_page_size(scoring.PAGE_MAX_ROWS)
    with pytest.raises(UserError, match="python -m distill_core evaluate"):
        scoring.check_page_size(scoring.PAGE_MAX_ROWS + 1)
    with pytest.raises(UserError, match="has no test file"):
        scoring.read_local(data_root / "empty-folder")


# ---------------------------------------------------------------- Compare: "score on a file" (AppTest)
PAGE_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from app_pages import score_file
score_file.render(Path({root!r}), {names!r})
"""


@pytest.fixture
def finished_run(monkeypatch, tmp_path, tiny_teacher_dir) -> Path:
    """A finished distillation run whose student and teacher are the tiny teacher (its weights stand in)."""
    root = tmp_path / "runs"
    monkeypatch.setenv("KD_RUNS_DIR", str(root))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    run_dir = runs.create_run(root, "tiny-kd", {"mode": "distill", "data": {"source": "x", "max_length": 32},
                                                "student": "truncate:1", "teacher": str(tiny_teacher_dir)})
    shutil.copytree(tiny_teacher_dir, run_dir / "model")
    storage.write_json_atomic(runs.eval_path(run_dir), {"student": {"accuracy": 0.5}, "teacher": {"accuracy": 0.5}})
    runs.set_status(run_dir, "done")
    return run_dir


def open_section(tmp_path: Path, run_dir: Path):
    from streamlit.testing.v1 import AppTest

    script = tmp_path / "score_file_page.py"
    script.write_text(PAGE_SCRIPT.format(repo=str(Path(__file__).resolve().parents[1]), root=str(run_dir.parent),
                                         names=[run_dir.name]), encoding="utf-8")
    at = AppTest.from_file(str(script), default_timeout=180)
    at.run()
    return at


def test_score_file_scores_every_row_of_an_upload_with_the_columns_chosen(tmp_path, finished_run,
                                                                           tiny_teacher_dir):
    rows = [(text, LABEL_NAMES[label].lower(), "x") for text, label in make_rows(4, seed=11)]
    content = "\n".join(["topic,headline,note", *(f"{n},{t},{x}" for t, n, x in rows)]).encode()
    at = open_section(tmp_path, finished_run)
    assert not at.exception and not at.error
    at.file_uploader(key="sf_upload").set_value(("mine.csv", content, "text/csv")).run()
    assert not at.exception and not at.error, at.error
    # the columns were guessed by name from the file's own columns
    assert at.multiselect(key="sf_text").value == ["headline"] and at.selectbox(key="sf_label").value == "topic"
    at.button(key="sf_score").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.dataframe) == 2  # the file's first rows, then the scores
    table = at.dataframe[1].value
    assert list(table["model"]) == ["run tiny-kd", "teacher of tiny-kd"]
    assert list(table["n"]) == [16, 16]  # every row
    accuracy = expected_accuracy(tiny_teacher_dir, [t for t, _, _ in rows], [n for _, n, _ in rows])
    assert list(table["accuracy"]) == pytest.approx([accuracy * 100] * 2)
    assert list(table["agreement"]) == pytest.approx([100.0, 100.0])
    uploads = tmp_path / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())  # the upload was read, scored and not kept


def test_score_file_shows_labels_the_models_do_not_know_in_the_forms_words(tmp_path, finished_run):
    content = b"headline,topic\nShares rose,Business\nRain again,Weather\n"
    at = open_section(tmp_path, finished_run)
    at.file_uploader(key="sf_upload").set_value(("odd.csv", content, "text/csv")).run()
    at.button(key="sf_score").click().run()
    assert not at.exception
    messages = [e.value for e in at.error]
    assert len(messages) == 2  # the run's model and its teacher: each says which labels it does not know
    assert all("'Weather'" in m and "the Label column" in m and "odd.csv" in m for m in messages), messages
    assert len(at.dataframe) == 1  # the preview only: no scores


def test_compare_page_offers_score_on_a_file_for_its_selected_runs(tmp_path, finished_run):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "streamlit_app.py"), default_timeout=180)
    at.run()
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception, at.exception
    assert "Score on your own test file" in [h.value for h in at.subheader]
    content = b"headline,topic\nShares rose on profit,business\nThe team won the match,SPORTS\n"
    at.file_uploader(key="sf_upload").set_value(("two.csv", content, "text/csv")).run()
    at.button(key="sf_score").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[-1].value
    assert list(table["model"]) == ["run tiny-kd", "teacher of tiny-kd"] and list(table["n"]) == [2, 2]

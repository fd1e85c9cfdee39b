"""distill_core.app.datasets and locations: what the Train page offers as data, and where uploads go."""
from __future__ import annotations

from pathlib import Path

import pytest

from distill_core import locations
from distill_core.app import datasets
from distill_core.config import DataConfig
from distill_core.data import EMBEDDED_DATA_DIR, load_data, resolve_local
from distill_core.errors import UserError


def test_local_datasets_lists_dataset_folders_and_data_files_only(data_root):
    found = {Path(d.path).name: d.kind for d in datasets.local_datasets()}
    assert found == {"tiny": "folder", "loose.csv": "file", "ag_news_sample": "folder"}  # + the embedded sample


def test_save_upload_keeps_the_file_under_the_uploads_folder(data_root):
    path = datasets.save_upload("../../My Data!.csv", b"text,label\nhi,0\n")
    assert path.parent == locations.uploads_dir() and path.suffix == ".csv" and path.name.startswith("My-Data-")
    assert datasets.save_upload("../../My Data!.csv", b"text,label\nhi,0\n") == path  # idempotent
    assert any(d.kind == "upload" for d in datasets.local_datasets())


@pytest.mark.parametrize("name, content, message", [
    ("data.exe", b"x", "unsupported file type"),
    ("data.csv", b"  \n", "is empty"),
    ("big.csv", b"x" * 1_100_001, "over the 1 MB upload limit"),
], ids=["type", "empty", "too-big"])
def test_save_upload_refuses_bad_files(data_root, monkeypatch, name, content, message):
    monkeypatch.setenv("KD_MAX_UPLOAD_MB", "1")
    with pytest.raises(UserError, match=message):
        datasets.save_upload(name, content)
    assert not any(locations.uploads_dir().iterdir())


def test_estimate_rows_counts_local_files_and_knows_ag_news(data_root):
    assert datasets.estimate_rows(str(data_root / "tiny")) == (240, 80)
    assert datasets.estimate_rows(str(data_root / "loose.csv")) == (2, None)
    assert datasets.estimate_rows("ag_news") == (120_000, 7_600)
    assert datasets.estimate_rows("no/such-dataset") == (None, None)


def test_allowed_data_folders_are_the_data_roots_and_the_uploads(data_root):
    assert locations.allowed_data_folders(Path("runs")) == [data_root.resolve(), EMBEDDED_DATA_DIR.resolve(),
                                                            locations.uploads_dir()]


def test_the_embedded_sample_is_offered_and_found_by_name_with_no_configuration(monkeypatch):
    monkeypatch.delenv("KD_DATA_DIR", raising=False)
    found = {d.label.split()[0]: d for d in datasets.local_datasets()}
    assert found["ag_news_sample"].kind == "folder"
    assert resolve_local("ag_news_sample") == EMBEDDED_DATA_DIR / "ag_news_sample"
    assert datasets.estimate_rows(found["ag_news_sample"].path) == (4_000, 1_000)
    assert not any("shared" in str(root) for root in locations.data_roots())  # the product needs no ../shared


def test_the_embedded_sample_loads_balanced_with_ag_news_class_names():
    loaded = load_data(DataConfig(source="ag_news_sample"), seed=42)
    assert loaded.label_names == ["World", "Sports", "Business", "Sci/Tech"]
    assert {name: len(split) for name, split in loaded.splits.items()} == {"train": 3_200, "validation": 800,
                                                                           "test": 1_000}


# ---------------------------------------------------------------- an upload judged before it is kept
def _csv(header: str, rows: list[str]) -> bytes:
    return (header + "\n" + "\n".join(rows) + "\n").encode()


GOOD_ROWS = [f"sentence number {i},{i % 2}" for i in range(12)]


def test_an_accepted_upload_loads_with_the_columns_it_was_accepted_with(tmp_path):
    from distill_core.app.uploads import inspect_upload

    content = _csv("title,description,category", [f"T{i},D{i},{i % 3}" for i in range(15)])
    report = inspect_upload("news.csv", content)
    assert report.accepted and report.text_columns == ["title", "description"] and report.label_column == "category"
    assert report.class_counts == {"0": 5, "1": 5, "2": 5} and report.rows == 15
    assert report.preview[0] == {"title": "T0", "description": "D0", "category": "0"}
    path = datasets.save_upload("news.csv", content, tmp_path)
    loaded = load_data(DataConfig(source=str(path), text_column=report.text_column,
                                  label_column=report.label_column), seed=1)
    assert loaded.label_names == ["0", "1", "2"] and sum(len(s) for s in loaded.splits.values()) == 15


@pytest.mark.parametrize("name, content, text_columns, label_column, expected", [
    ("a.csv", _csv("text,y_name", GOOD_ROWS), None, None, ["Label column: a.csv has no column named like a label"]),
    ("a.csv", _csv("text,label", GOOD_ROWS), ["body"], "label", ["Text columns: a.csv has no column 'body'"]),
    ("a.csv", _csv("text,label", GOOD_ROWS), [], "label", ["Text columns: pick the column(s) of a.csv"]),
    ("a.csv", _csv("text,label", [",0", ",1"] + GOOD_ROWS), None, None,
     ["2 row(s) of a.csv have empty text in Text columns text (first at line 2)"]),
    ("a.csv", _csv("text,label", [f"t{i},0" for i in range(9)] + [",0"]), None, None,
     ["1 row(s) of a.csv have empty text", "Label column 'label' has only one class ('0')"]),
    ("a.csv", _csv("text,label", [f"t{i},{'pos' if i % 2 else 'neg'}" for i in range(12)]), None, None,
     ["Label column 'label' holds names (e.g. 'neg'), not class ids"]),
    ("a.csv", _csv("text,label", GOOD_ROWS + ["x,"]), None, None,
     ["1 row(s) of a.csv have an empty label in Label column"]),
    ("a.csv", _csv("text,label", GOOD_ROWS + ["x,2"]), None, None,
     ["classes with fewer than 5 rows cannot be split into train/validation/test (too few rows): "
      "'2' (1 row)"]),
    ("a.csv", _csv("text,label", GOOD_ROWS), ["text"], "text", ["Label column 'text' is also one of the Text columns"]),
    ("a.csv", b"text,label\n", None, None, ["a.csv has a header but no data rows"]),
    ("a.csv", b'text,label\n"open quote,1\n', None, None, ["a.csv is not a well-formed table"]),
    ("a.csv", "text,label\ncaf\xe9,1\n".encode("latin-1"), None, None, ["a.csv is not UTF-8 text"]),
    ("a.csv", b"PK\x03\x04" + bytes(range(256)) * 8, None, None, ["a.csv is not a text file but binary data"]),
    ("a.parquet", b"text,label\n1,2\n", None, None, ["a.parquet is not a Parquet file"]),
    ("a.xlsx", b"x", None, None, ["a.xlsx: unsupported file type '.xlsx'"]),
], ids=["no-label-column", "missing-text-column", "no-text-column", "empty-texts", "all-problems-at-once",
        "label-names", "empty-label", "small-class", "label-in-text", "no-rows", "broken-csv", "not-utf8",
        "binary-renamed-csv", "fake-parquet", "type"])
def test_inspect_upload_lists_every_problem_in_the_forms_words(name, content, text_columns, label_column,
                                                               expected):
    from distill_core.app.uploads import inspect_upload

    report = inspect_upload(name, content, text_columns, label_column)
    assert len(report.problems) == len(expected), report.problems
    for problem, start in zip(report.problems, expected, strict=True):
        assert problem.startswith(start), problem


def test_inspect_upload_keeps_nothing(tmp_path, monkeypatch):
    from distill_core.app.uploads import inspect_upload

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # its private copy lives (briefly) under here
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    inspect_upload("a.csv", _csv("text,label", GOOD_ROWS))
    inspect_upload("b.csv", _csv("text", GOOD_ROWS))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("columns, text, label", [
    (["text", "label"], ["text"], "label"),
    (["Title", "Description", "Class Index"], ["Title", "Description"], None),
    (["sentence", "category"], ["sentence"], "category"),
    (["id", "body", "topic"], ["body"], "topic"),
    (["a", "b"], ["a"], None),
], ids=["usual", "title-description", "sentence", "body", "unknown"])
def test_column_guesses(columns, text, label):
    from distill_core.app.uploads import guess_label_column, guess_text_columns

    assert guess_label_column(columns) == label
    assert guess_text_columns(columns, label) == text


def test_estimate_rows_finds_a_dataset_by_its_name():
    """The CLI's `estimate --data ag_news_sample` names the embedded sample, not a path."""
    assert datasets.estimate_rows("ag_news_sample") == (4000, 1000)

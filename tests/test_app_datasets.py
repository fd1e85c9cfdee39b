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

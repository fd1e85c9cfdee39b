"""Data sources, formats, seeded stratified splits, sub-sampling, dynamic padding and length-grouped batches."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import LABEL_NAMES, make_rows, write_csv

from distill_core.batching import (
    Collator,
    LengthGroupedBatchSampler,
    auto_padding_multiple,
    padded_length,
    padding_for_fp32_pass,
    padding_for_run,
    tokenize_splits,
)
from distill_core.config import DataConfig, TrainConfig
from distill_core.data import example_ids, load_data
from distill_core.errors import UserError


def load(source, seed: int = 42, **options):
    return load_data(DataConfig(source=str(source), **options), seed)


def rows_of(dataset) -> list[tuple[str, int]]:
    return list(zip(dataset["text"], dataset["label"], strict=True))


def all_rows(loaded) -> list[tuple[str, int]]:
    return [row for split in loaded.splits.values() for row in rows_of(split)]


def write_format(path: Path, rows: list[tuple[str, int]]) -> Path:
    """Write rows as text/label records in the format named by the file's suffix."""
    records = [{"text": text, "label": label} for text, label in rows]
    if path.suffix == ".csv":
        write_csv(path, rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(records), encoding="utf-8")
    elif path.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame.from_records(records).to_parquet(path)
    else:
        raise AssertionError(path)
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_teacher_dir)


# ---------------------------------------------------------------- sources and formats

def test_folder_source_gives_three_splits_with_label_names(tiny_data_dir):
    loaded = load(tiny_data_dir)
    assert set(loaded.splits) == {"train", "validation", "test"}
    assert loaded.label_names == LABEL_NAMES  # from classes.txt
    # 240 train rows -> 20% (48) carved out for validation; the test file is kept whole.
    assert (len(loaded.splits["train"]), len(loaded.splits["validation"]), len(loaded.splits["test"])) == \
        (192, 48, 80)
    for split in loaded.splits.values():
        assert split.column_names == ["example_id", "text", "label"]
        assert split.features["label"].names == LABEL_NAMES
    assert rows_of(loaded.splits["test"]) == make_rows(20, seed=2)  # the test file, in file order
    train_and_valid = rows_of(loaded.splits["train"]) + rows_of(loaded.splits["validation"])
    assert sorted(train_and_valid) == sorted(make_rows(60, seed=1))  # nothing lost, nothing duplicated


def test_single_file_is_split_into_train_validation_test(tmp_path):
    rows = make_rows(25, seed=3)  # 100 rows
    loaded = load(write_csv(tmp_path / "all.csv", rows))
    sizes = {name: len(split) for name, split in loaded.splits.items()}
    assert sizes == {"train": 64, "validation": 16, "test": 20}  # 20% test, then 20% of the rest
    everything = all_rows(loaded)
    assert sorted(everything) == sorted(rows)
    assert loaded.label_names == ["0", "1", "2", "3"]  # no classes.txt: ids as names


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"], ids=["jsonl", "json", "parquet"])
def test_every_format_loads_the_same_rows_as_csv(tmp_path, suffix):
    rows = make_rows(10, seed=4) + [("Quotes \"inside\", commas, and ünïcödé ✓", 1)]
    (tmp_path / "csv").mkdir()
    (tmp_path / "other").mkdir()
    reference = load(write_format(tmp_path / "csv" / "data.csv", rows))
    other = load(write_format(tmp_path / "other" / f"data{suffix}", rows))
    for split in ("train", "validation", "test"):
        assert rows_of(other.splits[split]) == rows_of(reference.splits[split])
    assert other.label_names == reference.label_names


def test_json_with_a_data_key_is_accepted(tmp_path):
    rows = make_rows(5, seed=5)
    (tmp_path / "data.json").write_text(json.dumps({"data": [{"text": t, "label": label} for t, label in rows]}))
    loaded = load(tmp_path / "data.json")
    assert sorted(all_rows(loaded)) == sorted(rows)


def write_ag_news_release(path: Path, rows: list[tuple[int, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(rows)
    return path


def test_original_ag_news_release_format_is_recognised(tmp_path):
    """Headerless "3","title","description" rows with 1-based classes -> 0-based labels, title + " " + desc."""
    release = []
    for i, (text, label) in enumerate(make_rows(6, seed=6)):
        release.append((label + 1, f"Title {i} {text.split()[0]}", f"Description of {text}, with a comma"))
    folder = tmp_path / "release"
    folder.mkdir()
    write_ag_news_release(folder / "train.csv", release)
    write_ag_news_release(folder / "test.csv", release[:8])
    (folder / "classes.txt").write_text("\n".join(LABEL_NAMES), encoding="utf-8")
    loaded = load(folder)
    assert loaded.label_names == LABEL_NAMES
    expected = [(f"{title} {description}", label - 1) for label, title, description in release[:8]]
    assert rows_of(loaded.splits["test"]) == expected
    assert min(loaded.splits["train"]["label"]) == 0 and max(loaded.splits["train"]["label"]) == 3


def test_shared_ag_news_release_matches_the_hub_export(ag_news_dir, tmp_path):
    """../shared/data/ag_news/original/test.csv (the release) loads to the same texts/labels as test.csv."""
    def as_folder(name: str, file: Path) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "test.csv").symlink_to(file)  # a link only: the shared data stays read-only
        write_csv(folder / "train.csv", make_rows(5, seed=14))
        (folder / "classes.txt").write_text("\n".join(LABEL_NAMES), encoding="utf-8")
        return folder

    release = load(as_folder("release", ag_news_dir / "original" / "test.csv"))
    export = load(as_folder("export", ag_news_dir / "test.csv"))
    assert len(release.splits["test"]) == len(export.splits["test"]) == 7600
    release_test, export_test = release.splits["test"], export.splits["test"]
    # Row 21 of the sample has a double space between title and description: the parts must not be stripped.
    for row in np.random.default_rng(0).choice(7600, size=200, replace=False).tolist() + [0, 1, 7599]:
        assert release_test[row]["text"] == export_test[row]["text"], row
        assert release_test[row]["label"] == export_test[row]["label"], row
    # All rows: the same ids, so teacher logits cached from one format serve the other.
    assert list(release_test["example_id"]) == list(export_test["example_id"])
    assert list(release_test["label"]) == list(export_test["label"])


def test_classes_txt_maps_string_labels(tmp_path):
    rows = make_rows(8, seed=7)
    write_csv(tmp_path / "train.csv", [(text, LABEL_NAMES[label]) for text, label in rows])
    (tmp_path / "classes.txt").write_text("\n".join(LABEL_NAMES) + "\n\n", encoding="utf-8")
    loaded = load(tmp_path)
    assert loaded.label_names == LABEL_NAMES
    everything = sorted(all_rows(loaded))
    assert everything == sorted(rows)


def test_string_labels_without_classes_txt_are_refused(tmp_path):
    write_csv(tmp_path / "train.csv", [(text, LABEL_NAMES[label]) for text, label in make_rows(8, seed=7)])
    with pytest.raises(UserError, match=r"not an integer.*classes\.txt"):
        load(tmp_path)


def test_text_column_can_join_several_columns(tmp_path):
    rows = [(f"Title {i}", f"body {text}", label) for i, (text, label) in enumerate(make_rows(6, seed=8))]
    write_csv(tmp_path / "train.csv", rows, header=("title", "description", "label"))
    loaded = load(tmp_path, text_column="title+description")
    texts = {text for split in loaded.splits.values() for text in split["text"]}
    assert texts == {f"{title} {body}" for title, body, _ in rows}


def test_named_columns(tmp_path):
    rows = make_rows(6, seed=9)
    write_csv(tmp_path / "train.csv", rows, header=("sentence", "category"))
    loaded = load(tmp_path, text_column="sentence", label_column="category")
    assert sorted(all_rows(loaded)) == sorted(rows)


def test_named_source_is_found_under_kd_data_dir(tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("KD_DATA_DIR", str(tiny_data_dir.parent))
    monkeypatch.chdir(tmp_path)  # not found relative to the working folder
    loaded = load(tiny_data_dir.name)
    assert rows_of(loaded.splits["test"]) == make_rows(20, seed=2)
    assert loaded.description == str(tiny_data_dir)


def test_unknown_named_source_is_a_user_error_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError):
        load("no_such_dataset_here")


# ---------------------------------------------------------------- splits and sub-sampling

def class_counts(dataset) -> Counter:
    return Counter(dataset["label"])


@pytest.fixture(scope="module")
def unbalanced_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("unbalanced")
    rows = [row for row in make_rows(60, seed=10) if row[1] != 3]
    rows = [r for r in rows if r[1] == 0] + [r for r in rows if r[1] == 1][:35] + [r for r in rows if r[1] == 2][:15]
    write_csv(folder / "train.csv", rows)
    write_csv(folder / "test.csv", make_rows(10, seed=11))
    return folder / "train.csv"


def test_validation_split_is_stratified_20_percent(unbalanced_file):
    loaded = load(unbalanced_file.parent)
    train, valid = loaded.splits["train"], loaded.splits["validation"]
    total = class_counts(train) + class_counts(valid)
    assert total == Counter({0: 60, 1: 35, 2: 15})
    assert len(valid) == round(0.2 * 110)
    for label, count in total.items():
        assert abs(class_counts(valid)[label] - 0.2 * count) <= 1, (label, class_counts(valid))


def test_split_is_seeded(unbalanced_file):
    def valid_ids(seed):
        return list(load(unbalanced_file.parent, seed=seed).splits["validation"]["example_id"])

    assert valid_ids(1) == valid_ids(1)
    assert set(valid_ids(1)) != set(valid_ids(2))


def test_train_and_eval_samples_are_stratified(tiny_data_dir):
    loaded = load(tiny_data_dir, train_samples=40, eval_samples=20)
    assert len(loaded.splits["train"]) == 40
    assert len(loaded.splits["validation"]) == 20
    assert len(loaded.splits["test"]) == 20
    for name, per_class in (("train", 10), ("validation", 5), ("test", 5)):
        counts = class_counts(loaded.splits[name])
        assert all(abs(counts[label] - per_class) <= 1 for label in range(4)), (name, counts)
    again = load(tiny_data_dir, train_samples=40, eval_samples=20)
    assert list(again.splits["train"]["example_id"]) == list(loaded.splits["train"]["example_id"])


def test_samples_larger_than_the_split_keep_everything(tiny_data_dir):
    loaded = load(tiny_data_dir, train_samples=10_000, eval_samples=10_000)
    assert (len(loaded.splits["train"]), len(loaded.splits["validation"]), len(loaded.splits["test"])) == \
        (192, 48, 80)


def test_example_id_is_a_content_hash(tmp_path):
    assert example_ids(["same text", "same text", "other"])[0] == example_ids(["same text"])[0]
    assert len(set(example_ids(["same text", "other"]))) == 2
    rows = make_rows(10, seed=12)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_csv(a / "train.csv", rows)
    write_csv(b / "train.csv", list(reversed(rows)))  # other order, other file: ids follow the text
    ids_a = {t: i for s in load(a).splits.values() for t, i in zip(s["text"], s["example_id"], strict=True)}
    ids_b = {t: i for s in load(b).splits.values() for t, i in zip(s["text"], s["example_id"], strict=True)}
    assert ids_a == ids_b


# ---------------------------------------------------------------- tokenisation and batching (batching.py)

def test_tokenisation_is_dynamic(tiny_data_dir, tokenizer):
    loaded = load(tiny_data_dir)
    tokenized = tokenize_splits(loaded, tokenizer, max_length=12)
    train = tokenized["train"]
    lengths = [len(ids) for ids in train["input_ids"]]
    assert len(set(lengths)) > 1  # not padded to a common length
    assert max(lengths) <= 12  # truncated at max_length
    assert all(tokenizer.pad_token_id not in ids for ids in train["input_ids"])
    assert all(all(mask) for mask in train["attention_mask"])
    assert list(train["example_id"]) == list(loaded.splits["train"]["example_id"])  # order kept

    rows = [train[i] for i in range(8)]
    batch = Collator(tokenizer)(rows)
    longest = max(len(row["input_ids"]) for row in rows)
    assert tuple(batch["input_ids"].shape) == (8, longest)  # padded to its own longest row only
    assert batch["attention_mask"].sum(1).tolist() == [len(row["input_ids"]) for row in rows]
    assert batch["labels"].tolist() == [row["label"] for row in rows]


@pytest.mark.parametrize(("longest", "multiple", "cap", "expected"), [
    (13, 1, 128, 13), (13, 16, 128, 16), (16, 16, 128, 16), (17, 16, 128, 32),
    (120, 16, 128, 128), (121, 16, 125, 125),  # rounding stops at the run's max length ...
    (130, 16, 128, 130),                       # ... but never cuts a row that is already longer
    (17, 8, None, 24),
])
def test_padded_length_rounds_up_within_the_max_length(longest, multiple, cap, expected):
    assert padded_length(longest, multiple, cap) == expected


def test_collator_pads_to_a_multiple_and_masks_the_extra_tokens(tiny_data_dir, tokenizer):
    train = tokenize_splits(load(tiny_data_dir), tokenizer, max_length=64)["train"]
    rows = [train[i] for i in range(8)]
    longest = max(len(row["input_ids"]) for row in rows)
    multiple = longest + 3  # rounding up must add 3 padded positions
    batch = Collator(tokenizer, pad_to_multiple_of=multiple, max_length=64)(rows)
    assert batch["input_ids"].shape[1] == longest + 3
    assert batch["attention_mask"].sum(1).tolist() == [len(row["input_ids"]) for row in rows]
    assert (batch["input_ids"][:, longest:] == tokenizer.pad_token_id).all()


@pytest.mark.parametrize("precision, multiple", [("bf16", 16), ("fp16", 16), ("no", 1)])
def test_auto_padding_rounds_to_16_only_under_mixed_precision(precision, multiple):
    assert auto_padding_multiple(precision) == multiple


def test_a_runs_padding_is_auto_unless_asked_and_says_why():
    def run(**settings):
        return TrainConfig(mode="finetune", student="m", data=DataConfig(source="d"), **settings)

    assert padding_for_run(run(pad_to_multiple_of=8, mixed_precision="bf16")) == (8, "asked for")
    assert padding_for_run(run(mixed_precision="no")) == (1, "auto: the run trains in fp32")
    # bf16 asked for resolves to bf16 on any CPU (slow where emulated), so auto pads to 16 whatever this machine is
    assert padding_for_run(run(mixed_precision="bf16")) == (16, "auto: the run trains in bf16")
    assert run().pad_to_multiple_of is None  # the default is auto


def test_the_fp32_passes_of_a_bf16_run_pad_as_fp32_unless_a_multiple_was_asked_for(tokenizer):
    """The teacher's logits and the test scoring run in fp32 in every run: auto pads them to the longest row;
    a multiple the user set applies to every pass."""
    def run(**settings):
        return TrainConfig(mode="distill", student="m", teacher="t", data=DataConfig(source="d", max_length=64),
                           **settings)

    assert padding_for_run(run(mixed_precision="bf16"))[0] == 16
    assert padding_for_fp32_pass(run(mixed_precision="bf16")) == 1
    assert padding_for_fp32_pass(run(mixed_precision="bf16", pad_to_multiple_of=8)) == 8
    rows = [{"input_ids": tokenizer(text)["input_ids"]} for text in ("a short one", "a little longer text here")]
    longest = max(len(row["input_ids"]) for row in rows)
    assert Collator.for_fp32_pass(tokenizer, run(mixed_precision="bf16"))(rows)["input_ids"].shape[1] == longest
    assert Collator.for_run(tokenizer, run(mixed_precision="bf16"))(rows)["input_ids"].shape[1] == 16


def test_tokenisation_cache_is_keyed_by_max_length(tiny_data_dir, tokenizer):
    loaded = load(tiny_data_dir)
    short = tokenize_splits(loaded, tokenizer, max_length=8)["train"]
    long = tokenize_splits(loaded, tokenizer, max_length=32)["train"]
    assert max(len(ids) for ids in short["input_ids"]) <= 8
    assert max(len(ids) for ids in long["input_ids"]) > 8


def test_tokenisation_cache_follows_relabelled_data(tmp_path, tokenizer):
    """The same texts with other labels must not reuse the labels cached with the first tokenisation."""
    rows = make_rows(5, seed=13)
    for name, shift in (("first", 0), ("relabelled", 1)):
        folder = tmp_path / name
        folder.mkdir()
        write_csv(folder / "train.csv", rows)
        write_csv(folder / "test.csv", [(text, (label + shift) % 4) for text, label in rows[:8]])
        loaded = load(folder)
        tokenized = tokenize_splits(loaded, tokenizer, max_length=16)
        assert list(tokenized["test"]["label"]) == list(loaded.splits["test"]["label"]), name


def test_length_grouped_sampler_covers_each_index_once_per_epoch():
    lengths = np.random.default_rng(0).integers(1, 100, size=103).tolist()
    sampler = LengthGroupedBatchSampler(lengths, batch_size=8, seed=1, mega_batch_factor=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(103))
    assert all(len(batch) <= 8 for batch in batches)


def test_length_grouped_sampler_is_seeded_by_seed_and_epoch():
    lengths = list(range(1, 201))

    def epoch_batches(seed, epoch):
        sampler = LengthGroupedBatchSampler(lengths, batch_size=10, seed=seed, mega_batch_factor=5)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_batches(3, 1) == epoch_batches(3, 1)
    assert epoch_batches(3, 1) != epoch_batches(3, 2)
    assert epoch_batches(3, 1) != epoch_batches(4, 1)


def test_length_grouped_batches_hold_similar_lengths():
    lengths = np.random.default_rng(1).integers(1, 500, size=400).tolist()
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, seed=0, mega_batch_factor=25)  # one mega-batch
    padded = sum(len(b) * max(lengths[i] for i in b) for b in sampler)
    rng = np.random.default_rng(2)
    order = rng.permutation(400)
    random_padded = sum(len(b) * max(lengths[i] for i in b) for b in np.array_split(order, 25))
    assert padded < 0.7 * random_padded  # sorting by length wastes far less padding than random batches

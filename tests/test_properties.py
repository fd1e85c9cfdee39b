"""Properties over generated input: loaders and validation fail only with UserError; run names stay one safe folder."""
from __future__ import annotations

import csv
import io
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distill_core.config import (
    DataConfig,
    TrainConfig,
    config_to_dict,
    train_config_from_dict,
)
from distill_core.data import load_data
from distill_core.errors import UserError
from distill_core.runs import sanitize_run_name

# database=None: no .hypothesis/ folder in the repository; the examples are generated afresh on each run.
SETTINGS = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Printable text and a few troublemakers (quotes, separators, newlines, a BOM, non-Latin letters).
cell_text = st.text(alphabet=st.one_of(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                       st.sampled_from(['"', ",", "\n", "\r", "\ufeff", " ", "é", "中"])),
                    max_size=12)
label_value = st.one_of(st.integers(min_value=-3, max_value=6), st.sampled_from(["0", "1", "2", "1.0", "1.5", "",
                                                                                 "nan", "World", " 1 "]), cell_text)
column_name = st.one_of(st.sampled_from(["text", "label"]), cell_text)


def load_csv_text(content: str | bytes, classes: list[str] | None = None):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.csv"
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        if classes is not None:
            (Path(folder) / "classes.txt").write_text("\n".join(classes), encoding="utf-8")
        return load_data(DataConfig(source=str(path)), seed=0)


def assert_well_formed(loaded) -> None:
    k = len(loaded.label_names)
    assert k >= 2
    for name, split in loaded.splits.items():
        assert len(split) >= 1, name
        assert all(0 <= label < k for label in split["label"])
        assert all(isinstance(text, str) and text.strip() for text in split["text"])


@SETTINGS
@given(header=st.tuples(column_name, column_name),
       rows=st.lists(st.tuples(cell_text, label_value), max_size=30),
       classes=st.one_of(st.none(), st.lists(st.sampled_from(["World", "Sports", "Business", "Sci/Tech", "x"]),
                                              max_size=5)))
def test_csv_loading_either_works_or_raises_user_error(header, rows, classes):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    try:
        loaded = load_csv_text(buffer.getvalue(), classes)
    except UserError as error:
        assert str(error) and "\n" not in str(error)
        return
    assert_well_formed(loaded)


@SETTINGS
@given(rows=st.lists(st.tuples(st.text(alphabet="abcdefgh xyz", min_size=1, max_size=20),
                               st.integers(min_value=0, max_value=3)), min_size=8, max_size=40))
def test_well_formed_csv_with_two_rows_per_class_loads_every_row(rows):
    # Distinct texts: identical texts share an example id and move between splits together (no leakage), so a
    # few duplicates with different labels can leave a class too small to carve, which is refused by design.
    rows = [(f"{text} {i}", label) for i, (text, label) in enumerate(rows)]
    rows = rows + [(f"extra {i}", i % 2) for i in range(4)]  # at least two classes
    labels = [label for _, label in rows]
    counts = {label: labels.count(label) for label in set(labels)}
    # A single file is carved twice (test, then validation, both stratified): 5 rows per class leave every class
    # at least 2 rows for each carve; with 3, one class could be left with 1 (found by hypothesis).
    if min(counts.values()) < 5:
        rows = rows + [(f"pad {label} {i}", label) for label in counts for i in range(5)]
    buffer = io.StringIO()
    csv.writer(buffer).writerows([("text", "label"), *rows])
    try:
        loaded = load_csv_text(buffer.getvalue())
    except UserError as error:
        # Rows whose text is only blanks are refused by design; nothing else may fail.
        assert "empty text" in str(error)
        assert any(not text.strip() for text, _ in rows)
        return
    assert_well_formed(loaded)
    assert sum(len(split) for split in loaded.splits.values()) == len(rows)


@SETTINGS
@given(content=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_loader(content):
    try:
        loaded = load_csv_text(b"text,label\n" + content)
    except UserError:
        return
    assert_well_formed(loaded)


finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10))
anything = st.one_of(finite_or_not, st.none(), st.text(max_size=4), st.booleans())
FLOAT_FIELDS = ("temperature", "alpha", "lr", "warmup_ratio", "weight_decay", "dropout")
INT_FIELDS = ("epochs", "batch_size", "patience", "seed", "eval_batch_size", "log_every_steps", "max_steps",
              "pad_to_multiple_of")


@SETTINGS
@given(values=st.dictionaries(st.sampled_from(FLOAT_FIELDS), finite_or_not, max_size=3),
       ints=st.dictionaries(st.sampled_from(INT_FIELDS), st.integers(-5, 5000), max_size=3),
       data=st.dictionaries(st.sampled_from(["valid_fraction", "max_length", "train_samples"]),
                            st.one_of(finite_or_not, st.integers(-10, 10_000)), max_size=2))
def test_numeric_hyperparameters_validate_or_raise_user_error(values, ints, data):
    """Start from the (valid) seed recipe and replace a few numbers by arbitrary ones, NaN and infinities included."""
    config = TrainConfig(mode="distill", data=DataConfig(source="ag_news", **data), student="truncate:2",
                         teacher="./teacher", **values, **ints)
    try:
        config.validate()
    except UserError as error:
        assert "\n" not in str(error)
        return
    # Accepted: every number is finite and the config survives its JSON round trip.
    assert all(math.isfinite(getattr(config, name)) for name in FLOAT_FIELDS)
    assert math.isfinite(config.data.valid_fraction)
    assert train_config_from_dict(config_to_dict(config)) == config


@SETTINGS
@given(overrides=st.dictionaries(st.sampled_from(FLOAT_FIELDS + INT_FIELDS), anything, max_size=4),
       data_overrides=st.dictionaries(st.sampled_from(["valid_fraction", "max_length", "train_samples",
                                                       "eval_samples", "text_column"]), anything, max_size=2))
def test_config_from_json_of_any_types_validates_or_raises_user_error(overrides, data_overrides):
    """A hand-written config.json (`--config`, the worker) may hold strings, nulls or booleans anywhere."""
    raw = config_to_dict(TrainConfig(mode="distill", data=DataConfig(source="ag_news"), student="truncate:2",
                                     teacher="./teacher"))
    raw.update(overrides)
    raw["data"].update(data_overrides)
    try:
        config = train_config_from_dict(raw)
        config.validate()
    except UserError as error:
        assert "\n" not in str(error)
        return
    for name in INT_FIELDS:
        value = getattr(config, name)
        assert value is None or (isinstance(value, int) and not isinstance(value, bool)), (name, value)
    for name in FLOAT_FIELDS:
        value = getattr(config, name)
        assert value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                 and math.isfinite(value)), (name, value)


@settings(max_examples=200, deadline=None, database=None)
@given(name=st.one_of(st.text(max_size=80), st.sampled_from(["..", ".", "../x", "a/b", "/etc/passwd", "-rf", "a\x00b",
                                                              " ok ", "ok.", "a..b", "x" * 64, "x" * 65, ".hidden",
                                                              "runs/../../etc/passwd", "C:\\x", "~"])))
def test_sanitized_run_name_is_one_safe_path_component(name):
    try:
        safe = sanitize_run_name(name)
    except UserError:
        return
    assert safe and len(safe) <= 64
    assert safe not in (".", "..") and not safe.startswith((".", "-")) and ".." not in safe
    assert not any(ch in safe for ch in "/\\\x00:~ \t\n")
    assert Path(safe).name == safe and len(Path(safe).parts) == 1
    root = Path(tempfile.gettempdir()) / "kd-runs-root"
    assert (root / safe).resolve().parent == root.resolve()
    assert sanitize_run_name(safe) == safe  # idempotent


@pytest.mark.parametrize("name", ["my-run", "run_1.2", "A" * 64, "  padded  "], ids=["dash", "dots", "64", "padded"])
def test_good_run_names_are_kept(name):
    assert sanitize_run_name(name) == name.strip()

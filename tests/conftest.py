"""Shared, read-only fixtures: a tiny synthetic 4-class dataset and a tiny BERT teacher with the bundled vocabulary.

Every test runs offline (HF_HUB_OFFLINE=1) with its caches and run store under pytest's temporary folders, so the
suite never touches ~/.cache or ../shared/data (which tests only read, and skip when it is absent).
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

SHARED_AG_NEWS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ag_news"
LABEL_NAMES = ["World", "Sports", "Business", "Sci/Tech"]
# Words that make each class learnable in a few steps, mixed with shared filler so it is not trivial.
CLASS_WORDS = [
    ["minister", "election", "war", "embassy", "president", "talks", "troops", "parliament"],
    ["match", "goal", "team", "season", "coach", "league", "championship", "score"],
    ["shares", "profit", "market", "bank", "oil", "prices", "investors", "merger"],
    ["software", "internet", "computer", "space", "scientists", "microsoft", "chip", "research"],
]
FILLER = ["the", "a", "on", "new", "after", "said", "with", "for", "report", "week", "today", "over"]


def make_rows(n_per_class: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    rows = []
    for label, words in enumerate(CLASS_WORDS):
        for _ in range(n_per_class):
            tokens = rng.sample(words, 3) + rng.sample(FILLER, rng.randint(2, 8))
            rng.shuffle(tokens)
            rows.append((" ".join(tokens).capitalize(), label))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[tuple[str, int]], header=("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(autouse=True)
def _offline_isolated(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kd-cache"))
    monkeypatch.setenv("KD_RUNS_DIR", str(tmp_path_factory.getbasetemp() / "kd-runs"))


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """train.csv (4 x 60 rows), test.csv (4 x 20 rows) and classes.txt."""
    folder = tmp_path_factory.mktemp("tiny-data")
    write_csv(folder / "train.csv", make_rows(60, seed=1))
    write_csv(folder / "test.csv", make_rows(20, seed=2))
    (folder / "classes.txt").write_text("\n".join(LABEL_NAMES) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide BERT classifier (random weights, seeded) with the bundled bert-base-uncased vocabulary."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from distill_core.models import bundled_path, label_maps

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-teacher")
    tokenizer = AutoTokenizer.from_pretrained(bundled_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=128, max_position_embeddings=512,
                        attention_probs_dropout_prob=0.0,  # --dropout sets hidden dropout only; keeps runs comparable
                        architectures=["BertForSequenceClassification"], **label_maps(LABEL_NAMES))
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def ag_news_dir() -> Path:
    if not (SHARED_AG_NEWS / "train.csv").is_file():
        pytest.skip("../shared/data/ag_news is not present")
    return SHARED_AG_NEWS

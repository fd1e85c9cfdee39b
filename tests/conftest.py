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
# A finished distill run's config.json and eval.json, as the model card (test_card.py) and the Hub push
# (test_hub.py) read them.
SAMPLE_RUN_CONFIG = {
    "mode": "distill",
    "data": {"source": "ag_news", "text_column": "text", "label_column": "label", "valid_fraction": 0.2,
             "train_samples": 2000, "eval_samples": None, "max_length": 150},
    "student": "google/bert_uncased_L-4_H-256_A-4", "teacher": "org/bert-base-ag-news",
    "temperature": 2.0, "alpha": 0.5, "kd_loss": "kl", "epochs": 5, "lr": 2e-5, "batch_size": 64,
    "optimizer": "adamw", "dropout": 0.3, "seed": 42, "provenance": {"torch": "2.x"},
}
SAMPLE_RUN_EVAL = {
    "split": "test", "label_names": LABEL_NAMES,
    "student": {"accuracy": 0.9012, "macro_f1": 0.8999, "agreement": 0.9345, "ece": 0.0312, "n_examples": 7600},
    "teacher": {"accuracy": 0.9461, "macro_f1": 0.9458, "ece": 0.0201, "n_examples": 7600},
}


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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine two threads mostly wait on
    each other (measured: a 36-step fine-tune took 38 s with 2 threads, 19 s with 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _offline_isolated(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kd-cache"))
    monkeypatch.setenv("KD_RUNS_DIR", str(tmp_path_factory.getbasetemp() / "kd-runs"))
    # The Train page's background probe (app.probe) would start a torch process per page test; the tests of the
    # probe turn it back on.
    monkeypatch.setenv("KD_ESTIMATE_PROBE", "0")


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

    from distill_core.models import label_maps
    from distill_core.specs import bundled_path

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
def data_root(monkeypatch, tmp_path, tiny_data_dir) -> Path:
    """An allowed data folder (KD_DATA_DIR) holding the tiny dataset, a loose CSV and things that are not data;
    uploads go to a fresh folder."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_data_dir, root / "tiny")
    (root / "loose.csv").write_text("text,label\nhello,0\nworld,1\n", encoding="utf-8")
    (root / "notes.txt").write_text("not data", encoding="utf-8")
    (root / "empty-folder").mkdir()
    monkeypatch.setenv("KD_DATA_DIR", str(root))
    monkeypatch.setenv("KD_UPLOADS_DIR", str(tmp_path / "uploads"))
    return root


@pytest.fixture
def ag_news_dir() -> Path:
    if not (SHARED_AG_NEWS / "train.csv").is_file():
        pytest.skip("../shared/data/ag_news is not present")
    return SHARED_AG_NEWS

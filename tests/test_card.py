"""The model card pushed with a run (distill_core.card): front matter, facts, and no local paths."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import LABEL_NAMES, SAMPLE_RUN_CONFIG, SAMPLE_RUN_EVAL

from distill_core import card

BENCH = [{"model": "student", "precision": "fp32", "batch_size": 1, "latency_ms_p50": 4.21, "samples_per_s": 237.5}]


def test_model_card_has_valid_front_matter_and_the_facts() -> None:
    text = card.render_model_card(SAMPLE_RUN_CONFIG, SAMPLE_RUN_EVAL, BENCH, LABEL_NAMES,
                                  repo_id="alice/minilm-ag-news")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    yaml = pytest.importorskip("yaml")
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert meta["tags"] == ["knowledge-distillation", "kd-studio"]
    assert meta["datasets"] == ["ag_news"] and "accuracy" in meta["metrics"]
    assert meta["base_model"] == "google/bert_uncased_L-4_H-256_A-4"
    for row in ["| temperature | 2 |", "| alpha (weight of cross-entropy) | 0.5 |",
                "| distillation loss | kl |", "| epochs | 5 |", "| learning rate | 2e-05 |", "| batch size | 64 |",
                "| max length (tokens) | 150 |", "| student dropout | 0.3 |", "| seed | 42 |",
                "| optimizer | adamw |"]:
        assert row in body
    assert "| accuracy | 0.9012 | 0.9461 |" in body and "| macro-F1 | 0.8999 | 0.9458 |" in body
    assert "| agreement with teacher | 0.9345 | — |" in body and "ECE" in body
    assert "| model | precision | batch_size | latency_ms_p50 | samples_per_s |" in body
    assert "| student | fp32 | 1 | 4.21 | 237.5 |" in body
    assert "(https://huggingface.co/datasets/ag_news)" in body
    assert 'pipeline("text-classification", model="alice/minilm-ag-news")' in body
    assert "## Limitations" in body and "Sci/Tech" in body and "org/bert-base-ag-news" in body


def test_model_card_hides_local_paths_and_handles_missing_results(tmp_path: Path) -> None:
    local = tmp_path / "secret-project" / "data"
    local.mkdir(parents=True)
    config = {**SAMPLE_RUN_CONFIG, "mode": "finetune", "teacher": None, "student": str(tmp_path / "my-model"),
              "data": {**SAMPLE_RUN_CONFIG["data"], "source": str(local)}}
    text = card.render_model_card(config, None, None, ["neg", "pos"])
    assert str(tmp_path) not in text and "datasets:" not in text and "base_model" not in text
    assert "n/a (fine-tuning)" in text and "## Test results" not in text and "## Speed" not in text




@pytest.mark.parametrize("spec, expected", [
    ("truncate:3", "3 of its layers"),
    ("config:L4-H256", "4 layers and hidden size 256"),
    ("bundled:minilm-l6", "`bundled:minilm-l6` (the offline base"),
    ("org/name", "[`org/name`](https://huggingface.co/org/name)"),
    ("org/-x", "a local folder (`-x`)"),
    ("a..b/c", "a local folder (`c`)"),
    (None, "unknown"),
], ids=["truncate", "config", "bundled", "hub-id", "not-a-hub-id", "dot-dot", "missing"])
def test_specs_are_described_with_the_one_hub_id_rule(spec, expected):
    assert expected in card._describe_spec(spec)


def test_a_local_folder_named_like_a_hub_id_is_not_linked(tmp_path, monkeypatch):
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    text = card.render_model_card({**SAMPLE_RUN_CONFIG, "student": "org/name"}, None, None, LABEL_NAMES)
    assert "base_model" not in text and "huggingface.co/org/name" not in text


def test_split_eval_reads_nested_and_flat_eval_files():
    assert card.split_eval(SAMPLE_RUN_EVAL) == (SAMPLE_RUN_EVAL["student"], SAMPLE_RUN_EVAL["teacher"])
    assert card.split_eval({"accuracy": 0.5}) == ({"accuracy": 0.5}, {})
    assert card.split_eval(None) == ({}, {})

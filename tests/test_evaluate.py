"""Predictions and metrics (distill_core.evaluate)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_recall_fscore_support

from distill_core.errors import UserError
from distill_core.evaluate import (
    classification_metrics,
    expected_calibration_error,
    predict_logits,
    softmax_np,
)

# ---- classification_metrics ----------------------------------------------------------------------------

# Six examples, four classes; class "d" never occurs and is never predicted.
LABELS = [0, 0, 1, 1, 2, 2]
PREDS = [0, 1, 1, 1, 2, 0]
NAMES = ["a", "b", "c", "d"]


def test_metrics_match_hand_computed_values():
    metrics = classification_metrics(LABELS, PREDS, NAMES)
    assert metrics["n_examples"] == 6
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # a: P 1/2 R 1/2 F1 1/2; b: P 2/3 R 1 F1 0.8; c: P 1 R 1/2 F1 2/3; d: all 0 (zero_division=0).
    expected = {
        "a": (1 / 2, 1 / 2, 1 / 2, 2),
        "b": (2 / 3, 1.0, 0.8, 2),
        "c": (1.0, 1 / 2, 2 / 3, 2),
        "d": (0.0, 0.0, 0.0, 0),
    }
    assert list(metrics["per_class"]) == NAMES
    for name, (precision, recall, f1, support) in expected.items():
        scores = metrics["per_class"][name]
        assert scores["precision"] == pytest.approx(precision)
        assert scores["recall"] == pytest.approx(recall)
        assert scores["f1"] == pytest.approx(f1)
        assert scores["support"] == support
    assert metrics["macro_f1"] == pytest.approx((1 / 2 + 0.8 + 2 / 3 + 0.0) / 4)
    assert metrics["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert metrics["label_names"] == NAMES
    assert "ece" not in metrics and "agreement" not in metrics


def test_metrics_agree_with_scikit_learn_on_random_data():
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 5, size=200), rng.integers(0, 5, size=200)
    metrics = classification_metrics(labels, preds, [f"class{i}" for i in range(6)])
    classes = list(range(6))
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(labels, preds, labels=classes, average="macro", zero_division=0)
    )
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, preds, labels=classes, zero_division=0
    )
    for index, scores in enumerate(metrics["per_class"].values()):
        assert scores["precision"] == pytest.approx(precision[index])
        assert scores["recall"] == pytest.approx(recall[index])
        assert scores["f1"] == pytest.approx(f1[index])
        assert scores["support"] == support[index]


def test_confusion_matrix_rows_are_true_classes():
    metrics = classification_metrics([0, 0, 0], [1, 1, 2], ["x", "y", "z"])
    assert metrics["confusion_matrix"] == [[0, 2, 1], [0, 0, 0], [0, 0, 0]]


def test_agreement_is_fraction_equal_to_reference():
    metrics = classification_metrics(LABELS, PREDS, NAMES, reference_preds=[0, 1, 1, 0, 0, 0])
    assert metrics["agreement"] == pytest.approx(4 / 6)


def test_metrics_are_json_serialisable_plain_python():
    probs = np.full((6, 4), 0.25, dtype=np.float32)
    metrics = classification_metrics(
        np.array(LABELS), np.array(PREDS, dtype=np.int32), NAMES, probs=probs, reference_preds=np.array(PREDS)
    )
    assert json.loads(json.dumps(metrics)) == metrics

    def leaves(value):
        if isinstance(value, dict):
            for item in value.values():
                yield from leaves(item)
        elif isinstance(value, list):
            for item in value:
                yield from leaves(item)
        else:
            yield value

    assert all(type(leaf) in (int, float, str) for leaf in leaves(metrics))
    # Uniform probabilities: confidence 0.25, argmax always class 0, right for 2 of 6 examples.
    assert metrics["ece"] == pytest.approx(abs(2 / 6 - 0.25), abs=1e-6)


@pytest.mark.parametrize(
    ("labels", "preds", "kwargs", "message"),
    [
        ([0, 1], [0], {}, "same length"),
        ([0, 4], [0, 1], {}, "class index 4"),
        ([0, 1], [0, -1], {}, "class index -1"),
        ([], [], {}, "0 examples"),
        ([0, 1], [0, 1], {"probs": np.ones((2, 3))}, "probs"),
        ([0, 1], [0, 1], {"reference_preds": [0]}, "reference_preds"),
    ],
    ids=["length-mismatch", "label-out-of-range", "negative-pred", "empty", "probs-shape", "reference-length"],
)
def test_bad_metric_inputs_raise_user_error(labels, preds, kwargs, message):
    with pytest.raises(UserError, match=message):
        classification_metrics(labels, preds, ["x", "y"], **kwargs)


def test_duplicate_label_names_raise_user_error():
    with pytest.raises(UserError, match="unique"):
        classification_metrics([0], [0], ["x", "x"])


# ---- expected_calibration_error ------------------------------------------------------------------------


def test_ece_is_zero_when_confidence_matches_accuracy():
    # Ten predictions at confidence 0.8, eight of them right: perfectly calibrated.
    probs = np.tile([0.8, 0.2], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_overconfident_model_is_confidence_minus_accuracy():
    probs = np.tile([0.99, 0.01], (10, 1))
    labels = np.array([0, 1] * 5)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.49)


def test_ece_weights_bins_by_size():
    # Bin of 0.9: 2 examples, both right -> gap 0.1. Bin of 0.7: 2 examples, both wrong -> gap 0.7.
    # ECE = 2/4 * 0.1 + 2/4 * 0.7 = 0.4
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.7, 0.3], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 0])
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.4)


def test_ece_with_one_bin_is_accuracy_gap():
    probs = np.array([[1.0, 0.0], [0.6, 0.4], [0.5, 0.5]])
    labels = np.array([0, 1, 0])
    assert expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(abs(2 / 3 - 0.7))


@pytest.mark.parametrize(
    ("probs", "labels", "n_bins"),
    [(np.ones((2, 2)) / 2, np.array([0]), 15), (np.ones((2, 2)) / 2, np.array([0, 1]), 0)],
    ids=["length-mismatch", "zero-bins"],
)
def test_ece_rejects_bad_input(probs, labels, n_bins):
    with pytest.raises(UserError):
        expected_calibration_error(probs, labels, n_bins=n_bins)


# ---- softmax_np ----------------------------------------------------------------------------------------


def test_softmax_np_matches_torch_and_is_stable():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 1001.0, 999.0]], dtype=np.float32)
    probs = softmax_np(logits, temperature=2.0)
    expected = torch.softmax(torch.tensor(logits, dtype=torch.float64) / 2.0, dim=-1).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_softmax_np_rejects_nonpositive_temperature():
    with pytest.raises(UserError, match="temperature"):
        softmax_np(np.zeros((1, 2)), temperature=0.0)


# ---- predict_logits on a real tiny BERT ----------------------------------------------------------------

WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "fast", "slow", "big", "small", "red", "blue", "green",
         "news", "sport", "world"]
TEXTS = [
    "the cat",
    "a big red dog ran fast on the mat",
    "slow",
    "world news sport",
    "the small blue cat sat on a green mat",
]


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_tokenizer")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizerFast.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
    )
    return BertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def tiny_dataset(tiny_tokenizer):
    import datasets

    encoded = tiny_tokenizer(TEXTS)
    assert len({len(ids) for ids in encoded["input_ids"]}) > 1, "rows must differ in length to test padding"
    return datasets.Dataset.from_dict(
        {
            "example_id": [f"id{i}" for i in range(len(TEXTS))],
            "text": TEXTS,
            "label": [0, 1, 2, 0, 1],
            **encoded,
        }
    )


@pytest.fixture(scope="module")
def collator(tiny_tokenizer):
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tiny_tokenizer)


def _unpadded_logits(model, dataset) -> np.ndarray:
    rows = []
    with torch.no_grad():
        for row in dataset:
            inputs = {name: torch.tensor([row[name]]) for name in ("input_ids", "attention_mask", "token_type_ids")}
            rows.append(model(**inputs).logits[0].numpy())
    return np.stack(rows)


def test_predict_logits_keeps_order_and_padding_does_not_change_logits(tiny_bert, tiny_dataset, collator):
    logits = predict_logits(tiny_bert, tiny_dataset, collator, batch_size=2)
    assert logits.shape == (len(TEXTS), 3)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, _unpadded_logits(tiny_bert, tiny_dataset), atol=1e-5, rtol=0)
    # Rows really differ, so a permutation would be caught.
    assert not np.allclose(logits[0], logits[1], atol=1e-4)


def test_padding_to_a_multiple_does_not_change_logits(tiny_bert, tiny_dataset, tiny_tokenizer):
    from distill_core.batching import Collator

    rounded = predict_logits(tiny_bert, tiny_dataset, Collator(tiny_tokenizer, pad_to_multiple_of=16), batch_size=2)
    np.testing.assert_allclose(rounded, _unpadded_logits(tiny_bert, tiny_dataset), atol=1e-5, rtol=0)


def test_predict_logits_does_not_depend_on_batch_size(tiny_bert, tiny_dataset, collator):
    one_batch = predict_logits(tiny_bert, tiny_dataset, collator, batch_size=len(TEXTS))
    single_rows = predict_logits(tiny_bert, tiny_dataset, collator, batch_size=1)
    np.testing.assert_allclose(one_batch, single_rows, atol=1e-5, rtol=0)


def test_predict_logits_reports_progress_and_restores_train_mode(tiny_bert, tiny_dataset, collator):
    calls: list[tuple[int, int]] = []
    tiny_bert.train()
    try:
        predict_logits(tiny_bert, tiny_dataset, collator, batch_size=2, on_progress=lambda d, t: calls.append((d, t)))
        assert tiny_bert.training
    finally:
        tiny_bert.eval()
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_predict_logits_accepts_a_torch_formatted_dataset(tiny_bert, tiny_dataset, collator):
    expected = predict_logits(tiny_bert, tiny_dataset, collator, batch_size=2)
    formatted = tiny_dataset.select_columns(["input_ids", "attention_mask", "token_type_ids"]).with_format("torch")
    np.testing.assert_allclose(predict_logits(tiny_bert, formatted, collator, batch_size=2), expected, atol=1e-6)


def test_predict_logits_on_empty_dataset_returns_zero_rows(tiny_bert, tiny_dataset, collator):
    logits = predict_logits(tiny_bert, tiny_dataset.select([]), collator)
    assert logits.shape == (0, 3) and logits.dtype == np.float32


def test_predict_logits_requires_tokenized_data(tiny_bert, tiny_dataset, collator):
    with pytest.raises(UserError, match="tokenize"):
        predict_logits(tiny_bert, tiny_dataset.select_columns(["text", "label"]), collator)


class _NoTokenTypeClassifier(torch.nn.Module):
    """Stands in for DistilBERT: its forward takes no token_type_ids and would fail if given them."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(100, 2)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embedding(input_ids) * mask).sum(1) / mask.sum(1)
        return SimpleNamespace(logits=pooled)


def test_predict_logits_feeds_only_the_inputs_the_model_accepts(tiny_dataset, collator):
    torch.manual_seed(0)
    logits = predict_logits(_NoTokenTypeClassifier(), tiny_dataset, collator, batch_size=3)
    assert logits.shape == (len(TEXTS), 2)

"""distill_core.app.estimate: the time a run will take, told before Start."""
from __future__ import annotations

import pytest

from distill_core.app import estimate
from distill_core.config import DataConfig, TrainConfig


def distill_config(**overrides) -> TrainConfig:
    return TrainConfig(mode="distill", data=overrides.pop("data", DataConfig(source="x")), student="truncate:1",
                       teacher="bundled:minilm-l6", **overrides)


def test_split_sizes_follow_fractions_and_subsamples():
    config = distill_config(epochs=1)
    assert estimate.split_sizes(config, 1000, 500) == (800, 200, 500)
    small = distill_config(epochs=1, data=DataConfig(source="x", train_samples=100, eval_samples=50))
    assert estimate.split_sizes(small, 1000, 500) == (100, 50, 50)
    assert estimate.split_sizes(config, 1000, None) == (640, 160, 200)  # a single file: test carved first
    assert estimate.split_sizes(config, None, None) is None


def test_eta_scales_with_model_size_and_epochs():
    reference = estimate.train_samples_per_s((6, 384))
    assert reference == pytest.approx(estimate.REF_SAMPLES_PER_S)
    assert estimate.train_samples_per_s((12, 768)) == pytest.approx(reference / 8)
    one = estimate.estimate_job(distill_config(epochs=1), None, (1000, 100, 100), None, allow_probe=False)
    two = estimate.estimate_job(distill_config(epochs=2), None, (1000, 100, 100), None, allow_probe=False)
    assert two.seconds > one.seconds > estimate.STARTUP_S
    assert two.phases["training"] == pytest.approx(2 * one.phases["training"])
    assert one.phases["teacher_logits"] > 0 and one.source == "reference"


def test_a_fine_tune_plans_no_teacher_logits():
    config = TrainConfig(mode="finetune", data=DataConfig(source="x"), student="bundled:minilm-l6", epochs=1)
    told = estimate.estimate_job(config, None, (1000, 100, 100), None, allow_probe=False)
    assert told.phases["teacher_logits"] == 0


@pytest.mark.parametrize("seconds, text", [(42, "42 s"), (125, "2 min 05 s"), (3720, "1 h 02 min"), (None, "unknown")])
def test_format_duration(seconds, text):
    assert estimate.format_duration(seconds) == text

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


def past(name: str, precision: str | None, train_s: float, teacher_s: float = 0.01) -> estimate.PastRun:
    return estimate.PastRun(name, "distill", (1, 384), (6, 384),
                            {"train_s_per_example": train_s, "infer_s_per_example": train_s / 3,
                             "teacher_s_per_example": teacher_s}, precision)


def test_past_runs_calibrate_the_training_of_a_run_in_their_own_precision():
    """bf16 autocast made the student's steps ~1.5x and the teacher's pass over the training rows ~2x faster
    here: an fp32 run's costs are not a bf16 run's."""
    measured = [past("fp32", "no", 0.030, teacher_s=0.010), past("bf16", "bf16", 0.020, teacher_s=0.005)]
    for asked, train_s, teacher_s in (("no", 0.030, 0.010), ("bf16", 0.020, 0.005)):
        found = estimate.costs_from_past(distill_config(mixed_precision=asked), measured)
        assert found is not None and found.other_precision is None
        assert found.costs.train_s_per_example == pytest.approx(train_s)
        assert found.costs.infer_s_per_example == pytest.approx(train_s / 3)
        assert found.costs.teacher_s_per_example == pytest.approx(teacher_s)


def test_an_estimate_from_runs_of_another_precision_says_so():
    config = distill_config(mixed_precision="bf16", epochs=1)
    found = estimate.costs_from_past(config, [past("fp32", "no", 0.030), past("old", None, 0.050)])
    assert found is not None and found.costs.train_s_per_example == pytest.approx(0.040)
    assert found.other_precision == "an unrecorded precision, fp32"
    _, source, explanation = estimate.costs_for(config, None, allow_probe=False,
                                                past=[past("fp32", "no", 0.030)])
    assert source == "past runs"
    assert "(trained in fp32; this run trains in bf16, so its training time may differ)" in explanation


def test_a_past_run_records_the_precision_it_trained_in(tmp_path):
    from distill_core import runs

    record = {"mode": "distill", "student": "x", "provenance": {"mixed_precision": "bf16"}}
    run_dir = runs.create_run(tmp_path, "bf16-run", record)
    runs.append_metric(run_dir, {"kind": "phase_end", "phase": "training", "seconds": 4.0, "count": 100})
    runs.append_metric(run_dir, {"kind": "phase_end", "phase": "test_evaluation", "seconds": 3.0, "count": 50})
    runs.set_status(run_dir, "done")
    found = estimate.past_run(run_dir)
    assert found is not None and found.precision == "bf16"
    assert found.per_unit["train_s_per_example"] == pytest.approx(0.04)
    assert found.per_unit["test_s_per_example"] == pytest.approx(0.06)


def test_the_test_scoring_is_calibrated_by_runs_of_the_same_pair_only():
    """The saved model's test scoring runs in fp32 (with the teacher's test pass): its own unit, not validation's
    bf16 cost; a run of another pair does not answer for it."""
    config = distill_config(mixed_precision="bf16", epochs=1)
    student, teacher = estimate.shapes_of(config)
    costs = {"train_s_per_example": 0.02, "infer_s_per_example": 0.004, "teacher_s_per_example": 0.01,
             "test_s_per_example": 0.03}
    same = estimate.PastRun("same", "distill", student, teacher, costs, "bf16")
    deeper = (2 * student[0], student[1])  # twice the layers: its student costs scale down by half
    other = estimate.PastRun("other", "distill", deeper, teacher, {**costs, "test_s_per_example": 0.005}, "bf16")
    told = estimate.costs_from_past(config, [same, other])
    assert told is not None and told.costs.test_s_per_example == pytest.approx(0.03)
    assert estimate.plan(config, (100, 10, 20), told.costs).seconds["test_evaluation"] == pytest.approx(20 * 0.03)
    told = estimate.costs_from_past(config, [other])  # validation's cost, scaled, plus the teacher's pass
    assert told is not None and told.costs.test_s_per_example == pytest.approx(0.004 / 2 + 0.01)

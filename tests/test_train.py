"""The training loop end to end on the tiny teacher: fine-tune, then distil truncate:1 from the result.

Runs go through the same path as the CLI and the worker: `train.prepare` -> `runs.create_run` -> `train.execute`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from distill_core import loop, runs, storage, train
from distill_core.batching import cache_root
from distill_core.config import DataConfig, TrainConfig

SEED_METRICS = ("training_loss", "training_kd_loss", "training_accuracy", "valid_loss", "valid_accuracy")
TIMING_FIELDS = {"seconds", "samples_per_s", "time"}
TRAIN_ROWS, VALID_ROWS, TEST_ROWS = 192, 48, 80  # tiny_data_dir: 240 train rows -> 80/20, and 80 test rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(root: Path, name: str, config: TrainConfig, on_event=None) -> tuple[Path, dict, list[dict]]:
    """prepare + create_run + execute; returns the run folder, the result and every event."""
    events: list[dict] = []
    run_dir = root / name  # created below, after every check in prepare passed

    def record(event: dict) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event, run_dir)

    prepared = train.prepare(config, on_event=record)
    assert runs.create_run(root, name, train.run_record(prepared)) == run_dir.resolve()
    result = train.execute(prepared, run_dir, on_event=record)
    return run_dir, result, events


def rows(run_dir: Path, kind: str) -> list[dict]:
    return [row for row in runs.read_metrics(run_dir) if row["kind"] == kind]


def without_timing(rows_: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows_]


def teacher_phases(events: list[dict]) -> list[str]:
    return [e["phase"] for e in events if e["kind"] == "phase" and e["phase"].startswith("teacher logits for")]


@pytest.fixture(scope="module", autouse=True)
def _module_isolation(tmp_path_factory):
    """conftest isolates each test, but this module's runs are module fixtures, set up before that applies:
    without this they would read and write ~/.cache/kd_studio (and find teacher logits of earlier sessions)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("KD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kd-cache"))
        patch.setenv("KD_RUNS_DIR", str(tmp_path_factory.getbasetemp() / "kd-runs"))
        yield


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def data_config(tiny_data_dir) -> DataConfig:
    return DataConfig(source=str(tiny_data_dir), max_length=32)


@pytest.fixture(scope="module")
def finetuned(root, tiny_teacher_dir, data_config):
    """The tiny teacher fine-tuned on labels for 3 epochs of 12 steps (the teacher of the distillation tests)."""
    config = TrainConfig(mode="finetune", data=data_config, student=str(tiny_teacher_dir), epochs=3, lr=3e-3,
                         batch_size=16, optimizer="adam", dropout=0.1, patience=None, log_every_steps=3)
    return run(root, "finetuned", config)


def distill_config(data_config, teacher: Path, **overrides) -> TrainConfig:
    base = dict(mode="distill", data=data_config, student="truncate:1", teacher=str(teacher), epochs=2, lr=1e-3,
                batch_size=32, patience=None, log_every_steps=2)
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def distilled(root, finetuned, data_config):
    teacher = finetuned[0]  # a run folder is a model spec: its model/ is loaded
    return run(root, "distilled", distill_config(data_config, teacher))


# ---------------------------------------------------------------- fine-tuning

def test_finetune_writes_step_and_epoch_rows(finetuned):
    run_dir, result, _ = finetuned
    assert result["state"] == "done" and result["epochs_done"] == 3
    steps, epochs = rows(run_dir, "step"), rows(run_dir, "epoch")
    assert [row["step"] for row in steps] == list(range(3, 37, 3))  # every 3rd of 36 steps
    for row in steps:
        assert {"step", "epoch", "loss", "ce_loss", "kd_loss", "lr", "samples_per_s"} <= row.keys()
        assert row["kd_loss"] is None and row["loss"] == pytest.approx(row["ce_loss"])
    assert [row["epoch"] for row in epochs] == [1, 2, 3]
    for row in epochs:
        assert set(SEED_METRICS) <= row.keys()
        assert row["training_kd_loss"] is None  # no teacher, no KD term
        assert all(math.isfinite(row[name]) for name in SEED_METRICS if name != "training_kd_loss")
    status = runs.read_status(run_dir)
    assert status["state"] == "done" and status["test_accuracy"] == result["eval"]["student"]["accuracy"]


def test_the_ce_term_trains(finetuned):
    """alpha=1 (labels only): the loss falls over 36 steps and the model learns the class words."""
    run_dir, result, _ = finetuned
    steps, epochs = rows(run_dir, "step"), rows(run_dir, "epoch")
    assert steps[-1]["loss"] < 0.8 * steps[0]["loss"]
    assert epochs[-1]["training_loss"] < 0.85 * epochs[0]["training_loss"]
    assert epochs[-1]["valid_accuracy"] > 0.5  # 4 classes: chance is 0.25
    assert result["eval"]["student"]["accuracy"] > 0.5


def test_accuracies_are_exact_fractions_of_the_split_sizes(finetuned):
    run_dir, _, _ = finetuned
    for row in rows(run_dir, "epoch"):
        for name, size in (("training_accuracy", TRAIN_ROWS), ("valid_accuracy", VALID_ROWS)):
            correct = row[name] * size
            assert correct == pytest.approx(round(correct), abs=1e-6), (name, row[name])
    evaluation = storage.read_json(runs.eval_path(run_dir))
    assert evaluation["student"]["n_examples"] == TEST_ROWS
    assert evaluation["student"]["accuracy"] * TEST_ROWS == pytest.approx(
        round(evaluation["student"]["accuracy"] * TEST_ROWS), abs=1e-6)


def test_run_folder_holds_config_and_a_safetensors_model(finetuned):
    from transformers import AutoModelForSequenceClassification

    run_dir, _, _ = finetuned
    config = storage.read_json(run_dir / "config.json")
    assert config["mode"] == "finetune" and config["lr"] == 3e-3
    assert config["provenance"]["label_names"] == ["World", "Sports", "Business", "Sci/Tech"]
    assert config["provenance"]["split_sizes"] == {"train": TRAIN_ROWS, "validation": VALID_ROWS,
                                                  "test": TEST_ROWS}
    model_dir = runs.model_dir(run_dir)
    assert (model_dir / "model.safetensors").is_file()
    assert not list(model_dir.glob("*.bin"))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    assert model.config.id2label[1] == "Sports"


# ---------------------------------------------------------------- distillation

def test_distill_writes_kd_metrics_and_eval(distilled, finetuned):
    from transformers import AutoModelForSequenceClassification

    run_dir, result, _ = distilled
    assert result["state"] == "done" and result["epochs_done"] == 2
    epochs = rows(run_dir, "epoch")
    assert len(epochs) == 2
    for row in epochs:
        assert all(isinstance(row[name], float) and math.isfinite(row[name]) for name in SEED_METRICS)
        assert row["training_kd_loss"] > 0
    for row in rows(run_dir, "step"):
        assert row["kd_loss"] is not None
        assert row["loss"] == pytest.approx(0.5 * row["ce_loss"] + 0.5 * row["kd_loss"], rel=1e-6)  # float32 parts
    evaluation = storage.read_json(runs.eval_path(run_dir))
    assert {"student", "teacher", "accuracy_retained"} <= evaluation.keys()
    assert 0.0 <= evaluation["student"]["agreement"] <= 1.0
    assert evaluation["teacher"]["spec"] == str(finetuned[0])
    # The teacher's test accuracy equals that of the fine-tuned run's own evaluation: the same model.
    finetune_eval = storage.read_json(runs.eval_path(finetuned[0]))
    assert evaluation["teacher"]["accuracy"] == pytest.approx(finetune_eval["student"]["accuracy"])
    student = AutoModelForSequenceClassification.from_pretrained(runs.model_dir(run_dir), use_safetensors=True)
    assert student.config.num_hidden_layers == 1


def test_same_seed_gives_identical_metrics_and_reuses_teacher_logits(root, distilled, finetuned, data_config):
    first_dir, _, first_events = distilled
    assert teacher_phases(first_events)  # the first distillation from this teacher computed its logits
    cache_files = list((cache_root() / "teacher_logits").glob("*.npz"))
    mtimes = {path: path.stat().st_mtime_ns for path in cache_files}
    second_dir, _, second_events = run(root, "distilled-again", distill_config(data_config, finetuned[0]))
    assert teacher_phases(second_events) == []  # every logit came from the cache
    assert {path: path.stat().st_mtime_ns for path in cache_files} == mtimes
    for kind in ("step", "epoch"):
        assert without_timing(rows(second_dir, kind)) == without_timing(rows(first_dir, kind))
    first_eval, second_eval = (storage.read_json(runs.eval_path(d)) for d in (first_dir, second_dir))
    assert first_eval["student"]["confusion_matrix"] == second_eval["student"]["confusion_matrix"]


def test_a_bf16_run_takes_its_kd_targets_in_bf16_and_its_teacher_accuracy_in_fp32(root, finetuned, tiny_data_dir,
                                                                                   monkeypatch):
    """On a CPU with native bf16 (simulated: the flags decide, the arithmetic runs on any CPU) a run that trains in
    bf16 runs the teacher over its training rows under bf16 autocast and caches those logits apart from fp32's; the
    test split's pass stays fp32, so both runs report the same teacher accuracy, from one fp32 pass."""
    from distill_core import hardware

    monkeypatch.setattr(hardware, "detect", lambda: hardware.Hardware(
        "cpu", cpu_flags=frozenset({"avx2", "avx512f", "avx512_bf16"}), cpu_capability="AVX512"))
    data = DataConfig(source=str(tiny_data_dir), max_length=24)  # a cache file of its own: no other test's logits
    made = [run(root, f"kd-targets-{precision}", distill_config(data, finetuned[0], mixed_precision=precision,
                                                                 epochs=1, max_steps=2))
            for precision in ("no", "bf16")]
    assert [storage.read_json(d / runs.CONFIG_FILE)["provenance"]["teacher_logits_precision"]
            for d, _, _ in made] == ["fp32", "bf16"]
    assert [len(teacher_phases(events)) for _, _, events in made] == [2, 1]  # the bf16 run reused the fp32 test pass
    from distill_core import models, teacher_cache

    key = models.model_fingerprint(None, str(finetuned[0]))  # other tests of the module cache other teachers
    fp32_file, bf16_file = (teacher_cache.cache_file(key, 24, precision) for precision in ("fp32", "bf16"))
    assert fp32_file.is_file() and bf16_file.is_file()
    with np.load(fp32_file) as fp32, np.load(bf16_file) as bf16:
        fp32_logits = dict(zip(fp32["ids"].tolist(), fp32["logits"], strict=True))
        bf16_logits = dict(zip(bf16["ids"].tolist(), bf16["logits"], strict=True))
    assert bf16_logits.keys() < fp32_logits.keys()  # training rows only; fp32 also holds the test split's
    pairs = np.stack([(bf16_logits[i], fp32_logits[i]) for i in bf16_logits])
    assert not np.array_equal(pairs[:, 0], pairs[:, 1])  # bf16 ran
    assert np.abs(pairs[:, 0] - pairs[:, 1]).max() < 0.05 * np.abs(pairs[:, 1]).max()  # bf16's rounding only
    fp32_eval, bf16_eval = (storage.read_json(runs.eval_path(d)) for d, _, _ in made)
    assert fp32_eval["teacher"]["accuracy"] == bf16_eval["teacher"]["accuracy"]


def test_alpha_1_distillation_is_label_only_training(root, finetuned, data_config):
    """alpha=1 trains exactly like fine-tuning the same student (the KD term is still measured and logged)."""
    teacher = str(finetuned[0])
    common = dict(data=data_config, student="truncate:1", teacher=teacher, epochs=1, lr=1e-3, batch_size=16,
                  max_steps=4, log_every_steps=1, patience=None)
    distill_dir, _, _ = run(root, "alpha-1", TrainConfig(mode="distill", alpha=1.0, **common))
    finetune_dir, _, _ = run(root, "finetune-truncated", TrainConfig(mode="finetune", **common))
    distill_steps, finetune_steps = rows(distill_dir, "step"), rows(finetune_dir, "step")
    assert len(distill_steps) == len(finetune_steps) == 4
    for d, f in zip(distill_steps, finetune_steps, strict=True):
        assert d["loss"] == pytest.approx(d["ce_loss"], rel=1e-6)  # total = 1 * CE + 0 * KD
        assert d["kd_loss"] is not None and d["kd_loss"] > 0
        assert f["kd_loss"] is None
        assert d["loss"] == pytest.approx(f["loss"], rel=1e-5)
    d_epoch, f_epoch = rows(distill_dir, "epoch")[0], rows(finetune_dir, "epoch")[0]
    assert d_epoch["valid_loss"] == pytest.approx(f_epoch["valid_loss"], rel=1e-5)
    assert d_epoch["training_accuracy"] == f_epoch["training_accuracy"]


def _word_embeddings(model_dir: Path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(model_dir).get_input_embeddings().weight.detach()


def test_frozen_word_embeddings_stay_the_teachers_while_the_layers_train(root, finetuned, data_config):
    teacher = finetuned[0]
    common = dict(epochs=1, max_steps=4, lr=1e-2, log_every_steps=1)
    frozen_dir, _, _ = run(root, "frozen-embeddings", distill_config(data_config, teacher, freeze_embeddings=True,
                                                                     **common))
    trained_dir, _, _ = run(root, "trained-embeddings", distill_config(data_config, teacher, **common))
    teacher_table = _word_embeddings(teacher / "model")
    assert _word_embeddings(frozen_dir / "model").equal(teacher_table)  # truncate:N copies the teacher's table
    assert not _word_embeddings(trained_dir / "model").equal(teacher_table)
    frozen_steps, trained_steps = rows(frozen_dir, "step"), rows(trained_dir, "step")
    assert frozen_steps[0]["loss"] == pytest.approx(trained_steps[0]["loss"], rel=1e-6)  # same start
    assert frozen_steps[-1]["loss"] != pytest.approx(trained_steps[-1]["loss"], rel=1e-6)  # the rest trained apart
    notes = storage.read_json(frozen_dir / "config.json")["provenance"]
    assert notes["student_trained_parameters"] == notes["student_parameters"] - teacher_table.numel()


# ---------------------------------------------------------------- cancel and early stopping

def test_cancel_after_the_first_step(root, finetuned, data_config):
    def stop_after_first_step(event: dict, run_dir: Path) -> None:
        if event["kind"] == "step" and event["step"] == 1:
            runs.request_stop(run_dir)

    config = distill_config(data_config, finetuned[0], log_every_steps=1, epochs=3)
    run_dir, result, events = run(root, "cancelled", config, on_event=stop_after_first_step)
    assert result["state"] == "cancelled"
    assert result["global_step"] == 1
    assert runs.read_status(run_dir)["state"] == "cancelled"
    steps = rows(run_dir, "step")
    assert [row["step"] for row in steps] == [1]  # metrics written before the stop are kept
    epochs = rows(run_dir, "epoch")
    assert len(epochs) == 1 and epochs[0]["partial"] is True
    assert not runs.eval_path(run_dir).exists()  # a cancelled run is not evaluated
    assert all(e["kind"] != "epoch" or e["epoch"] == 1 for e in events)


def test_early_stopping_when_validation_cannot_improve(root, tiny_teacher_dir, data_config):
    """A learning rate of 1e-7 (the smallest allowed) leaves the predictions as they are: epoch 2 cannot beat
    epoch 1, patience 1 stops."""
    config = TrainConfig(mode="finetune", data=DataConfig(source=data_config.source, max_length=32,
                                                          train_samples=32),
                         student=str(tiny_teacher_dir), epochs=5, lr=1e-7, batch_size=32, patience=1)
    run_dir, result, events = run(root, "early-stop", config)
    assert result["state"] == "done"
    assert result["epochs_done"] == 2
    assert [row["epoch"] for row in rows(run_dir, "epoch")] == [1, 2]
    stops = [e for e in events if e["kind"] == "early_stop"]
    assert len(stops) == 1 and stops[0]["epoch"] == 2
    epochs = rows(run_dir, "epoch")
    assert epochs[1]["valid_accuracy"] == epochs[0]["valid_accuracy"]
    assert runs.read_status(run_dir)["state"] == "done"


# ---------------------------------------------------------------- the loop's bookkeeping (no training)

def test_early_stopping_counts_epochs_without_a_strictly_better_accuracy():
    stopper = loop.EarlyStopping(patience=2)
    assert stopper.update(0.5) and not stopper.should_stop
    assert not stopper.update(0.5)  # a tie is no improvement: the earlier best model stays
    assert not stopper.should_stop
    assert not stopper.update(0.25) and stopper.should_stop
    assert stopper.state_dict() == {"best_accuracy": 0.5, "epochs_without_improvement": 2}
    resumed = loop.EarlyStopping(patience=2)  # what a resumed run rebuilds from its checkpoint
    resumed.load_state_dict(stopper.state_dict())
    assert resumed == stopper and resumed.should_stop
    never = loop.EarlyStopping(patience=None)
    for _ in range(5):
        never.update(0.1)
    assert not never.should_stop and never.epochs_without_improvement == 4


@pytest.mark.parametrize("optimizer", ["adamw", "adam"])
def test_the_update_is_one_fused_kernel_with_the_loops_arithmetic(optimizer):
    import torch

    def model_with_grads():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 4))
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        return model

    config = TrainConfig(mode="distill", data=DataConfig(source="ag_news_sample"), student="truncate:1",
                         optimizer=optimizer, lr=1e-2, weight_decay=0.1, warmup_ratio=0.0)
    fused_model, loop_model = model_with_grads(), model_with_grads()
    fused, _ = train._optimizer_and_schedule(config, fused_model, total_steps=10)
    assert all(group["fused"] for group in fused.param_groups)
    # The same groups and settings through PyTorch's default (a loop over the weights) as the reference.
    twin = {id(a): b for a, b in zip(fused_model.parameters(), loop_model.parameters(), strict=True)}
    reference = type(fused)([{**group, "params": [twin[id(p)] for p in group["params"]], "fused": None}
                             for group in fused.param_groups])
    for _ in range(3):
        fused.step()
        reference.step()
    for a, b in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(fused_model[0].weight, model_with_grads()[0].weight)  # the steps did update

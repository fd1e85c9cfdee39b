"""The per-batch objective (objective.batch_loss), on-device loss totals (loop.LossTotals), and intermediate-layer
distillation end to end: a tiny run, its projection, and bad layer settings refused before a run exists."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import LABEL_NAMES
from runs_support import tiny_config, trained_run

from distill_core import cli, objective
from distill_core.config import DataConfig, TrainConfig
from distill_core.layer_losses import hidden_mse
from distill_core.loop import LossTotals
from distill_core.losses import kd_kl_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TEXTS = ["Minister talks after election", "The team won the match", "Oil prices lift bank shares",
         "Scientists test a new chip for space"]
LAYER_WEIGHTS = {"hidden_weight": 0.5, "attention_weight": 2.0, "cosine_weight": 1.5}


def distill_config(**changes) -> TrainConfig:
    return TrainConfig(mode="distill", data=DataConfig(source="unused"), student="config:L1-H128", teacher="t",
                       alpha=0.3, temperature=2.0, **changes)


@pytest.fixture(scope="module")
def pair(tiny_teacher_dir):
    """The tiny teacher (2 layers x 64, 2 heads) in eval mode, its tokenizer, and a batch of 4 rows."""
    from distill_core import models

    teacher, tokenizer = models.load_classifier(str(tiny_teacher_dir), LABEL_NAMES, require_trained=True)
    teacher.eval()
    batch = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    with torch.no_grad():
        batch["teacher_logits"] = teacher(**batch).logits
    return teacher, batch


def student_of(spec: str, teacher):
    from distill_core import models

    torch.manual_seed(0)
    return models.build_student(spec, teacher, LABEL_NAMES, dropout=0.0).eval()  # eval: one forward = the next


# ---- labels, KD and unlabelled rows ------------------------------------------------------------------------


def test_ce_averages_labelled_rows_and_kd_covers_every_row(pair):
    teacher, batch = pair
    student = student_of("truncate:1", teacher)
    labels = torch.tensor([-100, 2, -100, 1])  # rows 0 and 2 are unlabelled transfer text
    loss = objective.batch_loss(student, {**batch, "labels": labels}, teacher, None, distill_config())
    logits = student(**{k: v for k, v in batch.items() if k != "teacher_logits"}).logits
    assert loss.ce.item() == pytest.approx(F.cross_entropy(logits[[1, 3]], labels[[1, 3]]).item(), rel=1e-5)
    assert loss.kd.item() == pytest.approx(kd_kl_loss(logits, batch["teacher_logits"], 2.0).item(), rel=1e-5)
    assert loss.total.item() == pytest.approx(0.3 * loss.ce.item() + 0.7 * loss.kd.item(), rel=1e-5)
    assert loss.hidden.item() == loss.attention.item() == loss.cosine.item() == 0.0  # weights 0: off


def test_a_batch_without_labels_trains_on_the_teacher_alone(pair):
    teacher, batch = pair
    student = student_of("truncate:1", teacher)
    loss = objective.batch_loss(student, {**batch, "labels": torch.full((4,), -100)}, teacher, None,
                                distill_config())
    assert loss.ce.item() == 0.0  # not NaN (F.cross_entropy's mean over no labelled row)
    assert loss.total.item() == pytest.approx(0.7 * loss.kd.item()) and loss.kd.item() > 0
    loss.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def test_a_finetune_trains_on_the_labels_only(pair):
    teacher, batch = pair
    student = student_of("truncate:1", teacher)
    labels = torch.tensor([0, 1, 2, 3])
    config = dataclasses.replace(distill_config(), mode="finetune", teacher=None)
    loss = objective.batch_loss(student, {k: v for k, v in batch.items() if k != "teacher_logits"} | {
        "labels": labels}, None, None, config)
    assert loss.total.item() == pytest.approx(loss.ce.item()) and loss.kd.item() == 0.0


# ---- layer terms -------------------------------------------------------------------------------------------


def test_layer_terms_train_the_student_and_projection_never_the_teacher(pair):
    teacher, batch = pair
    config = distill_config(**LAYER_WEIGHTS)
    student = student_of("config:L1-H128", teacher)  # 128 wide, 2 heads: projected to the teacher's 64
    objective.ready_for_layer_terms(config, student, teacher)
    projection = objective.make_projection(config, student, teacher)
    assert (projection.in_features, projection.out_features) == (128, 64)
    labels = torch.tensor([0, 1, 2, 3])
    loss = objective.batch_loss(student, {**batch, "labels": labels}, teacher, projection, config)
    expected = 0.3 * loss.ce + 0.7 * loss.kd + 0.5 * loss.hidden + 2.0 * loss.attention + 1.5 * loss.cosine
    assert loss.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert min(loss.hidden.item(), loss.attention.item(), loss.cosine.item()) > 0
    # the 1-layer student's only layer learns from the teacher's last (evenly spaced map: [2])
    inputs = {k: v for k, v in batch.items() if k != "teacher_logits"}
    hidden_S = student(**inputs, output_hidden_states=True).hidden_states
    with torch.no_grad():
        hidden_T = teacher(**inputs, output_hidden_states=True).hidden_states
    assert loss.hidden.item() == pytest.approx(
        hidden_mse(hidden_S[1], hidden_T[2], inputs["attention_mask"], projection).item(), rel=1e-5)
    loss.total.backward()
    assert projection.weight.grad is not None and projection.weight.grad.abs().sum() > 0
    assert student.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0  # the attention KL
    assert all(p.grad is None for p in teacher.parameters())


def test_live_teacher_logits_equal_the_cached_ones(pair):
    teacher, batch = pair
    config = distill_config(hidden_weight=1.0)
    student = student_of("config:L1-H64", teacher)  # fresh weights: far from the teacher, a KD term well above 0
    live = objective.batch_loss(student, {**batch, "labels": torch.tensor([0, 1, 2, 3])}, teacher, None, config)
    cached = objective.batch_loss(student, {**batch, "labels": torch.tensor([0, 1, 2, 3])}, teacher, None,
                                  distill_config())
    assert live.kd.item() > 1e-4 and live.kd.item() == pytest.approx(cached.kd.item(), rel=1e-4)


# ---- loss totals -------------------------------------------------------------------------------------------


def batch_of(terms: dict[str, float], labels: list[int], predictions: list[int]) -> objective.BatchLoss:
    logits = F.one_hot(torch.tensor(predictions), 4).float()
    values = {name: torch.tensor(terms.get(name, 0.0)) for name in objective.TERMS}
    return objective.BatchLoss(**values, logits=logits, labels=torch.tensor(labels))


def test_loss_totals_stay_on_the_device_and_equal_a_hand_sum():
    batches = [
        batch_of({"total": 1.0, "ce": 2.0, "kd": 0.5, "hidden": 3.0}, [0, 1, 2], [0, 1, 0]),        # 3 labelled
        batch_of({"total": 4.0, "ce": 1.0, "kd": 2.0, "hidden": 1.0}, [-100, 3, -100], [1, 3, 2]),  # 1 labelled
        batch_of({"total": 2.0, "ce": 0.0, "kd": 1.0, "hidden": 2.0}, [-100, -100], [0, 0]),        # none
    ]
    totals = LossTotals()
    for batch in batches:
        totals.add(LossTotals.of_batch(batch))
    assert isinstance(totals.sums, torch.Tensor) and totals.sums.dtype == torch.float64  # no Python floats per step
    sums = totals.values()
    # every term times the rows it averaged over: CE over labelled rows, the rest over every row
    assert sums["total"] == 1.0 * 3 + 4.0 * 3 + 2.0 * 2
    assert sums["ce"] == 2.0 * 3 + 1.0 * 1 + 0.0
    assert sums["kd"] == 0.5 * 3 + 2.0 * 3 + 1.0 * 2
    assert sums["hidden"] == 3.0 * 3 + 1.0 * 3 + 2.0 * 2
    assert (sums["correct"], sums["labelled"], totals.count) == (2.0 + 1.0, 4.0, 8)
    means = totals.means()
    assert means["ce"] == 7.0 / 4 and means["correct"] == 3 / 4  # labelled rows only
    assert means["total"] == 19.0 / 8  # not the mean of batch means
    assert math.isnan(LossTotals().means()["total"])


def test_loss_totals_reduce_over_processes_with_accelerate():
    from accelerate import Accelerator

    totals = LossTotals()
    totals.add(LossTotals.of_batch(batch_of({"total": 1.5, "ce": 1.5}, [0, 1], [0, 0])))
    reduced = totals.reduce(Accelerator(cpu=True))  # one process: the sums themselves
    assert reduced.values() == totals.values() and reduced.count == totals.count == 2


# ---- a tiny run end to end ---------------------------------------------------------------------------------


def test_a_layer_distillation_run_logs_its_terms_and_keeps_the_projection_out_of_the_model(
        tmp_path, tiny_data_dir, tiny_teacher_dir):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from distill_core import figures, runs
    from distill_core.checkpoints import PROJECTION_FILE

    base = tiny_config(tiny_data_dir, tiny_teacher_dir, epochs=1)
    config = dataclasses.replace(base, student="config:L1-H128", max_steps=4, log_every_steps=2, **LAYER_WEIGHTS,
                                 data=dataclasses.replace(base.data, train_samples=64, eval_samples=16))
    run_dir = trained_run(tmp_path / "runs", "layers", config)
    assert json.loads((run_dir / "status.json").read_text())["state"] == "done"
    rows = runs.read_metrics(run_dir)
    steps = [row for row in rows if row["kind"] == "step"]
    epoch = next(row for row in rows if row["kind"] == "epoch")
    for term in ("hidden", "attention", "cosine"):
        assert all(row[f"{term}_loss"] > 0 for row in steps)
        assert epoch[f"training_{term}_loss"] > 0
    names = [trace.name for trace in figures.loss_curves(steps).data]
    assert {"hidden MSE (teacher layers)", "attention KL (teacher layers)", "cosine (teacher last layer)"} <= set(names)
    projection = load_file(run_dir / PROJECTION_FILE)
    assert projection["weight"].shape == (64, 128)
    # resume reads the checkpoint, which holds the same projection (Accelerate saves every model it prepared)
    checkpointed = load_file(run_dir / "checkpoint" / "model_1.safetensors")
    assert torch.equal(checkpointed["weight"], projection["weight"])
    model = AutoModelForSequenceClassification.from_pretrained(runs.model_dir(run_dir), use_safetensors=True)
    assert model.config.hidden_size == 128 and not any("projection" in key for key in model.state_dict())
    assert not (runs.model_dir(run_dir) / PROJECTION_FILE).exists()


# ---- bad settings: refused before a run exists --------------------------------------------------------------


@pytest.mark.parametrize(("student", "flags", "match"), [
    ("truncate:1", ["--hidden-weight", "1", "--layer-map", "1,2"],
     r"--layer-map '1,2': layer map: student has 1 layer but 2 teacher layers were given"),
    ("truncate:1", ["--cosine-weight", "1", "--layer-map", "3"],
     r"--layer-map '3': teacher layer 3 is out of range 1\.\.2"),
    ("truncate:1", ["--hidden-weight", "1", "--layer-map", "x"], r"--layer-map 'x': 'x' is not a teacher layer"),
    ("config:L1-H64", ["--attention-weight", "1"], r"--attention-weight 1: the student has 1 attention heads"),
], ids=["wrong-count", "out-of-range", "not-a-number", "different-heads"])
def test_bad_layer_settings_exit_2_naming_the_flag_and_create_no_run(tmp_path, tiny_data_dir, tiny_teacher_dir,
                                                                     capsys, student, flags, match):
    import re

    out = tmp_path / "runs" / "bad"
    code = cli.main(["distill", "--data", str(tiny_data_dir), "--teacher", str(tiny_teacher_dir), "--student", student,
                     "--out", str(out), "--epochs", "1", "--max-steps", "1", "--quiet", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert re.search(match, err[0]), err[0]
    assert not out.exists() and not (tmp_path / "runs").exists()

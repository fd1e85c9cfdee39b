"""Losses against hand-computed values and gradients (distill_core.losses)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill_core.errors import UserError
from distill_core.losses import (
    KD_LOSSES,
    LossParts,
    ce_loss,
    distillation_loss,
    kd_kl_loss,
    kd_mse_loss,
)

# A fixed 2x3 example (batch 2, classes 3) used by the numpy reference computations.
LOGITS_S = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
LOGITS_T = [[2.0, 0.5, -1.0], [0.3, 0.2, 2.5]]
LABELS = [1, 2]


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _np_ce(z_s: np.ndarray, labels: np.ndarray) -> float:
    return float(-_np_log_softmax(z_s)[np.arange(len(labels)), labels].mean())


def _np_kd_kl(z_s: np.ndarray, z_t: np.ndarray, temperature: float) -> float:
    log_p_s = _np_log_softmax(z_s / temperature)
    log_p_t = _np_log_softmax(z_t / temperature)
    kl_per_example = (np.exp(log_p_t) * (log_p_t - log_p_s)).sum(axis=1)
    return float(temperature**2 * kl_per_example.mean())


def _tensors(requires_grad: bool = True):
    logits_S = torch.tensor(LOGITS_S, dtype=torch.float64, requires_grad=requires_grad)
    logits_T = torch.tensor(LOGITS_T, dtype=torch.float64, requires_grad=requires_grad)
    labels = torch.tensor(LABELS)
    return logits_S, logits_T, labels


def _grad_of(loss_fn, logits_S: torch.Tensor) -> torch.Tensor:
    leaf = logits_S.detach().clone().requires_grad_(True)
    loss_fn(leaf).backward()
    return leaf.grad.detach().clone()


def _total_grad(logits_S, labels, logits_T, alpha: float, kd: str) -> torch.Tensor:
    """Gradient of the combined distillation loss at T=2 with respect to the student logits."""
    return _grad_of(
        lambda z: distillation_loss(z, labels, logits_T, alpha=alpha, temperature=2.0, kd=kd).total, logits_S
    )


# ---- values ------------------------------------------------------------------------------------------


def test_ce_matches_numpy_reference():
    logits_S, _, labels = _tensors()
    expected = _np_ce(np.array(LOGITS_S), np.array(LABELS))
    assert ce_loss(logits_S, labels).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 0.5], ids=["T1", "T2", "T4", "T0.5"])
def test_kd_kl_matches_numpy_reference(temperature):
    logits_S, logits_T, _ = _tensors()
    expected = _np_kd_kl(np.array(LOGITS_S), np.array(LOGITS_T), temperature)
    assert kd_kl_loss(logits_S, logits_T, temperature).item() == pytest.approx(expected, rel=1e-6)


def test_hand_derived_values():
    # One example, two classes, T=2, label 0.
    # Student z_S = [0, 0]        -> p_S = [1/2, 1/2]; CE = ln 2 = 0.693147.
    # Teacher z_T = [2 ln 3, 0]  -> z_T/T = [ln 3, 0] -> p_T = [3/4, 1/4].
    # KL(p_T||p_S) = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.304099 - 0.173287 = 0.130812; x T^2 = 0.523248.
    # total (alpha 0.5) = 0.5 * 0.693147 + 0.5 * 0.523248 = 0.608198.
    parts = distillation_loss(
        torch.zeros(1, 2),
        torch.tensor([0]),
        torch.tensor([[2 * math.log(3.0), 0.0]]),
        alpha=0.5,
        temperature=2.0,
    )
    assert parts.ce.item() == pytest.approx(0.693147, abs=1e-6)
    assert parts.kd.item() == pytest.approx(0.523248, abs=1e-6)
    assert parts.total.item() == pytest.approx(0.608198, abs=1e-6)


def test_mse_is_mean_squared_logit_difference():
    logits_S, logits_T, _ = _tensors()
    expected = float(((np.array(LOGITS_S) - np.array(LOGITS_T)) ** 2).mean())
    assert kd_mse_loss(logits_S, logits_T).item() == pytest.approx(expected, rel=1e-9)
    # The temperature is ignored by design (T-scaling and T^2 weighting cancel for MSE).
    assert kd_mse_loss(logits_S, logits_T, 4.0).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("alpha", "kd"),
    [(0.5, "kl"), (0.2, "kl"), (0.7, "mse")],
    ids=["kl-alpha0.5", "kl-alpha0.2", "mse-alpha0.7"],
)
def test_total_is_alpha_mix_of_ce_and_kd(alpha, kd):
    logits_S, logits_T, labels = _tensors()
    parts = distillation_loss(logits_S, labels, logits_T, alpha=alpha, temperature=2.0, kd=kd)
    assert isinstance(parts, LossParts)
    expected_kd = KD_LOSSES[kd](logits_S, logits_T, 2.0).item()
    assert parts.ce.item() == pytest.approx(_np_ce(np.array(LOGITS_S), np.array(LABELS)), rel=1e-6)
    assert parts.kd.item() == pytest.approx(expected_kd, rel=1e-9)
    assert parts.total.item() == pytest.approx(alpha * parts.ce.item() + (1 - alpha) * expected_kd, rel=1e-9)


def test_kl_is_nonnegative_and_zero_for_equal_logits():
    torch.manual_seed(0)
    for _ in range(20):
        logits_S, logits_T = torch.randn(4, 5) * 3, torch.randn(4, 5) * 3
        assert kd_kl_loss(logits_S, logits_T, 2.0).item() >= 0.0
    same = torch.randn(4, 5)
    assert kd_kl_loss(same, same.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-7)
    # A constant shift gives the same softmax, so the KL is zero too.
    assert kd_kl_loss(same, same + 7.0, 3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kl_is_scaled_by_temperature_squared():
    logits_S, logits_T, _ = _tensors(requires_grad=False)
    temperature = 3.0
    unscaled_kl = torch.nn.functional.kl_div(
        torch.log_softmax(logits_S / temperature, dim=-1),
        torch.softmax(logits_T / temperature, dim=-1),
        reduction="batchmean",
    )
    assert kd_kl_loss(logits_S, logits_T, temperature).item() == pytest.approx(9.0 * unscaled_kl.item(), rel=1e-9)


def test_temperature_squared_keeps_gradient_magnitude_comparable():
    # Without T^2 the gradient would shrink ~16x from T=2 to T=8; with it, it stays within a few percent.
    torch.manual_seed(0)
    logits_S, logits_T = torch.randn(8, 4), torch.randn(8, 4)
    grad_norms = {
        temperature: _grad_of(lambda z, t=temperature: kd_kl_loss(z, logits_T, t), logits_S).norm().item()
        for temperature in (2.0, 8.0)
    }
    assert grad_norms[8.0] / grad_norms[2.0] == pytest.approx(1.0, abs=0.1)


# ---- gradients ---------------------------------------------------------------------------------------


def test_ce_gradient_is_softmax_minus_onehot():
    logits_S, _, labels = _tensors()
    grad = _grad_of(lambda z: ce_loss(z, labels), logits_S)
    probs = torch.softmax(logits_S.detach(), dim=-1)
    onehot = torch.nn.functional.one_hot(labels, 3).to(probs.dtype)
    torch.testing.assert_close(grad, (probs - onehot) / 2)


def test_kd_gradient_is_temperature_times_prob_difference():
    # d/dz_S [T^2 * KL] = T^2 * (p_S - p_T) / (T * B) = T * (p_S - p_T) / B
    logits_S, logits_T, _ = _tensors()
    temperature = 2.0
    grad = _grad_of(lambda z: kd_kl_loss(z, logits_T, temperature), logits_S)
    p_S = torch.softmax(logits_S.detach() / temperature, dim=-1)
    p_T = torch.softmax(logits_T.detach() / temperature, dim=-1)
    torch.testing.assert_close(grad, temperature * (p_S - p_T) / 2)


@pytest.mark.parametrize("kd", ["kl", "mse"], ids=["kl", "mse"])
def test_alpha_one_gives_exactly_the_ce_gradient(kd):
    logits_S, logits_T, labels = _tensors()
    grad_total = _total_grad(logits_S, labels, logits_T, alpha=1.0, kd=kd)
    grad_ce = _grad_of(lambda z: ce_loss(z, labels), logits_S)
    assert torch.equal(grad_total, grad_ce)


@pytest.mark.parametrize("kd", ["kl", "mse"], ids=["kl", "mse"])
def test_alpha_zero_gives_exactly_the_kd_gradient(kd):
    logits_S, logits_T, labels = _tensors()
    grad_total = _total_grad(logits_S, labels, logits_T, alpha=0.0, kd=kd)
    grad_kd = _grad_of(lambda z: KD_LOSSES[kd](z, logits_T, 2.0), logits_S)
    assert torch.equal(grad_total, grad_kd)


@pytest.mark.parametrize("kd", ["kl", "mse"], ids=["kl", "mse"])
def test_half_alpha_gradient_has_both_terms(kd):
    # The seed article's CE term was a float (.item()), so its gradient was only the KD part; guard that.
    logits_S, logits_T, labels = _tensors()
    grad_total = _total_grad(logits_S, labels, logits_T, alpha=0.5, kd=kd)
    grad_ce = _grad_of(lambda z: ce_loss(z, labels), logits_S)
    grad_kd = _grad_of(lambda z: KD_LOSSES[kd](z, logits_T, 2.0), logits_S)
    torch.testing.assert_close(grad_total, 0.5 * grad_ce + 0.5 * grad_kd)
    assert not torch.allclose(grad_total, 0.5 * grad_kd)
    assert not torch.allclose(grad_total, 0.5 * grad_ce)


@pytest.mark.parametrize("kd", ["kl", "mse"], ids=["kl", "mse"])
def test_teacher_logits_receive_no_gradient(kd):
    logits_S, logits_T, labels = _tensors(requires_grad=True)
    parts = distillation_loss(logits_S, labels, logits_T, alpha=0.3, temperature=2.0, kd=kd)
    parts.total.backward()
    assert logits_S.grad is not None
    assert logits_T.grad is None


def test_without_teacher_total_is_ce_and_kd_is_zero():
    logits_S, _, labels = _tensors()
    parts = distillation_loss(logits_S, labels, None, alpha=0.3, temperature=2.0)
    assert parts.kd.item() == 0.0
    assert parts.kd.shape == torch.Size([])
    assert parts.total.item() == pytest.approx(parts.ce.item(), rel=0, abs=0)
    assert parts.total.requires_grad and parts.ce.requires_grad
    grad_total = _grad_of(lambda z: distillation_loss(z, labels, alpha=0.3, temperature=2.0).total, logits_S)
    torch.testing.assert_close(grad_total, _grad_of(lambda z: ce_loss(z, labels), logits_S))


def test_parts_are_scalar_tensors_attached_to_the_graph():
    logits_S, logits_T, labels = _tensors()
    parts = distillation_loss(logits_S, labels, logits_T, alpha=0.5, temperature=2.0)
    for part in (parts.total, parts.ce, parts.kd):
        assert isinstance(part, torch.Tensor) and part.dim() == 0 and part.requires_grad


@pytest.mark.parametrize("teacher_dtype", [torch.bfloat16, torch.float32], ids=["teacher-bf16", "teacher-fp32"])
def test_bf16_student_logits_give_a_float32_loss(teacher_dtype):
    torch.manual_seed(0)
    logits_S = torch.randn(4, 3).to(torch.bfloat16).requires_grad_(True)
    logits_T = torch.randn(4, 3).to(teacher_dtype)
    parts = distillation_loss(logits_S, torch.tensor([0, 1, 2, 0]), logits_T, alpha=0.5, temperature=2.0)
    assert parts.total.dtype == torch.float32
    parts.total.backward()
    assert logits_S.grad is not None and logits_S.grad.dtype == torch.bfloat16


# ---- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -0.1, "temperature": 2.0}, "alpha"),
        ({"alpha": 1.5, "temperature": 2.0}, "alpha"),
        ({"alpha": float("nan"), "temperature": 2.0}, "alpha"),
        ({"alpha": 0.5, "temperature": 0.0}, "temperature"),
        ({"alpha": 0.5, "temperature": -1.0}, "temperature"),
        ({"alpha": 0.5, "temperature": float("inf")}, "temperature"),
        ({"alpha": 0.5, "temperature": 2.0, "kd": "cosine"}, "cosine"),
    ],
    ids=["alpha-negative", "alpha-above-one", "alpha-nan", "T-zero", "T-negative", "T-inf", "unknown-kd"],
)
def test_bad_hyperparameters_raise_user_error(kwargs, message):
    logits_S, logits_T, labels = _tensors()
    with pytest.raises(UserError, match=message):
        distillation_loss(logits_S, labels, logits_T, **kwargs)


def test_bad_hyperparameters_raise_even_without_teacher():
    logits_S, _, labels = _tensors()
    with pytest.raises(UserError, match="temperature"):
        distillation_loss(logits_S, labels, alpha=0.5, temperature=0.0)


@pytest.mark.parametrize(
    ("student_shape", "teacher_shape", "labels_len", "message"),
    [
        ((2, 3), (2, 4), 2, "same number of labels"),
        ((2, 3), (2, 3), 3, "labels"),
        ((3,), (3,), 1, "batch, classes"),
    ],
    ids=["teacher-classes", "labels-length", "student-1d"],
)
def test_mismatched_shapes_raise_user_error(student_shape, teacher_shape, labels_len, message):
    with pytest.raises(UserError, match=message):
        distillation_loss(
            torch.zeros(student_shape),
            torch.zeros(labels_len, dtype=torch.long),
            torch.zeros(teacher_shape),
            alpha=0.5,
            temperature=2.0,
        )

"""Intermediate-layer losses against hand-computed values and gradients, and the layer map (layer_losses.py)."""
from __future__ import annotations

import math

import pytest
import torch

from distill_core.config import DataConfig, SettingsError, TrainConfig
from distill_core.layer_losses import (
    attention_kl,
    evenly_spaced_layer_map,
    hidden_cosine,
    hidden_mse,
    parse_layer_map,
)


def _leaf(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def _assert_close(actual: torch.Tensor, expected) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), rtol=1e-9, atol=1e-12)


# ---- hidden-state MSE --------------------------------------------------------------------------------------------


def test_hidden_mse_averages_over_real_tokens_and_dimensions_only():
    # token 0 is real: ((1-0)^2 + (2-4)^2) / (1 token * 2 dims) = 2.5; token 1 is padding and must not count.
    hidden_S = _leaf([[[1.0, 2.0], [5.0, 5.0]]])
    hidden_T = torch.tensor([[[0.0, 4.0], [9.0, 9.0]]], dtype=torch.float64)
    loss = hidden_mse(hidden_S, hidden_T, torch.tensor([[1, 0]]))
    assert loss.item() == pytest.approx(2.5)
    loss.backward()
    # d/dh_S = 2 (h_S - h_T) / (tokens * dims) = [1, -2] on the real token, 0 on the padded one
    _assert_close(hidden_S.grad, [[[1.0, -2.0], [0.0, 0.0]]])


def test_hidden_mse_trains_the_projection_between_widths():
    # student width 1 -> teacher width 2 through W = [[2], [1]]: W h = [2, 1] vs [1, 1] -> (1 + 0) / 2 = 0.5
    projection = torch.nn.Linear(1, 2, bias=False).double()
    with torch.no_grad():
        projection.weight.copy_(torch.tensor([[2.0], [1.0]]))
    hidden_S = _leaf([[[1.0]]])
    loss = hidden_mse(hidden_S, torch.tensor([[[1.0, 1.0]]], dtype=torch.float64), torch.tensor([[1]]), projection)
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    # dL/d(Wh) = 2 (Wh - h_T) / 2 = [1, 0]; dL/dW = [1, 0]^T h = [[1], [0]]; dL/dh = W^T [1, 0] = 2
    _assert_close(projection.weight.grad, [[1.0], [0.0]])
    assert hidden_S.grad.item() == pytest.approx(2.0)


def test_hidden_mse_never_trains_the_teacher():
    hidden_T = _leaf([[[0.0, 4.0]]])
    hidden_mse(_leaf([[[1.0, 2.0]]]), hidden_T, torch.tensor([[1]])).backward()
    assert hidden_T.grad is None


def test_hidden_mse_refuses_different_widths_without_a_projection():
    with pytest.raises(ValueError, match="pass a projection"):
        hidden_mse(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.ones(1, 2))


# ---- attention KL --------------------------------------------------------------------------------------------


# One head, three tokens, the third padded (its key column is 0 in both maps, its query row is garbage).
ATTN_T = [[[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]]]]
ATTN_S = [[[[0.25, 0.75, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]]]
MASK = [[1, 1, 0]]


def test_attention_kl_averages_teacher_to_student_kl_over_real_query_rows():
    # row 0: 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3); row 1: 1 ln(1/0.5) + 0 = ln 2 (0 log 0 = 0);
    # row 2 is padding. Mean over 2 real rows x 1 head.
    loss = attention_kl(_leaf(ATTN_S), torch.tensor(ATTN_T, dtype=torch.float64), torch.tensor(MASK))
    assert loss.item() == pytest.approx((0.5 * math.log(4 / 3) + math.log(2)) / 2)


def test_attention_kl_gradient_is_minus_p_teacher_over_p_student():
    attn_S = _leaf(ATTN_S)
    attention_kl(attn_S, torch.tensor(ATTN_T, dtype=torch.float64), torch.tensor(MASK)).backward()
    # d/dp_S = -p_T / p_S / (2 rows): row 0 [-1, -1/3, 0], row 1 [-1, 0, 0]; padded keys and rows 0, never NaN
    _assert_close(attn_S.grad[0, 0], [[-1.0, -1 / 3, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_attention_kl_is_zero_for_equal_maps_and_averages_heads():
    torch.manual_seed(0)
    scores = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    scores = scores.masked_fill(mask[:, None, None, :] == 0, -1e9)
    attn_T = scores.softmax(-1)
    assert attention_kl(attn_T.clone(), attn_T, mask).item() == pytest.approx(0.0, abs=1e-12)
    attn_S = (scores * 0.5).softmax(-1)
    # brute force: KL of every real row of every head, mean over (real rows x heads)
    rows = [(b, a, q) for b in range(2) for a in range(2) for q in range(4) if mask[b, q]]
    expected = sum(sum(attn_T[b, a, q, k] * math.log(attn_T[b, a, q, k] / attn_S[b, a, q, k])
                       for k in range(4) if mask[b, k]) for b, a, q in rows) / len(rows)
    assert attention_kl(attn_S, attn_T, mask).item() == pytest.approx(float(expected), rel=1e-9)


def test_attention_kl_refuses_different_head_counts():
    with pytest.raises(ValueError, match="same number of heads"):
        attention_kl(torch.zeros(1, 2, 3, 3), torch.zeros(1, 4, 3, 3), torch.ones(1, 3))


# ---- cosine ------------------------------------------------------------------------------------------------


def test_hidden_cosine_is_one_minus_cosine_over_real_tokens():
    # token 0: cos([1,0],[1,1]) = 1/sqrt2; token 1: cos([3,3],[0,-1]) = -1/sqrt2; token 2 is padding.
    hidden_S = _leaf([[[1.0, 0.0], [3.0, 3.0], [7.0, -1.0]]])
    hidden_T = torch.tensor([[[1.0, 1.0], [0.0, -1.0], [1.0, 1.0]]], dtype=torch.float64)
    loss = hidden_cosine(hidden_S, hidden_T, torch.tensor([[1, 1, 0]]))
    assert loss.item() == pytest.approx(((1 - 1 / math.sqrt(2)) + (1 + 1 / math.sqrt(2))) / 2)
    loss.backward()
    # d(1 - cos)/da = -(b / (|a||b|) - (a.b) a / (|a|^3 |b|)), halved (2 real tokens):
    # token 0: -([1,1]/sqrt2 - [1,0]/sqrt2) / 2 = [0, -1/(2 sqrt2)]
    # token 1: -([0,-1]/sqrt18 + 3 [3,3] / (sqrt18^3)) / 2 = -([0,-1] + [1/2, 1/2]) / (2 sqrt18)
    s18 = math.sqrt(18)
    _assert_close(hidden_S.grad[0], [[0.0, -1 / (2 * math.sqrt(2))], [-0.5 / (2 * s18), 0.5 / (2 * s18)], [0.0, 0.0]])


def test_hidden_cosine_ignores_scale_and_uses_the_projection():
    hidden_T = torch.tensor([[[2.0, 4.0]]])
    same_direction = hidden_cosine(torch.tensor([[[1.0, 2.0]]]), hidden_T, torch.ones(1, 1))
    assert same_direction.item() == pytest.approx(0.0, abs=1e-6)
    projection = torch.nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        projection.weight.copy_(torch.tensor([[1.0], [2.0]]))
    assert hidden_cosine(torch.tensor([[[3.0]]]), hidden_T, torch.ones(1, 1), projection).item() \
        == pytest.approx(0.0, abs=1e-6)


# ---- the layer map -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_student", "n_teacher", "expected"), [
    (2, 6, [3, 6]), (3, 6, [2, 4, 6]), (1, 6, [6]), (4, 6, [2, 3, 5, 6]), (6, 6, [1, 2, 3, 4, 5, 6]),
    (4, 2, [1, 1, 2, 2]),
], ids=["2-of-6", "3-of-6", "1-of-6", "4-of-6", "same-depth", "deeper-student"])
def test_evenly_spaced_map_ends_on_the_last_teacher_layer(n_student, n_teacher, expected):
    assert evenly_spaced_layer_map(n_student, n_teacher) == expected
    assert parse_layer_map("", n_student, n_teacher) == expected  # empty = evenly spaced


def test_a_given_map_is_used_as_written():
    assert parse_layer_map("1, 6", 2, 6) == [1, 6]


@pytest.mark.parametrize(("text", "message"), [
    ("2,4,6", r"--layer-map '2,4,6': layer map: student has 2 layers but 3 teacher layers were given"),
    ("2,7", r"teacher layer 7 is out of range 1\.\.6"),
], ids=["wrong-count", "out-of-range"])
def test_a_bad_map_is_refused_in_the_settings_words(text, message):
    with pytest.raises(SettingsError, match=message) as caught:
        parse_layer_map(text, 2, 6)
    assert {problem.field for problem in caught.value.problems} == {"layer_map"}


def test_every_problem_of_a_map_is_said_at_once():
    with pytest.raises(SettingsError) as caught:
        parse_layer_map("7,8,9", 2, 6)
    assert len(caught.value.problems) == 2  # the count and the range
    assert "2 settings to fix" in str(caught.value)


@pytest.mark.parametrize("text", ["a,2", "0,2", "1;2", "2,,4", "-1", "²"])
def test_a_map_that_is_not_layer_numbers_is_a_config_problem(text):
    config = TrainConfig(mode="distill", data=DataConfig(source="x"), student="truncate:1", teacher="t",
                         layer_map=text)
    assert [problem.field for problem in config.problems()] == ["layer_map"]
    with pytest.raises(SettingsError, match="--layer-map"):
        config.validate()
    assert "Layer map must list teacher layers" in config.problems()[0].text({"layer_map": "Layer map"})

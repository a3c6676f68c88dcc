"""Tests of medrefine.losses.near (NeAR loss)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medrefine.losses.near import (
    NeARLoss,
    inverse_frequency_weights,
    near_loss,
    near_loss_terms,
    soft_dice_loss,
)


def test_hand_computed_value():
    # B=1, N=3, K=2
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    target = torch.tensor([[0, 1, 1]])
    latent = torch.tensor([[1.0, 2.0]])
    w = [1.0, 2.0]
    # softmax by hand
    p = [
        [math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)],
        [1 / (1 + math.e), math.e / (1 + math.e)],
        [0.5, 0.5],
    ]
    y = [0, 1, 1]
    ce = sum(-w[y[n]] * math.log(p[n][y[n]]) for n in range(3)) / sum(w[y[n]] for n in range(3))
    dices = []
    for k in range(2):
        inter = sum(p[n][k] for n in range(3) if y[n] == k)
        denom = sum(p[n][k] for n in range(3)) + sum(1 for n in range(3) if y[n] == k)
        dices.append((2 * inter + 1e-5) / (denom + 1e-5))
    dice = 1 - sum(dices) / 2
    expected = ce + 0.2 * dice + 1e-2 * 5.0
    terms = near_loss_terms(logits, target, latent, class_weights=w, lambda_dice=0.2, lambda_latent=1e-2)
    assert float(terms["ce"]) == pytest.approx(ce, rel=1e-5)
    assert float(terms["dice"]) == pytest.approx(dice, rel=1e-5)
    assert float(terms["latent"]) == pytest.approx(5.0)
    assert float(terms["loss"]) == pytest.approx(expected, rel=1e-5)
    module = NeARLoss(2, class_weights=w)
    assert float(module(logits, target, latent)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "labels,class_weight_cap,expected",
    [
        ([0] * 6 + [1] * 3 + [2], 5.0, [1.0, 2.0, 5.0, 5.0]),  # 6/1 capped at 5; absent class gets the cap
        ([0] * 6 + [1] * 3 + [2], 50.0, [1.0, 2.0, 6.0, 50.0]),
        ([1, 1, 0, 0], None, [1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_inverse_frequency_weights(labels, class_weight_cap, expected):
    out = inverse_frequency_weights(torch.tensor(labels), 4, class_weight_cap=class_weight_cap)
    assert out.tolist() == pytest.approx(expected)


def test_old_cap_keywords_still_work_with_a_warning():
    labels = torch.tensor([0] * 6 + [1] * 3 + [2])
    with pytest.warns(DeprecationWarning, match="`cap` is deprecated; use `class_weight_cap`"):
        old = inverse_frequency_weights(labels, 4, cap=5.0)
    assert old.tolist() == inverse_frequency_weights(labels, 4, class_weight_cap=5.0).tolist()
    logits, target = torch.randn(2, 20, 3), torch.randint(0, 3, (2, 20))
    kwargs = {"class_weights": "inverse_frequency"}
    with pytest.warns(DeprecationWarning, match="`weight_cap` is deprecated; use `class_weight_cap`"):
        old = near_loss(logits, target, weight_cap=2.0, **kwargs)
    torch.testing.assert_close(old, near_loss(logits, target, class_weight_cap=2.0, **kwargs))
    with pytest.warns(DeprecationWarning, match="`weight_cap` is deprecated"):
        module = NeARLoss(3, weight_cap=2.0, **kwargs)
    assert module.class_weight_cap == 2.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # defaults
        {"class_weights": "inverse_frequency", "class_weight_cap": 3.0, "lambda_dice": 1.0, "lambda_latent": 0.1,
         "include_background": False, "smooth_nr": 0.0, "smooth_dr": 1e-3},
        {"class_weights": [1.0, 2.0, 0.5]},
    ],
)
def test_module(kwargs):
    """``NeARLoss(K, **kwargs)(x)`` equals ``near_loss(x, **kwargs)``, with the defaults and without."""
    torch.manual_seed(3)
    logits, target, latent = torch.randn(2, 30, 3), torch.randint(0, 3, (2, 30)), torch.randn(2, 5)
    torch.testing.assert_close(NeARLoss(3, **kwargs)(logits, target, latent), near_loss(logits, target, latent, **kwargs),
                               rtol=0, atol=0)
    dense, dense_target = torch.randn(1, 3, 4, 4, 4), torch.randint(0, 3, (1, 1, 4, 4, 4))
    torch.testing.assert_close(NeARLoss(3, **kwargs)(dense, dense_target), near_loss(dense, dense_target, **kwargs),
                               rtol=0, atol=0)


def test_inverse_frequency_errors():
    with pytest.raises(ValueError, match=r"`labels` must lie in \[0, 2\)"):
        inverse_frequency_weights(torch.tensor([0, 2]), 2)
    with pytest.raises(ValueError, match="`class_weight_cap` must be > 0 or None, got 0"):
        inverse_frequency_weights(torch.tensor([0]), 2, class_weight_cap=0)
    with pytest.raises(ValueError, match="`class_weight_cap` must be > 0 or None, got -1"):
        NeARLoss(2, class_weight_cap=-1)


def test_inverse_frequency_mode_uses_batch_weights():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 20, 3), torch.randint(0, 3, (2, 20))
    w = inverse_frequency_weights(target, 3, 10.0)
    a = NeARLoss(3, class_weights="inverse_frequency", class_weight_cap=10.0)(logits, target)
    b = near_loss(logits, target, class_weights=w)
    torch.testing.assert_close(a, b)


def test_ce_matches_torch_and_dice_matches_monai():
    from monai.losses import DiceLoss

    torch.manual_seed(1)
    logits, target = torch.randn(2, 50, 4), torch.randint(0, 4, (2, 50))
    w = torch.tensor([1.0, 3.0, 2.0, 5.0])
    terms = near_loss_terms(logits, target, class_weights=w)
    torch.testing.assert_close(terms["ce"], F.cross_entropy(logits.transpose(1, 2), target, weight=w))
    monai_dice = DiceLoss(softmax=True, to_onehot_y=True, batch=True)(logits.transpose(1, 2), target[:, None])
    torch.testing.assert_close(terms["dice"], monai_dice, atol=1e-5, rtol=1e-5)
    nobg = DiceLoss(softmax=True, to_onehot_y=True, batch=True, include_background=False)
    torch.testing.assert_close(
        soft_dice_loss(logits.transpose(1, 2), target, include_background=False),
        nobg(logits.transpose(1, 2), target[:, None]),
        atol=1e-5,
        rtol=1e-5,
    )


def test_dense_input_equals_points():
    torch.manual_seed(2)
    dense, target = torch.randn(2, 3, 4, 4, 4), torch.randint(0, 3, (2, 4, 4, 4))
    points = dense.flatten(2).transpose(1, 2)
    a = near_loss(dense, target[:, None], class_weights="inverse_frequency")
    b = near_loss(points, target.flatten(1), class_weights="inverse_frequency")
    torch.testing.assert_close(a, b)


def test_gradients_reach_logits_and_latent():
    logits = torch.randn(1, 10, 3, requires_grad=True)
    latent = torch.randn(1, 4, requires_grad=True)
    near_loss(logits, torch.randint(0, 3, (1, 10)), latent).backward()
    assert logits.grad.abs().sum() > 0
    torch.testing.assert_close(latent.grad, 2e-2 * latent.detach())


def test_errors():
    logits = torch.zeros(1, 3, 2)
    with pytest.raises(ValueError, match="Did you mean 'inverse_frequency'"):
        NeARLoss(2, class_weights="inverse_frequncy")
    with pytest.raises(ValueError, match="2 non-negative numbers"):
        NeARLoss(2, class_weights=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"`target` must lie in \[0, 2\)"):
        near_loss(logits, torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match=r"`target` must be \(B, N\)"):
        near_loss(logits, torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="`latent` must be"):
        near_loss(logits, torch.tensor([[0, 1, 1]]), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="must have 3 classes"):
        NeARLoss(3)(logits, torch.tensor([[0, 1, 1]]))
    with pytest.raises(ValueError, match="`lambda_dice` and `lambda_latent` must be >= 0"):
        NeARLoss(2, lambda_dice=-1)


def test_module_defaults_equal_function_defaults():
    """Every argument of ``NeARLoss`` that ``near_loss_terms`` also takes has the function's default."""
    import inspect

    function = inspect.signature(near_loss_terms).parameters
    module = inspect.signature(NeARLoss).parameters
    shared = [k for k in module if k in function]
    assert len(shared) >= 3
    assert {k: module[k].default for k in shared} == {k: function[k].default for k in shared}

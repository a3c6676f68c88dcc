"""Tests for medrefine.losses.partial (losses on labeled voxels only)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medrefine.losses.partial import (
    UNLABELED,
    PartialCEDiceLoss,
    PartialCrossEntropyLoss,
    PartialDiceLoss,
    labeled_mask,
)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _sparse_target(shape=(2, 1, 4, 5, 6), classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, classes, shape, generator=gen)
    target[torch.rand(shape, generator=gen) > 0.2] = UNLABELED
    return target


def test_unlabeled_constant():
    assert UNLABELED == 255
    assert PartialCrossEntropyLoss().ignore_index == UNLABELED
    assert labeled_mask(torch.tensor([0, 255, 1])).tolist() == [True, False, True]


@pytest.mark.parametrize("loss_cls", [PartialCrossEntropyLoss, PartialDiceLoss, PartialCEDiceLoss])
def test_shape_and_backward(loss_cls):
    logits = torch.randn(2, 3, 4, 5, 6, requires_grad=True)
    loss = loss_cls()(logits, _sparse_target())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_ce_hand_computed():
    # voxel 0: logits (0, ln 3), label 1 -> p = 3/4; voxel 1: (0, 0), label 0 -> p = 1/2; voxel 2 unlabeled
    logits = torch.tensor([[[[0.0, 0.0, 5.0]], [[math.log(3.0), 0.0, -5.0]]]], dtype=torch.float64)
    target = torch.tensor([[[[1, 0, UNLABELED]]]])
    expected = (math.log(4.0 / 3.0) + math.log(2.0)) / 2.0
    assert PartialCrossEntropyLoss()(logits, target).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("weight", [None, (0.3, 1.0, 2.0)])
def test_ce_equals_torch_ignore_index(weight):
    logits, target = torch.randn(2, 3, 4, 5, 6), _sparse_target()
    loss = PartialCrossEntropyLoss(weight=weight)(logits, target)
    w = None if weight is None else torch.tensor(weight)
    expected = F.cross_entropy(logits, target[:, 0], weight=w, ignore_index=255)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_dice_hand_computed():
    # probabilities given directly (softmax=False); voxel 2 is unlabeled and must not count
    probs = torch.tensor([[[[0.25, 0.5, 0.9]], [[0.75, 0.5, 0.1]]]], dtype=torch.float64)
    target = torch.tensor([[[[1, 0, UNLABELED]]]])
    s = 1e-5
    dice_bg = (2 * 0.5 + s) / (0.75 + 1.0 + s)
    dice_fg = (2 * 0.75 + s) / (1.25 + 1.0 + s)
    expected = ((1 - dice_bg) + (1 - dice_fg)) / 2.0
    assert PartialDiceLoss(softmax=False)(probs, target).item() == pytest.approx(expected, rel=1e-9)
    # combined loss = weighted sum of the two
    logits = torch.log(probs)
    ce = PartialCrossEntropyLoss()(logits, target).item()
    dice = PartialDiceLoss()(logits, target).item()
    combined = PartialCEDiceLoss(lambda_ce=0.3, lambda_dice=2.0)(logits, target).item()
    assert combined == pytest.approx(0.3 * ce + 2.0 * dice, rel=1e-9)


@pytest.mark.parametrize("loss_cls", [PartialCrossEntropyLoss, PartialDiceLoss, PartialCEDiceLoss])
def test_unlabeled_voxels_are_ignored(loss_cls):
    target = _sparse_target()
    unlabeled = (target == UNLABELED).expand(-1, 3, -1, -1, -1)
    logits = torch.randn(2, 3, 4, 5, 6, requires_grad=True)
    changed = torch.where(unlabeled, torch.randn(2, 3, 4, 5, 6) * 10, logits.detach())
    loss_fn = loss_cls()
    loss = loss_fn(logits, target)
    assert loss.item() == pytest.approx(loss_fn(changed, target).item(), rel=1e-6)
    loss.backward()
    assert logits.grad[unlabeled].abs().max().item() == 0.0
    assert logits.grad[~unlabeled].abs().max().item() > 0.0


def test_custom_ignore_index_and_target_layouts():
    logits, target = torch.randn(2, 3, 4, 5, 6), _sparse_target()
    reference = PartialCEDiceLoss()(logits, target).item()
    relabeled = torch.where(target == UNLABELED, torch.full_like(target, -1), target)
    assert PartialCEDiceLoss(ignore_index=-1)(logits, relabeled).item() == pytest.approx(reference)
    assert PartialCEDiceLoss()(logits, target[:, 0]).item() == pytest.approx(reference)  # (B, *spatial)
    assert PartialCEDiceLoss()(logits, target.float()).item() == pytest.approx(reference)  # MONAI float labels


def test_no_labeled_voxel_gives_zero_not_nan():
    logits = torch.randn(1, 2, 3, 3, 3, requires_grad=True)
    target = torch.full((1, 1, 3, 3, 3), UNLABELED)
    for loss_cls in (PartialCrossEntropyLoss, PartialDiceLoss, PartialCEDiceLoss):
        loss = loss_cls()(logits, target)
        assert loss.item() == 0.0
        loss.backward()
        assert torch.isfinite(logits.grad).all()


def test_reduction_none_map():
    logits, target = torch.randn(2, 3, 4, 5, 6), _sparse_target()
    per_voxel = PartialCrossEntropyLoss(reduction="none")(logits, target)
    assert per_voxel.shape == (2, 1, 4, 5, 6)
    assert per_voxel[target == UNLABELED].abs().max().item() == 0.0


def test_errors():
    logits = torch.randn(1, 2, 4, 4, 4)
    with pytest.raises(ValueError, match=r"`target` must have shape \(B, 1, \*spatial\)"):
        PartialCrossEntropyLoss()(logits, torch.zeros(1, 1, 4, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\) or the ignore value 255, got \[3\]"):
        PartialDiceLoss()(logits, torch.full((1, 1, 4, 4, 4), 3))
    with pytest.raises(ValueError, match="integer class indices"):
        PartialCrossEntropyLoss()(logits, torch.full((1, 1, 4, 4, 4), 0.5))
    with pytest.raises(ValueError, match="Did you mean 'mean'"):
        PartialCrossEntropyLoss(reduction="meen")
    with pytest.raises(ValueError, match="`lambda_dice` must be >= 0"):
        PartialCEDiceLoss(lambda_dice=-1.0)
    with pytest.raises(ValueError, match=r"`input` must be floating point logits"):
        PartialCrossEntropyLoss()(torch.zeros(1, 2, 4, 4, 4, dtype=torch.long), torch.zeros(1, 1, 4, 4, 4))
    with pytest.raises(ValueError, match="`weight` must have one value per class"):
        PartialCrossEntropyLoss(weight=(1.0, 2.0, 3.0))(logits, torch.zeros(1, 1, 4, 4, 4, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"lambda_ce": 0.3, "lambda_dice": 2.0, "include_background": False, "smooth_nr": 0.0, "smooth_dr": 1e-3,
          "batch": True, "weight": [1.0, 2.0, 0.5]}],
)
def test_module(kwargs):
    """``PartialCEDiceLoss(**kw)`` is ``lambda_ce * PartialCrossEntropyLoss + lambda_dice * PartialDiceLoss`` built
    from the same arguments; the shared arguments' defaults agree."""
    import inspect

    combined = inspect.signature(PartialCEDiceLoss).parameters
    for part in (PartialCrossEntropyLoss, PartialDiceLoss):
        params = inspect.signature(part).parameters
        assert all(params[k].default == combined[k].default for k in params if k in combined)
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 4, 5, 6, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 1, 4, 5, 6), generator=gen)
    target[torch.rand(target.shape, generator=gen) > 0.3] = UNLABELED
    lambda_ce, lambda_dice = kwargs.get("lambda_ce", 1.0), kwargs.get("lambda_dice", 1.0)
    ce = PartialCrossEntropyLoss(weight=kwargs.get("weight"))
    dice_kwargs = {k: v for k, v in kwargs.items() if k in ("include_background", "smooth_nr", "smooth_dr", "batch")}
    dice = PartialDiceLoss(**dice_kwargs)
    expected = lambda_ce * ce(logits, target) + lambda_dice * dice(logits, target)
    torch.testing.assert_close(PartialCEDiceLoss(**kwargs)(logits, target), expected, rtol=0, atol=0)


def test_partial_dice_equals_monai_dice_on_fully_labeled_targets():
    """With every voxel labeled, PartialDiceLoss is MONAI's DiceLoss(softmax=True, to_onehot_y=True)."""
    from monai.losses import DiceLoss

    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 3, 4, 5, 6, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 1, 4, 5, 6), generator=gen)
    torch.testing.assert_close(PartialDiceLoss()(logits, target),
                               DiceLoss(softmax=True, to_onehot_y=True)(logits, target), rtol=1e-10, atol=1e-10)

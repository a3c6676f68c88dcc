"""Tests for medrefine.losses.variance (PA-Seg's variance-minimisation loss)."""

from __future__ import annotations

import pytest
import torch

from medrefine.losses.variance import VarianceMinimizationLoss, variance_minimization_loss


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _weighted_variance(p, x):
    mean = sum(a * b for a, b in zip(p, x)) / sum(p)
    return sum(a * (b - mean) ** 2 for a, b in zip(p, x)) / sum(p)


def test_hand_computed():
    # three voxels, intensities 0, 1, 4; class-1 probabilities 0.0, 0.5, 1.0
    image = torch.tensor([[[0.0, 1.0, 4.0]]], dtype=torch.float64)  # (1, 1, 3)
    fg = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    probs = torch.stack([1 - fg, fg]).unsqueeze(0)  # (1, 2, 3)
    # class 0: weights 1, .5, 0 -> mean 1/3, variance (1*(1/9) + .5*(4/9)) / 1.5 = 2/9
    # class 1: weights 0, .5, 1 -> mean 3, variance (.5*4 + 1*1) / 1.5 = 2
    expected = 2.0 / 9.0 + 2.0
    assert _weighted_variance([1, 0.5, 0], [0, 1, 4]) == pytest.approx(2.0 / 9.0)
    assert variance_minimization_loss(probs, image).item() == pytest.approx(expected, rel=1e-12)
    assert variance_minimization_loss(probs, image, include_background=False).item() == pytest.approx(2.0, rel=1e-12)


def test_batch_mean_channels_sum_and_mask():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64), 1)
    image = torch.randn(2, 2, 4, 5, generator=gen, dtype=torch.float64)
    mask = (torch.rand(2, 1, 4, 5, generator=gen) > 0.3).double()
    expected = 0.0
    for b in range(2):
        keep = mask[b, 0].flatten() > 0
        for c in range(3):
            for ch in range(2):
                p = probs[b, c].flatten()[keep].tolist()
                x = image[b, ch].flatten()[keep].tolist()
                expected += _weighted_variance(p, x)
    expected /= 2
    assert variance_minimization_loss(probs, image, mask=mask).item() == pytest.approx(expected, rel=1e-10)


def test_zero_for_piecewise_constant_image_and_matching_prediction():
    image = torch.tensor([[[1.0, 1.0, 5.0, 5.0]]])
    probs = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])
    assert variance_minimization_loss(probs, image).item() == pytest.approx(0.0, abs=1e-7)


def test_empty_class_gives_no_nan():
    probs = torch.zeros(1, 2, 3, 3)
    probs[:, 0] = 1.0
    assert torch.isfinite(variance_minimization_loss(probs, torch.randn(1, 1, 3, 3)))


def test_module():
    """``VarianceMinimizationLoss()(probs, image)`` is ``variance_minimization_loss(probs, image)`` (same defaults)."""
    gen = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(2, 3, 4, 5, 6, generator=gen, dtype=torch.float64), 1)
    image = torch.randn(2, 2, 4, 5, 6, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(VarianceMinimizationLoss()(probs, image), variance_minimization_loss(probs, image),
                               rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs", [{"softmax": True}, {"softmax": True, "include_background": False, "eps": 1e-3}, {"include_background": False}]
)
def test_module_non_default_arguments(kwargs):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 4, 5, 6, generator=gen, dtype=torch.float64)
    if not kwargs.get("softmax"):
        x = torch.softmax(x, 1)
    image = torch.randn(2, 1, 4, 5, 6, generator=gen, dtype=torch.float64)
    mask = (torch.rand(2, 1, 4, 5, 6, generator=gen) > 0.4).double()
    for extra in ({}, {"mask": mask}):
        torch.testing.assert_close(VarianceMinimizationLoss(**kwargs)(x, image, **extra),
                                   variance_minimization_loss(x, image, **kwargs, **extra), rtol=0, atol=0)


def test_softmax_on_logits_and_gradient_flows_to_logits_only():
    logits = torch.randn(2, 2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    image = torch.randn(2, 1, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    loss = VarianceMinimizationLoss(softmax=True)(logits, image)
    assert loss.item() == pytest.approx(variance_minimization_loss(torch.softmax(logits, 1), image).item())
    loss.backward()
    assert logits.grad is not None and image.grad is None
    assert torch.autograd.gradcheck(lambda x: VarianceMinimizationLoss(softmax=True)(x, image.detach()), (logits,))
    assert torch.autograd.gradcheck(lambda x: variance_minimization_loss(x, image.detach(), softmax=True), (logits,))


def test_errors():
    with pytest.raises(ValueError, match=r"`image` must have shape \(B, C_img, \*spatial\)"):
        variance_minimization_loss(torch.rand(1, 2, 4, 4), torch.rand(1, 1, 4, 5))
    with pytest.raises(ValueError, match=r"`mask` must have shape \(B, 1, \*spatial\)"):
        variance_minimization_loss(torch.rand(1, 2, 4, 4), torch.rand(1, 1, 4, 4), mask=torch.ones(1, 4, 4))
    with pytest.raises(TypeError, match="`image` must be a torch.Tensor"):
        VarianceMinimizationLoss()(torch.rand(1, 2, 4, 4), [[0.0]])


def test_module_defaults_equal_function_defaults():
    """Every argument of ``VarianceMinimizationLoss`` that ``variance_minimization_loss`` also takes has the function's default."""
    import inspect

    function = inspect.signature(variance_minimization_loss).parameters
    module = inspect.signature(VarianceMinimizationLoss).parameters
    shared = [k for k in module if k in function]
    assert len(shared) >= 3
    assert {k: module[k].default for k in shared} == {k: function[k].default for k in shared}

"""Variance-minimisation (VM) loss of PA-Seg: each class should have homogeneous intensities.

Zhai et al., PA-Seg, IEEE TMI 2023 (Sec. "contextual regularisation"); a piecewise-constant
Mumford-Shah / Chan-Vese data term with soft memberships. For probabilities ``p`` (B, C, *spatial)
and an image ``I`` (B, C_img, *spatial), per sample ``b`` and class ``c``::

    mu_bc  = sum_i p_bc(i) I_b(i) / sum_i p_bc(i)                      (soft class mean)
    var_bc = sum_i p_bc(i) (I_b(i) - mu_bc)^2 / sum_i p_bc(i)          (soft class variance)
    loss   = mean_b sum_c var_bc            (summed over image channels as well)

The reference code (PA-Seg ``utilities/losses.py::VarianceLoss``) additionally drops, for the
background class only, the voxels at the image minimum (zero padding in BraTS). Here an explicit
``mask`` (B, 1, *spatial) restricts *all* classes to the voxels it keeps; pass
``mask = image > image.amin()`` per sample to ignore padding. ``sum_i p_bc(i)`` is clamped to
``eps`` so an empty class gives 0, not NaN. The image is a constant (no gradient).

Why not MONAI: MONAI has no intensity-variance segmentation loss.
"""

from __future__ import annotations

import torch
from torch import nn

from medrefine.errors import InputError

__all__ = ["variance_minimization_loss", "VarianceMinimizationLoss"]


def variance_minimization_loss(
    probs: torch.Tensor,
    image: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    include_background: bool = True,
    eps: float = 1e-6,
    softmax: bool = False,
) -> torch.Tensor:
    """Sum over classes of the probability-weighted intensity variance, averaged over the batch.

    Args:
        probs: class probabilities (B, C, *spatial), or logits with ``softmax=True``.
        image: intensities (B, C_img, *spatial) on the same grid.
        mask: optional (B, 1, *spatial) voxel weights (0/1); default None (all voxels).
        include_background: include class 0. Default True (as PA-Seg).
        eps: lower bound of each class's soft volume. Default 1e-6.
        softmax: apply softmax over channels to ``probs`` (then logits). Default False.

    Returns:
        A scalar tensor.

    Raises:
        InputError (a ValueError): on mismatched shapes.
        TypeError: when inputs are not tensors.

    Example:
        >>> probs = torch.softmax(torch.randn(2, 2, 8, 8, 8), 1)
        >>> loss = variance_minimization_loss(probs, torch.randn(2, 1, 8, 8, 8))
    """
    for name, value in (("probs", probs), ("image", image)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
    if probs.ndim < 3:
        raise InputError(f"`probs` must have shape (B, C, *spatial), got {tuple(probs.shape)}")
    batch, spatial = probs.shape[0], tuple(probs.shape[2:])
    if image.ndim != probs.ndim or image.shape[0] != batch or tuple(image.shape[2:]) != spatial:
        raise InputError(
            f"`image` must have shape (B, C_img, *spatial) matching `probs` {tuple(probs.shape)}, "
            f"got {tuple(image.shape)}"
        )
    if mask is not None and tuple(mask.shape) != (batch, 1, *spatial):
        raise InputError(f"`mask` must have shape (B, 1, *spatial) = {(batch, 1, *spatial)}, got {tuple(mask.shape)}")
    if softmax:
        probs = torch.softmax(probs, dim=1)
    if not include_background:
        probs = probs[:, 1:]
    image = image.detach().to(probs.dtype)
    weights = probs if mask is None else probs * mask.detach().to(probs.dtype)
    flat_w = weights.reshape(batch, weights.shape[1], 1, -1)  # (B, C, 1, N)
    flat_i = image.reshape(batch, 1, image.shape[1], -1)  # (B, 1, C_img, N)
    volume = flat_w.sum(-1).clamp(min=eps)  # (B, C, 1)
    mean = (flat_w * flat_i).sum(-1) / volume  # (B, C, C_img)
    variance = (flat_w * (flat_i - mean.unsqueeze(-1)) ** 2).sum(-1) / volume
    return variance.sum(dim=(1, 2)).mean()


class VarianceMinimizationLoss(nn.Module):
    """Module form of :func:`variance_minimization_loss` (PA-Seg's VM loss): the same defaults.

    ``VarianceMinimizationLoss(**kwargs)(probs, image)`` equals
    ``variance_minimization_loss(probs, image, **kwargs)``; for logits pass ``softmax=True`` (as
    :class:`~medrefine.losses.PointSupervisionLoss` does).

    Args:
        softmax: apply softmax over channels to ``input`` (then logits). Default False (wave 1's
            module defaulted to True).
        include_background: include class 0. Default True.
        eps: lower bound of each class's soft volume. Default 1e-6.

    Example:
        >>> loss = VarianceMinimizationLoss(softmax=True)(torch.randn(1, 2, 8, 8, 8), torch.randn(1, 1, 8, 8, 8))
    """

    def __init__(self, softmax: bool = False, include_background: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.softmax = bool(softmax)
        self.include_background = bool(include_background)
        self.eps = float(eps)

    def forward(self, input: torch.Tensor, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Return the loss for ``input`` (B, C, *spatial; logits with ``softmax``) and image (B, C_img, *spatial)."""
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"`input` must be a torch.Tensor, got {type(input).__name__}")
        return variance_minimization_loss(
            input, image, mask=mask, include_background=self.include_background, eps=self.eps, softmax=self.softmax
        )

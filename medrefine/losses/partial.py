"""Partial (seed-supervised) cross-entropy and Dice losses that skip unlabeled voxels.

PA-Seg (Zhai et al., IEEE TMI 2023) trains its first-stage model on seeds expanded from a few
clicked points: most voxels carry no label. The supervised part of its loss, like InExtremIS
(Dorent et al. 2021), is cross-entropy plus Dice computed on the labeled voxels only.

Convention: a voxel whose target value equals :data:`UNLABELED` (255, the value the seed
expansion transform writes) or the ``ignore_index`` given to the loss contributes nothing: not
to the value, not to the gradient. Changing the logits at unlabeled voxels leaves the loss
unchanged. Targets are (B, 1, *spatial) or (B, *spatial) integer class indices (float tensors
holding integers, such as MONAI-loaded labels, are accepted).

Why not MONAI alone: ``monai.losses.DiceCELoss`` has no ignore value (its one-hot conversion
fails on 255) — the Dice term here is :class:`monai.losses.MaskedDiceLoss` with the labeled mask,
the cross-entropy term is ``torch.nn.functional.cross_entropy(ignore_index=...)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medrefine.errors import InputError, did_you_mean

__all__ = ["UNLABELED", "PartialCrossEntropyLoss", "PartialDiceLoss", "PartialCEDiceLoss", "labeled_mask"]

logger = logging.getLogger(__name__)

UNLABELED: int = 255
"""Target value of voxels without a label (written by the seed expansion transform)."""


def _check_logits(input: torch.Tensor) -> None:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"`input` must be a torch.Tensor of logits (B, C, *spatial), got {type(input).__name__}")
    if input.ndim < 3 or not input.is_floating_point():
        raise InputError(
            f"`input` must be floating point logits of shape (B, C, *spatial), got {tuple(input.shape)} {input.dtype}"
        )


def _class_indices(input: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Validate ``target`` against ``input`` and return it as a long tensor (B, *spatial)."""
    _check_logits(input)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"`target` must be a torch.Tensor (B, 1, *spatial), got {type(target).__name__}")
    spatial = tuple(input.shape[2:])
    expected = (input.shape[0], 1, *spatial)
    if tuple(target.shape) == expected:
        target = target[:, 0]
    elif tuple(target.shape) != (input.shape[0], *spatial):
        raise InputError(
            f"`target` must have shape (B, 1, *spatial) = {expected} to match `input` {tuple(input.shape)}, "
            f"got {tuple(target.shape)}"
        )
    if target.is_floating_point():
        if not bool(torch.all(target == torch.round(target))):
            raise InputError("`target` must hold integer class indices, got non-integer values")
    target = target.as_subclass(torch.Tensor).long() if type(target) is not torch.Tensor else target.long()
    num_classes = input.shape[1]
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        values = torch.unique(target[bad])[:5].tolist()
        raise InputError(
            f"`target` values must be class indices in [0, {num_classes}) or the ignore value {ignore_index}, "
            f"got {values}"
        )
    return target


def labeled_mask(target: torch.Tensor, ignore_index: int = UNLABELED) -> torch.Tensor:
    """Boolean mask of labeled voxels: ``target != ignore_index`` (same shape as ``target``)."""
    return target != ignore_index


class PartialCrossEntropyLoss(nn.Module):
    """Cross-entropy averaged over labeled voxels only.

    Equals ``F.cross_entropy(input, target[:, 0], ignore_index=ignore_index, weight=weight)``,
    except that a batch without any labeled voxel gives 0 (with a zero gradient) instead of NaN.

    Args:
        ignore_index: target value of unlabeled voxels. Default :data:`UNLABELED` (255).
        weight: optional per-class weights (C,). Default None.
        reduction: ``"mean"`` (over labeled voxels, weighted like torch), ``"sum"`` or ``"none"``
            (per-voxel map (B, 1, *spatial), 0 at unlabeled voxels). Default ``"mean"``.
        label_smoothing: as in torch. Default 0.0.

    Example:
        >>> loss = PartialCrossEntropyLoss()(torch.randn(1, 2, 8, 8, 8), torch.full((1, 1, 8, 8, 8), UNLABELED))
    """

    def __init__(
        self,
        ignore_index: int = UNLABELED,
        weight: Sequence[float] | torch.Tensor | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise InputError(
                f"`reduction` must be 'mean', 'sum' or 'none', got {reduction!r}."
                + did_you_mean(str(reduction), ["mean", "sum", "none"])
            )
        self.ignore_index = int(ignore_index)
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        self.reduction = reduction
        self.label_smoothing = float(label_smoothing)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the loss for logits (B, C, *spatial) and target (B, 1, *spatial)."""
        target = _class_indices(input, target, self.ignore_index)
        weight = self.weight
        if weight is not None:
            if weight.numel() != input.shape[1]:
                raise InputError(f"`weight` must have one value per class ({input.shape[1]}), got {weight.numel()}")
            weight = weight.to(device=input.device, dtype=input.dtype)
        logits = input.as_subclass(torch.Tensor) if type(input) is not torch.Tensor else input
        if self.reduction == "none":
            out = F.cross_entropy(
                logits, target, weight=weight, ignore_index=self.ignore_index, reduction="none",
                label_smoothing=self.label_smoothing,
            )
            return out.unsqueeze(1)
        if not bool((target != self.ignore_index).any()):
            return logits.sum() * 0.0
        return F.cross_entropy(
            logits, target, weight=weight, ignore_index=self.ignore_index, reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class PartialDiceLoss(nn.Module):
    """Soft Dice loss over labeled voxels only (:class:`monai.losses.MaskedDiceLoss` underneath).

    Softmax is applied over all voxels first; then predictions and one-hot targets are zeroed
    at unlabeled voxels, so those voxels contribute neither to the intersection nor to the sums.
    Per (sample, class): ``1 - (2 sum(m p t) + smooth_nr) / (sum(m p) + sum(m t) + smooth_dr)``.

    Args:
        ignore_index: target value of unlabeled voxels. Default :data:`UNLABELED` (255).
        include_background: keep class 0 in the average. Default True (as PA-Seg).
        softmax: apply softmax to ``input`` (logits). Default True.
        smooth_nr: numerator smoothing. Default 1e-5.
        smooth_dr: denominator smoothing. Default 1e-5.
        batch: sum over the batch before the ratio (MONAI's ``batch``). Default False.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` as in MONAI. Default ``"mean"``.

    Example:
        >>> loss = PartialDiceLoss()(torch.randn(2, 3, 8, 8, 8), torch.randint(0, 3, (2, 1, 8, 8, 8)))
    """

    def __init__(
        self,
        ignore_index: int = UNLABELED,
        include_background: bool = True,
        softmax: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        from monai.losses import MaskedDiceLoss

        self.ignore_index = int(ignore_index)
        self.softmax = bool(softmax)
        self.dice = MaskedDiceLoss(
            include_background=include_background,
            to_onehot_y=False,  # one-hot here: MONAI masks the index map first, turning unlabeled into class 0
            softmax=softmax,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            batch=batch,
            reduction=reduction,
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the loss for logits (B, C, *spatial) and target (B, 1, *spatial)."""
        target = _class_indices(input, target, self.ignore_index)
        mask = labeled_mask(target, self.ignore_index).unsqueeze(1)
        clean = torch.where(mask[:, 0], target, torch.zeros_like(target))
        logits = input.as_subclass(torch.Tensor) if type(input) is not torch.Tensor else input
        one_hot = F.one_hot(clean, logits.shape[1]).movedim(-1, 1).to(logits.dtype)
        return self.dice(logits, one_hot, mask=mask.to(logits.dtype))


class PartialCEDiceLoss(nn.Module):
    """``lambda_ce * PartialCrossEntropyLoss + lambda_dice * PartialDiceLoss`` (PA-Seg's seed loss).

    Args:
        lambda_ce: weight of the cross-entropy term. Default 1.0.
        lambda_dice: weight of the Dice term. Default 1.0.
        ignore_index: target value of unlabeled voxels. Default :data:`UNLABELED` (255).
        include_background: Dice over class 0 too. Default True.
        smooth_nr: Dice numerator smoothing. Default 1e-5.
        smooth_dr: Dice denominator smoothing. Default 1e-5.
        batch: Dice over the whole batch. Default False.
        weight: per-class cross-entropy weights. Default None.

    Raises:
        InputError (a ValueError): when a lambda is negative, or on bad shapes/values at call time.

    Example:
        >>> loss_fn = PartialCEDiceLoss(lambda_ce=1.0, lambda_dice=1.0)
        >>> target = torch.full((1, 1, 8, 8, 8), UNLABELED); target[0, 0, 2, 2, 2] = 1
        >>> loss = loss_fn(torch.randn(1, 2, 8, 8, 8), target)
    """

    def __init__(
        self,
        lambda_ce: float = 1.0,
        lambda_dice: float = 1.0,
        ignore_index: int = UNLABELED,
        include_background: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        weight: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("lambda_ce", lambda_ce), ("lambda_dice", lambda_dice)):
            if value < 0:
                raise InputError(f"`{name}` must be >= 0, got {value}")
        self.lambda_ce = float(lambda_ce)
        self.lambda_dice = float(lambda_dice)
        self.ce = PartialCrossEntropyLoss(ignore_index=ignore_index, weight=weight)
        self.dice = PartialDiceLoss(
            ignore_index=ignore_index, include_background=include_background, smooth_nr=smooth_nr,
            smooth_dr=smooth_dr, batch=batch,
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the weighted sum for logits (B, C, *spatial) and target (B, 1, *spatial)."""
        return self.lambda_ce * self.ce(input, target) + self.lambda_dice * self.dice(input, target)

"""The NeAR training loss: class-weighted cross-entropy + soft Dice + latent-code L2.

Yang et al., "Neural Annotation Refinement", MICCAI 2022 (arXiv:2206.15328), in the multi-class form
of MultiNeAR::

    loss = CE_w(logits, y) + lambda_dice * (1 - mean_k Dice_k) + lambda_latent * mean_b ||z_b||^2

MONAI's :class:`monai.losses.DiceCELoss` covers the first two terms for dense ``(B, K, *spatial)``
tensors, but has no latent penalty and fixes its CE weights at construction; here the weights can
come from the inverse class frequency of each batch, and logits arrive per query point as
``(B, N, K)``. The Dice term follows ``monai.losses.DiceLoss(softmax=True, to_onehot_y=True,
batch=True)`` (a test checks the agreement).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medrefine.errors import did_you_mean

__all__ = ["NeARLoss", "inverse_frequency_weights", "near_loss", "near_loss_terms", "soft_dice_loss"]

_WEIGHT_MODES = ("inverse_frequency",)
_UNSET: Any = object()


def _renamed(old_name: str, old_value: Any, new_name: str, new_value: Any) -> Any:
    """``new_value``, or ``old_value`` (with a DeprecationWarning) when the old keyword was given."""
    if old_value is _UNSET:
        return new_value
    warnings.warn(f"`{old_name}` is deprecated; use `{new_name}` (the same setting)", DeprecationWarning, stacklevel=3)
    return old_value


def inverse_frequency_weights(
    labels: torch.Tensor, num_classes: int, class_weight_cap: float | None = 50.0, *, cap: float | None = _UNSET
) -> torch.Tensor:
    """Class weights ``max_k(count_k) / count_c``, capped: the most frequent class gets 1.

    Classes absent from ``labels`` get ``class_weight_cap`` (they contribute no CE term anyway).

    Args:
        labels: integer tensor of any shape with values in ``[0, num_classes)``.
        num_classes: number of classes ``K``.
        class_weight_cap: upper bound of a weight; None for no bound (absent classes then get 1).
            Defaults to 50.
        cap: deprecated name of ``class_weight_cap``.

    Returns:
        ``(K,)`` float32 weights on the device of ``labels``.

    Raises:
        ValueError: for ``num_classes < 1``, ``class_weight_cap <= 0`` or labels outside ``[0, num_classes)``.

    Example:
        >>> inverse_frequency_weights(torch.tensor([0, 0, 0, 0, 1, 1, 2]), 4, class_weight_cap=3.0).tolist()
        [1.0, 2.0, 3.0, 3.0]
    """
    cap = _renamed("cap", cap, "class_weight_cap", class_weight_cap)
    if int(num_classes) < 1:
        raise ValueError(f"`num_classes` must be >= 1, got {num_classes}")
    if cap is not None and cap <= 0:
        raise ValueError(f"`class_weight_cap` must be > 0 or None, got {cap}")
    flat = torch.as_tensor(labels).reshape(-1).long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= num_classes):
        raise ValueError(
            f"`labels` must lie in [0, {num_classes}), got values in [{int(flat.min())}, {int(flat.max())}]"
        )
    counts = torch.bincount(flat, minlength=int(num_classes)).float()
    present = counts > 0
    weights = torch.ones_like(counts)
    if present.any():
        weights[present] = counts.max() / counts[present]
    weights[~present] = float(cap) if cap is not None else 1.0
    if cap is not None:
        weights = weights.clamp(max=float(cap))
    return weights


def _check_logits_target(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(B, K, N)`` logits and ``(B, N)`` int64 target from point-wise or dense inputs."""
    if logits.dim() == 3:  # (B, N, K) point-wise
        if target.shape == logits.shape[:2] + (1,):
            target = target[..., 0]
        if target.shape != logits.shape[:2]:
            raise ValueError(
                f"`target` must be (B, N) = {tuple(logits.shape[:2])} for logits (B, N, K), got {tuple(target.shape)}"
            )
        return logits.transpose(1, 2), target.long()
    if logits.dim() >= 4:  # dense (B, K, *spatial)
        b, k = logits.shape[:2]
        if target.dim() == logits.dim() and target.shape[1] == 1:
            target = target[:, 0]
        if target.shape != (b, *logits.shape[2:]):
            raise ValueError(
                f"`target` must be (B, *spatial) = {(b, *logits.shape[2:])} for logits (B, K, *spatial), "
                f"got {tuple(target.shape)}"
            )
        return logits.reshape(b, k, -1), target.reshape(b, -1).long()
    raise ValueError(f"`logits` must be (B, N, K) or (B, K, *spatial), got shape {tuple(logits.shape)}")


def soft_dice_loss(
    logits_bkn: torch.Tensor,
    target_bn: torch.Tensor,
    *,
    include_background: bool = True,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
) -> torch.Tensor:
    """Multi-class soft Dice loss ``1 - mean_k Dice_k`` over all points of the batch.

    Args:
        logits_bkn: ``(B, K, N)`` logits (softmax is applied here).
        target_bn: ``(B, N)`` int64 class indices.
        include_background: keep class 0 in the mean. Defaults to True.
        smooth_nr: added to the numerator. Defaults to 1e-5.
        smooth_dr: added to the denominator. Defaults to 1e-5.

    Returns:
        Scalar tensor.
    """
    k = logits_bkn.shape[1]
    probs = torch.softmax(logits_bkn.float(), dim=1)
    onehot = F.one_hot(target_bn, k).transpose(1, 2).to(probs.dtype)  # (B, K, N)
    inter = (probs * onehot).sum(dim=(0, 2))
    denom = probs.sum(dim=(0, 2)) + onehot.sum(dim=(0, 2))
    dice = (2.0 * inter + smooth_nr) / (denom + smooth_dr)
    if not include_background:
        dice = dice[1:]
    return 1.0 - dice.mean()


def _resolve_weights(
    class_weights: str | Sequence[float] | torch.Tensor | None,
    target: torch.Tensor,
    num_classes: int,
    class_weight_cap: float | None,
    device: torch.device,
) -> torch.Tensor | None:
    if class_weights is None:
        return None
    if isinstance(class_weights, str):
        if class_weights != "inverse_frequency":
            raise ValueError(
                f"`class_weights` must be None, 'inverse_frequency' or K numbers, got {class_weights!r}."
                f"{did_you_mean(class_weights, _WEIGHT_MODES)}"
            )
        return inverse_frequency_weights(target, num_classes, class_weight_cap).to(device)
    weights = torch.as_tensor(class_weights, dtype=torch.float32, device=device).reshape(-1)
    if weights.numel() != num_classes:
        raise ValueError(f"`class_weights` must have {num_classes} values (one per class), got {weights.numel()}")
    return weights


def near_loss_terms(
    logits: torch.Tensor,
    target: torch.Tensor,
    latent: torch.Tensor | None = None,
    *,
    class_weights: str | Sequence[float] | torch.Tensor | None = None,
    class_weight_cap: float | None = 50.0,
    lambda_dice: float = 0.2,
    lambda_latent: float = 1e-2,
    include_background: bool = True,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    weight_cap: float | None = _UNSET,
) -> dict[str, torch.Tensor]:
    """The NeAR loss and its parts.

    Args:
        logits: ``(B, N, K)`` point-wise logits, or dense ``(B, K, *spatial)``.
        target: ``(B, N)`` (or ``(B, *spatial)``, optionally with a channel of 1) class indices.
        latent: ``(B, L)`` codes of the batch, or None to skip the latent term.
        class_weights: None (unweighted CE), ``"inverse_frequency"`` (from this batch's ``target``,
            see :func:`inverse_frequency_weights`), or K numbers.
        class_weight_cap: cap of the inverse-frequency weights. Defaults to 50.
        lambda_dice: weight of the soft Dice term. Defaults to 0.2.
        lambda_latent: weight of ``mean_b ||z_b||_2^2``. Defaults to 1e-2.
        include_background: keep class 0 in the Dice mean. Defaults to True.
        smooth_nr: Dice numerator smoothing. Defaults to 1e-5.
        smooth_dr: Dice denominator smoothing. Defaults to 1e-5.
        weight_cap: deprecated name of ``class_weight_cap``.

    Returns:
        dict with scalar tensors ``"loss"``, ``"ce"``, ``"dice"``, ``"latent"`` (unweighted parts).

    Raises:
        ValueError: for mismatching shapes, targets outside ``[0, K)`` or bad ``class_weights``.
    """
    class_weight_cap = _renamed("weight_cap", weight_cap, "class_weight_cap", class_weight_cap)
    logits_bkn, target_bn = _check_logits_target(logits, target)
    k = logits_bkn.shape[1]
    if target_bn.numel() and (int(target_bn.min()) < 0 or int(target_bn.max()) >= k):
        raise ValueError(
            f"`target` must lie in [0, {k}) for {k} classes, got values in [{int(target_bn.min())}, {int(target_bn.max())}]"
        )
    weights = _resolve_weights(class_weights, target_bn, k, class_weight_cap, logits_bkn.device)
    ce = F.cross_entropy(logits_bkn.float(), target_bn, weight=weights)
    dice = soft_dice_loss(
        logits_bkn, target_bn, include_background=include_background, smooth_nr=smooth_nr, smooth_dr=smooth_dr
    )
    if latent is not None:
        if latent.dim() != 2 or latent.shape[0] != logits_bkn.shape[0]:
            raise ValueError(
                f"`latent` must be (B={logits_bkn.shape[0]}, L), got shape {tuple(latent.shape)}"
            )
        lat = latent.float().pow(2).sum(dim=1).mean()
    else:
        lat = ce.new_zeros(())
    total = ce + lambda_dice * dice + lambda_latent * lat
    return {"loss": total, "ce": ce.detach(), "dice": dice.detach(), "latent": lat.detach()}


def near_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    latent: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """Scalar NeAR loss; see :func:`near_loss_terms` for the arguments.

    Example:
        >>> logits = torch.zeros(1, 4, 2)
        >>> round(float(near_loss(logits, torch.tensor([[0, 1, 1, 0]]), lambda_dice=0.0)), 4)  # CE = ln 2
        0.6931
    """
    return near_loss_terms(logits, target, latent, **kwargs)["loss"]


class NeARLoss(nn.Module):
    """Module form of :func:`near_loss`: weighted CE + ``lambda_dice`` Dice + ``lambda_latent`` ||z||^2.

    Yang et al., MICCAI 2022 (arXiv:2206.15328); MultiNeAR's multi-class weighting. With
    ``class_weights="inverse_frequency"`` the weights are computed from each batch's target (the
    module holds no state); to fix them for a whole data set pass
    ``inverse_frequency_weights(all_labels, K, class_weight_cap)`` instead.

    Args:
        num_classes: number of classes ``K``.
        class_weights: None, ``"inverse_frequency"`` or K numbers. Defaults to None.
        class_weight_cap: cap of inverse-frequency weights. Defaults to 50.
        lambda_dice: Dice weight. Defaults to 0.2.
        lambda_latent: latent L2 weight. Defaults to 1e-2.
        include_background: keep class 0 in the Dice mean. Defaults to True.
        smooth_nr: Dice numerator smoothing. Defaults to 1e-5.
        smooth_dr: Dice denominator smoothing. Defaults to 1e-5.
        weight_cap: deprecated name of ``class_weight_cap``.

    Raises:
        ValueError: for ``num_classes < 2``, negative lambdas, or bad ``class_weights``.

    Example:
        >>> loss = NeARLoss(3, class_weights="inverse_frequency")
        >>> loss(torch.randn(2, 10, 3), torch.randint(0, 3, (2, 10)), torch.randn(2, 8)).shape
        torch.Size([])
    """

    def __init__(
        self,
        num_classes: int,
        class_weights: str | Sequence[float] | torch.Tensor | None = None,
        class_weight_cap: float | None = 50.0,
        lambda_dice: float = 0.2,
        lambda_latent: float = 1e-2,
        include_background: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        weight_cap: float | None = _UNSET,
    ) -> None:
        super().__init__()
        class_weight_cap = _renamed("weight_cap", weight_cap, "class_weight_cap", class_weight_cap)
        if int(num_classes) < 2:
            raise ValueError(f"`num_classes` must be >= 2, got {num_classes}")
        if lambda_dice < 0 or lambda_latent < 0:
            raise ValueError(f"`lambda_dice` and `lambda_latent` must be >= 0, got {lambda_dice} and {lambda_latent}")
        if class_weight_cap is not None and class_weight_cap <= 0:
            raise ValueError(f"`class_weight_cap` must be > 0 or None, got {class_weight_cap}")
        self.num_classes = int(num_classes)
        self.weight_mode: str | None = None
        if isinstance(class_weights, str):
            if class_weights not in _WEIGHT_MODES:
                raise ValueError(
                    f"`class_weights` must be None, 'inverse_frequency' or {num_classes} numbers, got "
                    f"{class_weights!r}.{did_you_mean(class_weights, _WEIGHT_MODES)}"
                )
            self.weight_mode = class_weights
            self.register_buffer("class_weights", None)
        elif class_weights is None:
            self.register_buffer("class_weights", None)
        else:
            w = torch.as_tensor(class_weights, dtype=torch.float32).reshape(-1)
            if w.numel() != self.num_classes or bool((w < 0).any()):
                raise ValueError(
                    f"`class_weights` must be {num_classes} non-negative numbers, got {w.tolist()}"
                )
            self.register_buffer("class_weights", w)
        self.class_weight_cap = class_weight_cap
        self.lambda_dice = float(lambda_dice)
        self.lambda_latent = float(lambda_latent)
        self.include_background = bool(include_background)
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)

    def terms(
        self, logits: torch.Tensor, target: torch.Tensor, latent: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Loss and its parts (see :func:`near_loss_terms`)."""
        k = logits.shape[-1] if logits.dim() == 3 else logits.shape[1]
        if k != self.num_classes:
            raise ValueError(f"`logits` must have {self.num_classes} classes, got {k} (shape {tuple(logits.shape)})")
        return near_loss_terms(
            logits,
            target,
            latent,
            class_weights=self.weight_mode if self.weight_mode else self.class_weights,
            class_weight_cap=self.class_weight_cap,
            lambda_dice=self.lambda_dice,
            lambda_latent=self.lambda_latent,
            include_background=self.include_background,
            smooth_nr=self.smooth_nr,
            smooth_dr=self.smooth_dr,
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor, latent: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar loss; ``logits`` ``(B, N, K)``, ``target`` ``(B, N)``, ``latent`` ``(B, L)`` or None."""
        return self.terms(logits, target, latent)["loss"]

"""PA-Seg's stage-1 objective: partial seed loss + ramped-up gated CRF and variance regularisers.

Zhai et al., PA-Seg (IEEE TMI 2023), stage 1::

    L = L_seed(p, seeds) + rampup(epoch) * (w_crf * L_crf(p, I) + w_var * L_var(p, I))

with ``L_seed`` partial cross-entropy + partial Dice on the labeled voxels of the expanded seeds
(:class:`~medrefine.losses.PartialCEDiceLoss`), ``L_crf`` the multi-view gated CRF loss on a
down-sampled copy (:class:`~medrefine.losses.GatedCRFLoss` with ``softmax=True``), ``L_var`` the
variance-minimisation loss (:class:`~medrefine.losses.VarianceMinimizationLoss` with ``softmax=True``) and ``rampup`` the sigmoid ramp-up
(:func:`~medrefine.losses.sigmoid_rampup`) over the first ``rampup_epochs`` epochs.

Both regularisers need the image, which MONAI's :class:`~monai.engines.SupervisedTrainer` does
not hand to its loss (it calls ``loss(pred, target)``). Rather than re-write the trainer, the
batch preparation packs the image behind the target as extra channels
(:func:`pack_image_with_target`) and :class:`PointSupervisionLoss` unpacks it: the stock trainer,
its AMP, handlers and checkpoints stay as they are. The loss follows the trainer's epoch through
:meth:`PointSupervisionLoss.attach`.

Where the regularisers act (``crf_region``, ``variance_region``): ``"all"`` (PA-Seg: the whole
patch), ``"unlabeled"`` (CRF only: the CRF's destination gate is the unlabeled voxels, which the
seed loss does not see) or ``"box"`` (the points' boxes: every voxel that is not background by
the seeds' rule, i.e. unlabeled or foreground).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medrefine.errors import InputError, did_you_mean
from medrefine.losses.crf import GatedCRFLoss
from medrefine.losses.partial import UNLABELED, PartialCEDiceLoss
from medrefine.losses.rampup import sigmoid_rampup
from medrefine.losses.variance import VarianceMinimizationLoss

__all__ = ["PointSupervisionLoss", "pack_image_with_target"]

REGIONS = ("all", "unlabeled", "box")


def pack_image_with_target(target: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``(B, 1 + C_img, *spatial)``: the seed label (channel 0, as float) followed by the image."""
    if target.shape[0] != image.shape[0] or target.shape[2:] != image.shape[2:] or target.shape[1] != 1:
        raise InputError(
            f"the target must have shape (B, 1, *spatial) matching the image {tuple(image.shape)}, got {tuple(target.shape)}"
        )
    return torch.cat([torch.as_tensor(target).to(image.dtype), torch.as_tensor(image)], dim=1)


def _region(name: str, choices: Sequence[str], label: str) -> str:
    if name not in choices:
        raise InputError(f"`{label}` must be one of {', '.join(choices)}, got {name!r}." + did_you_mean(str(name), choices))
    return name


class PointSupervisionLoss(nn.Module):
    """Stage-1 loss of PA-Seg on a packed target (see the module docstring).

    Args:
        lambda_ce: weight of the partial cross-entropy. Default 1.0.
        lambda_dice: weight of the partial Dice. Default 1.0.
        weight_crf: final weight of the gated CRF loss (0 disables it). Default 1.0 (PA-Seg).
        weight_variance: final weight of the variance loss (0 disables it). Default 0.1 (PA-Seg).
        rampup_epochs: epochs of the sigmoid ramp-up of both regularisers. Default 30 (PA-Seg, VS).
        crf_radius: CRF neighbourhood half-width on the down-sampled grid, int or per axis.
            Default 5.
        crf_downsample: down-sampling factor of the CRF copy, number or per axis. Default 2.
        crf_sigma_position_mm: position kernel std (mm). Default 6.0.
        crf_sigma_intensity: intensity kernel std (image units). Default 0.1.
        crf_spatial_dims: ``"multiview2d"`` (PA-Seg), 3 or 2. Default ``"multiview2d"``.
        crf_region: ``"all"``, ``"unlabeled"`` or ``"box"``. Default ``"all"``.
        variance_region: ``"all"`` or ``"box"``. Default ``"all"``.
        spacing: voxel size (mm) of the training grid, used when the packed target carries no
            affine. Default None (the ``MetaTensor`` affine, else 1 mm).
        ignore_index: value of unlabeled voxels. Default 255.

    Example:
        >>> loss_fn = PointSupervisionLoss(rampup_epochs=30)
        >>> loss = loss_fn(logits, pack_image_with_target(seeds, image))
    """

    def __init__(
        self,
        lambda_ce: float = 1.0,
        lambda_dice: float = 1.0,
        weight_crf: float = 1.0,
        weight_variance: float = 0.1,
        rampup_epochs: float = 30,
        crf_radius: int | Sequence[int] = 5,
        crf_downsample: float | Sequence[float] = 2,
        crf_sigma_position_mm: float = 6.0,
        crf_sigma_intensity: float = 0.1,
        crf_spatial_dims: int | str = "multiview2d",
        crf_region: str = "all",
        variance_region: str = "all",
        spacing: Sequence[float] | None = None,
        ignore_index: int = UNLABELED,
    ) -> None:
        super().__init__()
        for name, value in (("weight_crf", weight_crf), ("weight_variance", weight_variance), ("rampup_epochs", rampup_epochs)):
            if not float(value) >= 0:
                raise InputError(f"`{name}` must be >= 0, got {value!r}")
        self.seed_loss = PartialCEDiceLoss(lambda_ce=lambda_ce, lambda_dice=lambda_dice, ignore_index=ignore_index)
        self.crf = GatedCRFLoss(
            sigma_position_mm=crf_sigma_position_mm, sigma_intensity=crf_sigma_intensity, radius=crf_radius,
            downsample_factor=crf_downsample, spatial_dims=crf_spatial_dims, spacing=spacing, softmax=True,
        )
        self.variance = VarianceMinimizationLoss(softmax=True)
        self.weight_crf = float(weight_crf)
        self.weight_variance = float(weight_variance)
        self.rampup_epochs = float(rampup_epochs)
        self.crf_region = _region(crf_region, REGIONS, "crf_region")
        self.variance_region = _region(variance_region, ("all", "box"), "variance_region")
        self.spacing = None if spacing is None else [float(s) for s in spacing]
        self.ignore_index = int(ignore_index)
        self.epoch = 0
        self.last_terms: dict[str, float] = {}

    def attach(self, engine) -> None:
        """Follow ``engine``'s epoch (0-based at the first epoch) for the ramp-up."""
        from ignite.engine import Events

        def _set_epoch(e) -> None:
            self.epoch = e.state.epoch - 1

        engine.add_event_handler(Events.EPOCH_STARTED, _set_epoch)

    def rampup(self) -> float:
        """The regularisers' current ramp-up factor."""
        return sigmoid_rampup(self.epoch, self.rampup_epochs)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for logits ``input`` (B, C, *spatial) and a packed target (B, 1 + C_img, *spatial)."""
        if target.ndim != input.ndim or target.shape[1] < 2:
            raise InputError(
                f"the target must be the seeds packed with the image, shape (B, 1 + C_img, *spatial), got {tuple(target.shape)} "
                "(use medrefine.workflows.point_supervision.PackedBatch as the trainer's prepare_batch)"
            )
        seeds = target[:, :1].round().long()
        image = target[:, 1:].float()
        total = self.seed_loss(input, seeds)
        terms = {"seed": float(total.detach())}
        ramp = self.rampup()
        if ramp > 0 and (self.weight_crf > 0 or self.weight_variance > 0):
            logits = input.float()
            spacing = self.spacing
            if spacing is None and getattr(target, "affine", None) is not None:
                affine = torch.as_tensor(target.affine)
                affine = affine[0] if affine.ndim == 3 else affine
                spacing = torch.linalg.norm(affine[: input.ndim - 2, : input.ndim - 2].double(), dim=0).tolist()
            box = (seeds != 0).float()
            if self.weight_crf > 0:
                destination = None
                if self.crf_region == "unlabeled":
                    destination = (seeds == self.ignore_index).float()
                elif self.crf_region == "box":
                    destination = box
                crf = self.crf(logits, image, destination_mask=destination, spacing=spacing)
                total = total + ramp * self.weight_crf * crf
                terms["crf"] = float(crf.detach())
            if self.weight_variance > 0:
                mask = box if self.variance_region == "box" else None
                variance = self.variance(logits, image, mask=mask)
                total = total + ramp * self.weight_variance * variance
                terms["variance"] = float(variance.detach())
        terms["rampup"] = ramp
        self.last_terms = terms
        return total

"""NIMOSEF's training objective: image terms, motion terms and their warm-up.

Banus et al., "NIMOSEF: Neural implicit motion and segmentation functions", MICCAI 2025.

- image terms, at points of the end-diastolic frame and of a random frame: SmoothL1 between the
  predicted and the observed intensity; Dice + cross-entropy (MONAI's ``DiceCELoss``, optional
  class weights) against the label; L2 of the subject codes;
- motion terms, on the end-diastolic boundary points moved by the predicted displacement: Chamfer
  distance to the boundary at ``t`` per class (:func:`~medrefine.losses.point_sets.chamfer_distance`,
  both directions by default); L2 of the displacement and of the displacement at end-diastole
  itself (which must be zero); Jacobian folding and volume penalties
  (:mod:`medrefine.losses.jacobian`); Laplacian smoothness of the displacement over a kNN graph
  of the boundary points (:func:`laplacian_smoothness`, no DGL); optionally, label consistency:
  points of the end-diastolic frame, moved to ``t``, should be segmented there as they were at
  end-diastole (cross-entropy of the segmentation head at the moved points, the segmentation's
  parameters held fixed, so only the displacement learns from it; not in the reference);
- the motion terms are brought in by a sigmoid ramp-up over ``motion_warmup_epochs``
  (:class:`~medrefine.losses.rampup.SigmoidRampup`): shapes first, then motion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medrefine.losses.point_sets import knn
from medrefine.losses.rampup import sigmoid_rampup

__all__ = ["MOTION_TERMS", "NimosefLoss", "laplacian_smoothness"]

#: terms scaled by the motion warm-up
MOTION_TERMS = ("chamfer", "displacement", "ed_displacement", "folding", "volume", "laplacian", "consistency")


def laplacian_smoothness(points: torch.Tensor, values: torch.Tensor, k: int = 8, *, chunk_size: int = 4096) -> torch.Tensor:
    """Mean ``|v_i - mean_{j in kNN(i)} v_j|²`` over a kNN graph of ``points`` (the graph Laplacian of ``values``).

    Args:
        points: ``(N, 3)`` graph nodes (the graph is built without gradient).
        values: ``(N, C)`` values on the nodes (e.g. displacements).
        k: neighbours per node (at most ``N - 1``). Defaults to 8.
        chunk_size: rows per kNN block.

    Returns:
        A scalar; 0 for values that are constant, or affine in a uniform neighbourhood.
    """
    if points.dim() != 2 or values.dim() != 2 or points.shape[0] != values.shape[0]:
        raise ValueError(f"`points` (N, 3) and `values` (N, C) must match, got {tuple(points.shape)} and {tuple(values.shape)}")
    k = min(int(k), points.shape[0] - 1)
    if k < 1:
        return values.sum() * 0.0
    with torch.no_grad():
        _, idx = knn(points.detach(), points.detach(), k, chunk_size=chunk_size, exclude_self=True)
    return (values - values[idx].mean(dim=1)).pow(2).sum(dim=-1).mean()


class NimosefLoss(nn.Module):
    """Weighted sum of the NIMOSEF terms (see the module docstring).

    Args:
        num_classes: segmentation classes. Defaults to 4.
        class_weights: cross-entropy weights ``(num_classes,)`` or None.
        lambda_intensity, lambda_seg, lambda_code: image-term weights. Defaults 1, 1, 1e-4.
        lambda_chamfer, lambda_displacement, lambda_ed_displacement, lambda_folding, lambda_volume,
            lambda_laplacian, lambda_consistency: motion-term weights. Defaults 10, 1e-3, 10, 1, 0.01, 1, 0
            (label consistency off).
        motion_warmup_epochs: epochs of the sigmoid ramp-up of the motion terms (0 = none). Defaults to 10.
        knn_k: neighbours of the Laplacian graph. Defaults to 8.
        bidirectional: Chamfer in both directions. Defaults to True.
    """

    def __init__(self, num_classes: int = 4, class_weights: Sequence[float] | None = None, *,
                 lambda_intensity: float = 1.0, lambda_seg: float = 1.0, lambda_code: float = 1e-4,
                 lambda_chamfer: float = 10.0, lambda_displacement: float = 1e-3, lambda_ed_displacement: float = 10.0,
                 lambda_folding: float = 1.0, lambda_volume: float = 0.01, lambda_laplacian: float = 1.0,
                 lambda_consistency: float = 0.0,
                 motion_warmup_epochs: float = 10.0, knn_k: int = 8, bidirectional: bool = True) -> None:
        super().__init__()
        from monai.losses import DiceCELoss

        self.num_classes = int(num_classes)
        weight = None if class_weights is None else torch.as_tensor(list(class_weights), dtype=torch.float32)
        if weight is not None and weight.numel() != self.num_classes:
            raise ValueError(f"`class_weights` must have {self.num_classes} values, got {weight.numel()}")
        self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, weight=weight)
        self.weights = {"intensity": float(lambda_intensity), "seg": float(lambda_seg), "code": float(lambda_code),
                        "chamfer": float(lambda_chamfer), "displacement": float(lambda_displacement),
                        "ed_displacement": float(lambda_ed_displacement), "folding": float(lambda_folding),
                        "volume": float(lambda_volume), "laplacian": float(lambda_laplacian),
                        "consistency": float(lambda_consistency)}
        if min(self.weights.values()) < 0 or motion_warmup_epochs < 0:
            raise ValueError(f"loss weights and `motion_warmup_epochs` must be >= 0, got {self.weights}, {motion_warmup_epochs}")
        self.motion_warmup_epochs = float(motion_warmup_epochs)
        self.knn_k = int(knn_k)
        self.bidirectional = bool(bidirectional)

    def motion_weight(self, epoch: float) -> float:
        """Ramp-up factor of the motion terms at ``epoch`` (1 from ``motion_warmup_epochs`` on)."""
        return sigmoid_rampup(epoch, self.motion_warmup_epochs)

    def image_terms(self, seg_logits: torch.Tensor | None, intensity: torch.Tensor, target_label: torch.Tensor | None,
                    target_intensity: torch.Tensor, latent: torch.Tensor) -> dict[str, torch.Tensor]:
        """``intensity``, ``seg`` (when a label is given) and ``code`` terms.

        Args:
            seg_logits: ``(B, N, K)`` or None.
            intensity: ``(B, N)`` predicted intensity.
            target_label: ``(B, N)`` class indices or None (fitting from the image alone).
            target_intensity: ``(B, N)``.
            latent: ``(B, L)`` codes.
        """
        terms = {"intensity": F.smooth_l1_loss(intensity, target_intensity, beta=0.1),
                 "code": latent.pow(2).sum(dim=-1).mean()}
        if target_label is not None and seg_logits is not None:
            terms["seg"] = self.dice_ce(seg_logits.transpose(1, 2), target_label.unsqueeze(1).long())
        return terms

    def total(self, terms: Mapping[str, torch.Tensor], epoch: float) -> torch.Tensor:
        """``sum_k lambda_k term_k``, motion terms scaled by :meth:`motion_weight`."""
        ramp = self.motion_weight(epoch)
        loss = None
        for name, value in terms.items():
            if name not in self.weights:
                continue
            weight = self.weights[name] * (ramp if name in MOTION_TERMS else 1.0)
            loss = value * weight if loss is None else loss + value * weight
        if loss is None:
            raise ValueError(f"no known loss term among {sorted(terms)}")
        return loss

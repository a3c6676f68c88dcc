"""Losses MONAI lacks: NeAR's refinement loss and the point-supervision losses of PA-Seg.

- :mod:`~medrefine.losses.near`: weighted CE + soft Dice + latent L2 (NeAR / MultiNeAR);
- :mod:`~medrefine.losses.partial`: CE and Dice that skip unlabeled voxels;
- :mod:`~medrefine.losses.crf`: the gated CRF loss (3D and multi-view 2D), memory-lean;
- :mod:`~medrefine.losses.variance`: the variance-minimisation loss;
- :mod:`~medrefine.losses.point_supervision`: PA-Seg's stage-1 objective (seeds + CRF + variance);
- :mod:`~medrefine.losses.rampup`: the sigmoid ramp-up of regularisers.
"""

from __future__ import annotations

from medrefine.losses.crf import GatedCRFLoss, gated_crf_loss
from medrefine.losses.near import NeARLoss, inverse_frequency_weights, near_loss
from medrefine.losses.partial import UNLABELED, PartialCEDiceLoss, PartialCrossEntropyLoss, PartialDiceLoss
from medrefine.losses.point_supervision import PointSupervisionLoss, pack_image_with_target
from medrefine.losses.rampup import SigmoidRampup, sigmoid_rampup
from medrefine.losses.variance import VarianceMinimizationLoss, variance_minimization_loss

__all__ = [
    "UNLABELED",
    "GatedCRFLoss",
    "NeARLoss",
    "PartialCEDiceLoss",
    "PartialCrossEntropyLoss",
    "PointSupervisionLoss",
    "PartialDiceLoss",
    "SigmoidRampup",
    "VarianceMinimizationLoss",
    "gated_crf_loss",
    "inverse_frequency_weights",
    "near_loss",
    "pack_image_with_target",
    "sigmoid_rampup",
    "variance_minimization_loss",
]

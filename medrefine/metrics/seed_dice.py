"""Dice against expanded point seeds, on labeled voxels only: model selection without full labels.

PA-Seg's reference code selects models on the full labels of a validation set, which a
point-annotated project does not have. This metric scores a prediction only where the seeds say
something (foreground seeds must be found, background seeds and everything outside the points'
boxes must stay background). MONAI's ``DiceMetric`` has no ignore label, hence this class.
"""

from __future__ import annotations

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction

from medrefine.errors import InputError
from medrefine.losses.partial import UNLABELED

__all__ = ["SeedDiceMetric"]


class SeedDiceMetric(CumulativeIterationMetric):
    """Dice of a prediction against the expanded seeds, on the seeds' labeled voxels only.

    ``y_pred``: one-hot (B, C, *spatial) (e.g. after ``AsDiscrete(argmax=True, to_onehot=C)``);
    ``y``: seeds (B, 1, *spatial) with 0 background, c foreground, ``ignore_index`` unlabeled.
    Per case and foreground class: ``2 |P ∩ S| / (|P| + |S|)`` with ``P``, ``S`` restricted to
    labeled voxels. A class without seeds and without prediction there gives NaN (excluded).

    Example:
        >>> metric = SeedDiceMetric()
        >>> metric(y_pred=onehot, y=seeds); metric.aggregate()
    """

    def __init__(self, ignore_index: int = UNLABELED, reduction: str = "mean", get_not_nans: bool = False) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y is None:
            raise ValueError("SeedDiceMetric needs the seeds as `y`")
        if y_pred.ndim != y.ndim or y.shape[1] != 1 or y_pred.shape[2:] != y.shape[2:]:
            raise InputError(f"y_pred (B, C, *spatial) and seeds (B, 1, *spatial) must match, got {tuple(y_pred.shape)} and {tuple(y.shape)}")
        labeled = (y != self.ignore_index).float()
        dims = tuple(range(2, y_pred.ndim))
        scores = []
        for c in range(1, y_pred.shape[1]):
            pred = (y_pred[:, c : c + 1] > 0.5).float() * labeled
            seed = (y == c).float() * labeled
            inter = (pred * seed).sum(dims)
            denom = pred.sum(dims) + seed.sum(dims)
            scores.append(torch.where(denom > 0, 2 * inter / denom.clamp(min=1), torch.full_like(denom, float("nan"))))
        return torch.cat(scores, dim=1)

    def aggregate(self, reduction: str | None = None):  # type: ignore[override]
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be a PyTorch Tensor")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f

"""Cross-entropy over several categorical targets at once, unlabelled entries ignored.

:func:`multi_target_cross_entropy` splits the concatenated logits ``(B, sum K_t)`` per target and
sums (or averages) one ``torch.nn.functional.cross_entropy`` per target, with ``ignore_index``
for lesions not labelled for that target and optional class weights per target.
:func:`balanced_class_weights` computes those weights from training labels so that an empty
class never divides by zero (the seed's ``N / (K * n_c)`` fails there): a class without samples
gets weight 1, which does nothing as no sample carries it. MONAI's losses are for dense
segmentation; none handles several heads with missing labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medrefine.networks.describe import record_init_args

__all__ = ["MultiTargetCrossEntropy", "balanced_class_weights", "multi_target_cross_entropy"]


def balanced_class_weights(labels: np.ndarray | Sequence[Sequence[int]], num_classes: Sequence[int],
                           ignore_index: int = -1) -> list[list[float]]:
    """Inverse-frequency class weights per target, ``n / (K * n_c)``, 1.0 for an empty class.

    Args:
        labels: ``(N, T)`` class indices, ``ignore_index`` where not labelled.
        num_classes: classes per target (T entries).
        ignore_index: the "not labelled" value. Default -1.

    Returns:
        One list of ``K_t`` weights per target.

    Raises:
        ValueError: the label matrix does not have T columns or holds an index out of range.

    Example:
        >>> balanced_class_weights([[0], [0], [0], [1]], [3])
        [[0.4444444444444444, 1.3333333333333333, 1.0]]
    """
    matrix = np.asarray(labels, dtype=np.int64).reshape(-1, len(num_classes))
    weights = []
    for t, k in enumerate(num_classes):
        column = matrix[:, t]
        column = column[column != ignore_index]
        if column.size and (column.min() < 0 or column.max() >= k):
            raise ValueError(f"labels of target {t} must be in [0, {k}) or {ignore_index}, got {sorted(set(column.tolist()))}")
        counts = np.bincount(column, minlength=k).astype(float)
        n = counts.sum()
        weights.append([float(n / (k * c)) if c > 0 else 1.0 for c in counts])
    return weights


def multi_target_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, num_classes: Sequence[int], *,
                               class_weights: Sequence[Sequence[float]] | None = None, ignore_index: int = -1,
                               reduction: str = "mean", across_processes: bool = False) -> torch.Tensor:
    """Per-target cross-entropy, unlabelled entries ignored.

    Args:
        logits: ``(B, sum K_t)`` concatenated logits.
        labels: ``(B, T)`` class indices, ``ignore_index`` for "not labelled".
        num_classes: ``K_t`` per target.
        class_weights: per target, ``K_t`` weights (or None).
        ignore_index: the "not labelled" value. Default -1.
        reduction: ``"mean"`` (mean over the targets that have a label in the batch) or ``"sum"``.
        across_processes: in a torch.distributed group of N processes that each hold a share of
            the global batch (DDP), normalise each target's weighted mean by the weights of the
            whole global batch (one all-reduce of N x T numbers) and scale by N, so that DDP's
            gradient average is the gradient of the one-process loss of the global batch; the
            processes' mean of the returned values is that loss. Every process must call it.
            Without a group it changes nothing. Default False.

    Returns:
        Scalar loss (0 with a gradient when nothing in the batch is labelled).

    Raises:
        ValueError: shapes that do not match ``num_classes`` or an unknown reduction.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"`reduction` must be 'mean' or 'sum', got {reduction!r}")
    if logits.ndim != 2 or logits.shape[1] != sum(num_classes):
        raise ValueError(f"`logits` must be (B, {sum(num_classes)}), got {tuple(logits.shape)}")
    labels = labels.reshape(logits.shape[0], -1).long()
    if labels.shape[1] != len(num_classes):
        raise ValueError(f"`labels` must be (B, {len(num_classes)}), got {tuple(labels.shape)}")
    dist = torch.distributed
    if across_processes and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return _global_batch_cross_entropy(logits, labels, num_classes, class_weights, ignore_index, reduction,
                                           dist.get_world_size())
    terms = []
    for t, part in enumerate(torch.split(logits, [int(k) for k in num_classes], dim=1)):
        target = labels[:, t]
        if not bool((target != ignore_index).any()):
            continue
        weight = None if class_weights is None else torch.as_tensor(class_weights[t], dtype=logits.dtype, device=logits.device)
        terms.append(F.cross_entropy(part, target, weight=weight, ignore_index=ignore_index))
    if not terms:
        return logits.sum() * 0.0
    total = torch.stack(terms).sum()
    return total / len(terms) if reduction == "mean" else total


def _global_batch_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, num_classes: Sequence[int],
                                class_weights: Sequence[Sequence[float]] | None, ignore_index: int, reduction: str,
                                world: int) -> torch.Tensor:
    """This process's share of the global batch's per-target weighted mean (see ``across_processes``)."""
    sums, weights = [], []
    for t, part in enumerate(torch.split(logits, [int(k) for k in num_classes], dim=1)):
        target = labels[:, t]
        known = target != ignore_index
        losses = F.cross_entropy(part[known], target[known], reduction="none")
        w = (torch.ones_like(losses) if class_weights is None else
             torch.as_tensor(class_weights[t], dtype=logits.dtype, device=logits.device)[target[known]])
        sums.append((w * losses).sum())
        weights.append(w.sum().detach())
    total_weight = torch.stack(weights) if weights else logits.new_zeros(0)
    torch.distributed.all_reduce(total_weight)  # every process: the weights of the whole global batch
    terms = [world * sums[t] / total_weight[t] for t in range(len(sums)) if float(total_weight[t]) > 0]
    if not terms:
        return logits.sum() * 0.0
    total = torch.stack(terms).sum()
    return total / len(terms) if reduction == "mean" else total


class MultiTargetCrossEntropy(nn.Module):
    """Module form of :func:`multi_target_cross_entropy`; it records its arguments for ``model.json``.

    Example:
        >>> loss = MultiTargetCrossEntropy([3, 2])
        >>> loss(torch.zeros(4, 5), torch.tensor([[0, 1], [2, -1], [-1, -1], [1, 0]])).item() > 0
        True
    """

    def __init__(self, num_classes: Sequence[int], class_weights: Sequence[Sequence[float]] | None = None,
                 ignore_index: int = -1, reduction: str = "mean", across_processes: bool = False) -> None:
        super().__init__()
        self.num_classes = [int(k) for k in num_classes]
        if class_weights is not None and [len(w) for w in class_weights] != self.num_classes:
            raise ValueError(f"`class_weights` must hold {self.num_classes} weights per target, got {[len(w) for w in class_weights]}")
        self.class_weights = None if class_weights is None else [[float(v) for v in w] for w in class_weights]
        self.ignore_index = int(ignore_index)
        self.reduction = reduction
        self.across_processes = bool(across_processes)
        record_init_args(self, "medrefine.losses.multi_target.MultiTargetCrossEntropy",
                         {"num_classes": self.num_classes, "class_weights": self.class_weights,
                          "ignore_index": self.ignore_index, "reduction": reduction,
                          "across_processes": self.across_processes})

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return multi_target_cross_entropy(logits, labels, self.num_classes, class_weights=self.class_weights,
                                          ignore_index=self.ignore_index, reduction=self.reduction,
                                          across_processes=self.across_processes)

"""Ignite metric for multi-target classifiers: balanced accuracy averaged over the targets.

The evaluator's key metric of the lesion classification bundle (checkpoint choice and early
stopping). MONAI's ``ConfusionMatrix`` handler expects one one-hot prediction per sample; here a
prediction is the concatenated logits of several targets and labels can be missing (-1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.metrics import Metric

from medrefine.metrics.classification import balanced_accuracy

__all__ = ["MultiTargetBalancedAccuracy"]


def _pred_label(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, label)`` from MONAI's engine output (a list of per-sample dicts or a batch dict)."""
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], dict):
        return torch.stack([o["pred"] for o in output]), torch.stack([o["label"] for o in output])
    if isinstance(output, dict):
        return output["pred"], output["label"]
    return output[0], output[1]


class MultiTargetBalancedAccuracy(Metric):
    """Mean over targets of the balanced accuracy of ``argmax`` per target (unlabelled ignored).

    Args:
        num_classes: classes per target (the logits are split in this order).
        output_transform: engine output -> ``(pred (B, sum K), label (B, T))``; default reads
            MONAI's ``pred``/``label``.
    """

    def __init__(self, num_classes: Sequence[int], output_transform: Callable = _pred_label,
                 device: str | torch.device = "cpu") -> None:
        self.num_classes = [int(k) for k in num_classes]
        self._pred: list[np.ndarray] = []
        self._label: list[np.ndarray] = []
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self._pred, self._label = [], []

    def update(self, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        logits, labels = output
        parts = torch.split(logits.detach().float().cpu(), self.num_classes, dim=1)
        self._pred.append(np.stack([p.argmax(1).numpy() for p in parts], 1))
        self._label.append(labels.detach().cpu().reshape(logits.shape[0], -1).numpy())

    def compute(self) -> float:
        if not self._pred:
            return float("nan")
        pred, label = np.concatenate(self._pred), np.concatenate(self._label)
        import ignite.distributed as idist

        if idist.get_world_size() > 1:  # every rank scored its shard: gather all of them
            pred = idist.all_gather(torch.as_tensor(pred)).numpy()
            label = idist.all_gather(torch.as_tensor(label)).numpy()
        scores = [balanced_accuracy(label[:, t], pred[:, t], k) for t, k in enumerate(self.num_classes)]
        scores = [s for s in scores if np.isfinite(s)]
        return float(np.mean(scores)) if scores else 0.0

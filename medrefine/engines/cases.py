"""In-memory case tensors for the auto-decoder engines, and the Dice used to pick checkpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from medrefine.errors import InputError, did_you_mean

__all__ = ["foreground_dice", "stack_cases"]


def _to_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().as_subclass(torch.Tensor) if type(value) is not torch.Tensor else value.detach()
    return torch.as_tensor(np.asarray(value))


def stack_cases(
    dataset: Sequence[Mapping[str, Any]],
    *,
    image_key: str = "image",
    label_key: str = "label",
    clean_label_key: str = "label_clean",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Stack a data set of cases into tensors held in memory for fast point sampling.

    Args:
        dataset: sequence of dicts (a list, or a MONAI ``Dataset`` after loading transforms) with
            ``image_key`` ``(C, D, H, W)`` or ``(D, H, W)`` float, ``label_key`` ``(D, H, W)`` or
            ``(1, D, H, W)`` integer, optionally ``clean_label_key`` like the label.
        image_key: key of the image. Defaults to ``"image"``.
        label_key: key of the noisy label. Defaults to ``"label"``.
        clean_label_key: key of an optional clean label (validation only). Defaults to ``"label_clean"``.

    Returns:
        ``images (N, C, D, H, W)`` float32, ``labels (N, D, H, W)`` uint8/int32, ``clean`` like
        ``labels`` or None (only when every case has one).

    Raises:
        InputError: for an empty data set, a missing key, or cases with different grids.
    """
    if len(dataset) == 0:
        raise InputError("`dataset` is empty: the auto-decoder needs at least one case")
    images, labels, cleans = [], [], []
    for n in range(len(dataset)):
        item = dataset[n]
        for key in (image_key, label_key):
            if key not in item:
                raise InputError(
                    f"case {n} of `dataset` has no {key!r} entry (keys: {sorted(item)})."
                    f"{did_you_mean(key, list(item))}"
                )
        img = _to_tensor(item[image_key]).float()
        if img.dim() == 3:
            img = img.unsqueeze(0)
        lab = _to_tensor(item[label_key])
        if lab.dim() == 4 and lab.shape[0] == 1:
            lab = lab[0]
        if img.dim() != 4 or lab.dim() != 3 or tuple(img.shape[1:]) != tuple(lab.shape):
            raise InputError(
                f"case {n}: image must be (C, D, H, W) and label (D, H, W) on the same grid, "
                f"got {tuple(img.shape)} and {tuple(lab.shape)}"
            )
        if lab.is_floating_point() and not torch.equal(lab, lab.round()):
            raise InputError(f"case {n}: label must hold integer class values, got non-integral floats")
        images.append(img)
        labels.append(lab.long())
        if clean_label_key in item and item[clean_label_key] is not None:
            cl = _to_tensor(item[clean_label_key])
            cl = cl[0] if cl.dim() == 4 and cl.shape[0] == 1 else cl
            if tuple(cl.shape) != tuple(lab.shape):
                raise InputError(f"case {n}: {clean_label_key!r} shape {tuple(cl.shape)} differs from label {tuple(lab.shape)}")
            cleans.append(cl.long())
    shapes = {tuple(i.shape) for i in images}
    if len(shapes) > 1:
        raise InputError(f"all cases must share one grid (C, D, H, W); got {sorted(shapes)}")
    lab_t = torch.stack(labels)
    if int(lab_t.min()) < 0:
        raise InputError(f"labels must be >= 0, got minimum {int(lab_t.min())}")
    small = torch.uint8 if int(lab_t.max()) < 256 else torch.int32
    clean_t = torch.stack(cleans).to(small) if len(cleans) == len(images) else None
    return torch.stack(images), lab_t.to(small), clean_t


def foreground_dice(pred: torch.Tensor, ref: torch.Tensor, num_classes: int) -> float:
    """Mean Dice over the foreground classes present in ``pred`` or ``ref`` (1.0 when none is)."""
    scores = []
    for c in range(1, int(num_classes)):
        p, r = pred == c, ref == c
        denom = int(p.sum()) + int(r.sum())
        if denom:
            scores.append(2.0 * int((p & r).sum()) / denom)
    return float(np.mean(scores)) if scores else 1.0

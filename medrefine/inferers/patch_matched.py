"""Sliding windows the size of the training patch: inference sees what training saw.

A bundle that trains on random crops of ``roi_size`` padded to a multiple of ``divisible_by``
(``RandSpatialCropd`` + ``DivisiblePadd``) feeds the network, for an image smaller than
``roi_size`` along an axis, the whole image padded only to the next multiple of
``divisible_by``. MONAI's :class:`~monai.inferers.SlidingWindowInferer` pads that image to the
full ``roi_size`` instead: with instance normalisation the statistics of the padded window differ
from the ones training saw, and the prediction degrades as training improves (issue 17: seed Dice
0.997 with a [128, 96, 32] window, 0.113 with the [128, 128, 48] default, same checkpoint).

:class:`PatchMatchedSlidingWindowInferer` is MONAI's inferer with the window chosen per image by
:func:`training_patch_size`, the size training would crop and pad from that image; MONAI's
padding (constant 0, split as ``DivisiblePad`` splits it) and Gaussian blending are kept. An image
at most one window large is then one forward pass over exactly the training-time input.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import SlidingWindowInferer

__all__ = ["PatchMatchedSlidingWindowInferer", "training_patch_size"]


def training_patch_size(image_size: Sequence[int], roi_size: Sequence[int], divisible_by: int | Sequence[int] = 1) -> list[int]:
    """The network input training makes from an image: crop to ``roi_size``, pad to ``divisible_by``.

    Per axis ``ceil(min(roi, size) / k) * k``.

    Args:
        image_size: spatial size of the image ``(X, Y, Z)``.
        roi_size: training crop size, one value per axis (positive).
        divisible_by: ``k`` of the training ``DivisiblePadd``, one value or one per axis. Default 1.

    Returns:
        the window size, one ``int`` per axis.

    Raises:
        ValueError: sizes of different lengths or not positive.

    Example:
        >>> training_patch_size((117, 91, 20), (128, 128, 48), 16)
        [128, 96, 32]
    """
    size = [int(s) for s in image_size]
    roi = [int(r) for r in roi_size]
    k = [int(divisible_by)] * len(roi) if isinstance(divisible_by, (int, float)) else [int(v) for v in divisible_by]
    if not (len(size) == len(roi) == len(k)):
        raise ValueError(f"`image_size`, `roi_size` and `divisible_by` must have one value per axis, got {size}, {roi}, {k}")
    if min(size + roi + k) < 1:
        raise ValueError(f"sizes must be positive, got image_size {size}, roi_size {roi}, divisible_by {k}")
    return [int(math.ceil(min(r, s) / d) * d) for s, r, d in zip(size, roi, k)]


class PatchMatchedSlidingWindowInferer(SlidingWindowInferer):
    """:class:`monai.inferers.SlidingWindowInferer` whose window is the training patch of each image.

    Args:
        roi_size: the training crop size (``roi_size`` of the bundle).
        divisible_by: ``k`` of the training ``DivisiblePadd``. Default 16.
        **kwargs: every other argument of :class:`~monai.inferers.SlidingWindowInferer`
            (``sw_batch_size``, ``overlap``, ``mode``, ``progress``, ...).

    Example:
        >>> inferer = PatchMatchedSlidingWindowInferer(roi_size=(128, 128, 48), divisible_by=16, mode="gaussian")
        >>> inferer.window_for(torch.zeros(1, 1, 117, 91, 20))
        [128, 96, 32]
    """

    def __init__(self, roi_size: Sequence[int], divisible_by: int | Sequence[int] = 16, **kwargs: Any) -> None:
        kwargs.pop("cache_roi_weight_map", None)  # the window changes with the image
        super().__init__(roi_size=tuple(int(r) for r in roi_size), **kwargs)
        self.divisible_by = divisible_by
        training_patch_size(self.roi_size, self.roi_size, divisible_by)  # checks the arguments

    def window_for(self, inputs: torch.Tensor) -> list[int]:
        """The window for ``inputs`` ``(B, C, *spatial)``: :func:`training_patch_size` of its spatial size."""
        return training_patch_size(inputs.shape[2:], self.roi_size, self.divisible_by)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        matched = copy.copy(self)  # this call's window; the inferer itself is not changed
        matched.roi_size = tuple(self.window_for(inputs))
        return SlidingWindowInferer.__call__(matched, inputs, network, *args, **kwargs)

"""Inferers MONAI lacks: chunked decoding of implicit networks, low-memory sliding windows, windows
the size of the training patch."""

from __future__ import annotations

from medrefine.inferers.near import change_map, decode_volume, entropy
from medrefine.inferers.patch_matched import PatchMatchedSlidingWindowInferer, training_patch_size
from medrefine.inferers.slab import SlabSlidingWindowInferer, slab_sliding_window_argmax

__all__ = ["PatchMatchedSlidingWindowInferer", "SlabSlidingWindowInferer", "change_map", "decode_volume", "entropy", "slab_sliding_window_argmax", "training_patch_size"]

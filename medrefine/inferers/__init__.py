"""Inferers MONAI lacks: chunked decoding of implicit networks, low-memory sliding windows."""

from __future__ import annotations

from medrefine.inferers.near import change_map, decode_volume, entropy
from medrefine.inferers.slab import SlabSlidingWindowInferer, slab_sliding_window_argmax

__all__ = ["SlabSlidingWindowInferer", "change_map", "decode_volume", "entropy", "slab_sliding_window_argmax"]

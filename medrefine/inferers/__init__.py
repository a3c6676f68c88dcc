"""Inferers MONAI lacks: chunked decoding of implicit networks and the reviewer's maps."""

from __future__ import annotations

from medrefine.inferers.implicit import change_map, decode_volume, entropy

__all__ = ["change_map", "decode_volume", "entropy"]

"""Networks: torch modules that MONAI does not provide.

``ImplicitRefiner`` is the NeAR/MultiNeAR auto-decoder (per-case latent code -> feature grids ->
point MLP); the point helpers define medrefine's query-point convention.
"""

from __future__ import annotations

from medrefine.networks.implicit import (
    ImplicitRefiner,
    LatentUpsample,
    grid_points,
    interpolation_matrix,
    jittered_grid_points,
    sample_labels,
    sample_volume,
)

__all__ = ["ImplicitRefiner", "LatentUpsample", "grid_points", "interpolation_matrix", "jittered_grid_points", "sample_labels", "sample_volume"]

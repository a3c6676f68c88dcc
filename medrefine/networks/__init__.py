"""Networks: torch modules that MONAI does not provide, and builders of the MONAI ones we use.

- ``ImplicitRefiner``: the NeAR/MultiNeAR auto-decoder (per-case latent code -> feature grids ->
  point MLP); :mod:`medrefine.networks.query_points` defines medrefine's query-point convention;
- ``build_segmentation_network``: the one factory of segmentation networks by name (MONAI UNet,
  AttentionUnet, a slice-wise 2D UNet, a 2.5D DynUNet), used by every bundle.
"""

from __future__ import annotations

from medrefine.networks.near import ImplicitRefiner, LatentUpsample
from medrefine.networks.query_points import (
    grid_points,
    interpolation_matrix,
    jittered_grid_points,
    sample_labels,
    sample_volume,
)
from medrefine.networks.segmentation import (
    SEGMENTATION_NETWORKS,
    build_segmentation_network,
    network_spatial_dims,
    resolve_network_name,
)

__all__ = [
    "SEGMENTATION_NETWORKS",
    "ImplicitRefiner",
    "LatentUpsample",
    "build_segmentation_network",
    "grid_points",
    "interpolation_matrix",
    "jittered_grid_points",
    "network_spatial_dims",
    "resolve_network_name",
    "sample_labels",
    "sample_volume",
]

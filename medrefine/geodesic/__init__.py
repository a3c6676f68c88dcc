"""Generalised geodesic distance on 2D/3D images (pure torch raster scan) and a Dijkstra reference."""

from __future__ import annotations

from medrefine.geodesic.distance import (
    GeodesicDistance,
    generalised_geodesic_distance,
    geodesic_distance_2d,
    geodesic_distance_3d,
)
from medrefine.geodesic.reference import dijkstra_geodesic_distance

__all__ = [
    "GeodesicDistance",
    "dijkstra_geodesic_distance",
    "generalised_geodesic_distance",
    "geodesic_distance_2d",
    "geodesic_distance_3d",
]

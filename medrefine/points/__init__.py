"""Point annotations for PA-Seg: point sets in world mm, point maps and JSON lists, simulation.

Example:
    >>> from medrefine.points import load_points, simulate_points
    >>> points = load_points("points/case_000.json", image=image)
    >>> voxels = points.voxel_indices(image.shape, image.affine)
"""

from __future__ import annotations

from medrefine.points.files import (
    POINTS_FORMAT,
    load_point_map,
    load_points,
    map_to_points,
    points_to_map,
    read_points_json,
    save_point_map,
    write_points_json,
)
from medrefine.points.pointset import (
    BACKGROUND,
    FOREGROUND,
    PointSet,
    voxel_to_world,
    world_to_voxel,
)
from medrefine.points.simulate import (
    background_points,
    foreground_point,
    points_per_object,
    simulate_point_files,
    simulate_points,
)

__all__ = [
    "BACKGROUND",
    "FOREGROUND",
    "POINTS_FORMAT",
    "PointSet",
    "background_points",
    "foreground_point",
    "load_point_map",
    "load_points",
    "map_to_points",
    "points_to_map",
    "read_points_json",
    "save_point_map",
    "points_per_object",
    "simulate_point_files",
    "simulate_points",
    "voxel_to_world",
    "world_to_voxel",
    "write_points_json",
]

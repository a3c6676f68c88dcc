"""Point annotations: a set of clicked points in world coordinates, and world <-> voxel conversion.

PA-Seg (Zhai et al., "PA-Seg: Learning from Point Annotations for 3D Medical Image Segmentation
using Contextual Regularization and Cross Knowledge Distillation", IEEE TMI 2023) annotates each
object with seven points: one foreground point inside the object and six background points just
outside the faces of its bounding box. A :class:`PointSet` holds such points in RAS+ millimetres
(nibabel's world convention, the one of :class:`medrefine.io.Volume`), so a set survives
resampling and moves between images of different grids; :meth:`PointSet.to_voxel` places it on a
grid with the image affine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medrefine.errors import InputError

__all__ = ["BACKGROUND", "FOREGROUND", "PointSet", "voxel_to_world", "world_to_voxel"]

FOREGROUND = "foreground"
BACKGROUND = "background"


def _check_affine(affine: np.ndarray) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"`affine` must be a 4x4 matrix, got shape {affine.shape}")
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"`affine` must be finite and invertible, got\n{affine}")
    return affine


def _check_coordinates(coords: np.ndarray | Sequence, name: str) -> np.ndarray:
    array = np.asarray(coords, dtype=np.float64)
    if array.ndim == 1 and array.shape[0] == 3:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"`{name}` must have shape (N, 3) or (3,), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` must hold finite values, got {array.tolist()}")
    return array


def world_to_voxel(world: np.ndarray | Sequence, affine: np.ndarray) -> np.ndarray:
    """Continuous voxel indices of world positions: ``inv(affine) @ [x, y, z, 1]``.

    Args:
        world: ``(N, 3)`` (or ``(3,)``) RAS+ positions in mm.
        affine: ``(4, 4)`` voxel-to-world matrix of the grid (e.g. ``Volume.affine``).

    Returns:
        ``(N, 3)`` float64 voxel indices ``(i, j, k)``; integers are voxel centres.

    Raises:
        ValueError: wrong shapes, non-finite values or a singular affine.

    Example:
        >>> world_to_voxel([[10.0, 0.0, 0.0]], np.diag([2.0, 2.0, 2.0, 1.0]))
        array([[5., 0., 0.]])
    """
    points = _check_coordinates(world, "world")
    inverse = np.linalg.inv(_check_affine(affine))
    return points @ inverse[:3, :3].T + inverse[:3, 3]


def voxel_to_world(voxel: np.ndarray | Sequence, affine: np.ndarray) -> np.ndarray:
    """World positions (RAS+, mm) of voxel indices: ``affine @ [i, j, k, 1]``.

    Args:
        voxel: ``(N, 3)`` (or ``(3,)``) voxel indices, integer or continuous.
        affine: ``(4, 4)`` voxel-to-world matrix.

    Returns:
        ``(N, 3)`` float64 world positions.

    Example:
        >>> voxel_to_world([[5, 0, 0]], np.diag([2.0, 2.0, 2.0, 1.0]))
        array([[10.,  0.,  0.]])
    """
    points = _check_coordinates(voxel, "voxel")
    affine = _check_affine(affine)
    return points @ affine[:3, :3].T + affine[:3, 3]


@dataclass
class PointSet:
    """Clicked points of one image in RAS+ world millimetres.

    Args:
        world: ``(N, 3)`` positions (RAS+, mm).
        foreground: ``(N,)`` bool, ``True`` for a foreground point, ``False`` for a background one.
        classes: ``(N,)`` int. For a foreground point the class it marks (``>= 1``); for a
            background point the class whose bounding box it closes, or ``0`` when it belongs to
            no class in particular (points read from a point map). Default: 1 for foreground,
            0 for background.
        source: the file the points came from, used in error messages.

    Example:
        >>> points = PointSet(world=[[0, 0, 0], [12, 0, 0]], foreground=[True, False])
        >>> points.num_points, points.classes.tolist()
        (2, [1, 0])
    """

    world: np.ndarray
    foreground: np.ndarray
    classes: np.ndarray | None = None
    source: Path | str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        world = np.asarray(self.world, dtype=np.float64)
        self.world = np.zeros((0, 3)) if world.size == 0 else _check_coordinates(world, "world")
        self.foreground = np.asarray(self.foreground, dtype=bool).reshape(-1)
        if self.foreground.shape[0] != self.world.shape[0]:
            raise ValueError(
                f"`foreground` must have one entry per point ({self.world.shape[0]}), got {self.foreground.shape[0]}"
            )
        if self.classes is None:
            self.classes = self.foreground.astype(np.int64)
        classes = np.asarray(self.classes)
        if classes.shape != self.foreground.shape or (classes.size and not np.issubdtype(classes.dtype, np.integer)):
            raise ValueError(f"`classes` must hold one integer per point ({self.world.shape[0]}), got {classes.tolist()}")
        self.classes = classes.astype(np.int64)
        bad = self.foreground & (self.classes < 1)
        if bad.any():
            raise ValueError(
                f"foreground points need a class >= 1, got class {int(self.classes[bad][0])} at point {int(np.argmax(bad))}"
            )
        if (self.classes < 0).any():
            raise ValueError(f"`classes` must be >= 0, got {self.classes.tolist()}")

    @property
    def num_points(self) -> int:
        """Number of points."""
        return int(self.world.shape[0])

    @property
    def foreground_classes(self) -> list[int]:
        """Sorted classes that have at least one foreground point."""
        return sorted({int(c) for c in self.classes[self.foreground]})

    @property
    def name(self) -> str:
        """The source file name for messages, or ``"points"``."""
        return str(self.source) if self.source is not None else "points"

    def labels(self) -> list[str]:
        """``"foreground"`` / ``"background"`` per point."""
        return [FOREGROUND if f else BACKGROUND for f in self.foreground]

    def to_voxel(self, affine: np.ndarray) -> np.ndarray:
        """Continuous voxel indices ``(N, 3)`` of the points on the grid of ``affine``."""
        if self.num_points == 0:
            return np.zeros((0, 3))
        return world_to_voxel(self.world, affine)

    @classmethod
    def from_voxel(
        cls,
        voxel: np.ndarray | Sequence,
        affine: np.ndarray,
        foreground: np.ndarray | Sequence[bool],
        classes: np.ndarray | Sequence[int] | None = None,
        source: Path | str | None = None,
    ) -> PointSet:
        """Make a set from voxel indices on the grid of ``affine``.

        Example:
            >>> PointSet.from_voxel([[1, 2, 3]], np.eye(4), [True]).world.tolist()
            [[1.0, 2.0, 3.0]]
        """
        world = voxel_to_world(voxel, affine) if np.size(voxel) else np.zeros((0, 3))
        return cls(world=world, foreground=foreground, classes=classes, source=source)

    def voxel_indices(self, shape: Sequence[int], affine: np.ndarray, *, image_name: str = "the image") -> np.ndarray:
        """Nearest voxel ``(N, 3)`` int64 of every point; raise if a point lies outside the grid.

        Args:
            shape: grid shape ``(X, Y, Z)``.
            affine: the grid's voxel-to-world matrix.
            image_name: name of the image for the message.

        Raises:
            InputError: naming the point file, the point, its world and voxel position and the grid.
        """
        continuous = self.to_voxel(affine)
        rounded = np.rint(continuous).astype(np.int64)
        shape_arr = np.asarray(shape[:3])
        outside = np.nonzero(((rounded < 0) | (rounded >= shape_arr)).any(axis=1))[0]
        if outside.size:
            i = int(outside[0])
            world = ", ".join(f"{v:.2f}" for v in self.world[i])
            vox = ", ".join(f"{v:.1f}" for v in continuous[i])
            raise InputError(
                f"{self.name}: expected every point inside the grid of shape {tuple(int(s) for s in shape[:3])}, "
                f"found point {i} ({self.labels()[i]}, class {int(self.classes[i])}) at world ({world}) mm "
                f"lies outside {image_name}: voxel ({vox}) ({outside.size} of {self.num_points} point(s) outside)"
            )
        return rounded

    def subset(self, mask: np.ndarray) -> PointSet:
        """The points where ``mask`` is true."""
        mask = np.asarray(mask, dtype=bool)
        return PointSet(self.world[mask], self.foreground[mask], self.classes[mask], source=self.source)

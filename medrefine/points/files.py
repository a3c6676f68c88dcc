"""Read and write point annotations: PA-Seg point maps (NIfTI) and medrefine's JSON point lists.

Point map (a label image on the image's grid, PA-Seg's ``*_7points.nii.gz``):

=====  ========================================================
value  meaning
=====  ========================================================
0      no point
1      background point
2      foreground point (class 1); PA-Seg's binary maps use 0/1/2
1 + c  foreground point of class ``c`` (multi-class maps)
=====  ========================================================

A map cannot say which class a background point belongs to: read from a map, background points
get class 0 ("any class"). The JSON list keeps it::

    {
      "format": "medrefine-points",
      "version": 1,
      "coordinate_system": "RAS",
      "units": "mm",
      "reference": {"shape": [48, 48, 48], "affine": [[...], [...], [...], [0, 0, 0, 1]]},
      "points": [
        {"world": [1.5, -3.0, 12.0], "label": "foreground", "class": 1},
        {"world": [1.5, -3.0, 30.0], "label": "background", "class": 1}
      ]
    }

``reference`` (the grid the points were made on) is optional and informative; positions are in
world millimetres and are placed on any grid with that grid's affine. ``class`` defaults to 1 for
foreground points and 0 (any class) for background points.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medrefine.errors import InputError
from medrefine.points.pointset import BACKGROUND, FOREGROUND, PointSet

if TYPE_CHECKING:
    from medrefine.io import Volume

__all__ = [
    "POINTS_FORMAT",
    "load_point_map",
    "load_points",
    "map_to_points",
    "points_to_map",
    "read_points_json",
    "save_point_map",
    "write_points_json",
]

logger = logging.getLogger(__name__)

POINTS_FORMAT = "medrefine-points"
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _is_json(path: Path) -> bool:
    return path.name.lower().endswith(".json")


def read_points_json(path: str | PathLike) -> PointSet:
    """Read a JSON point list (see the module docstring for the format).

    Args:
        path: the ``.json`` file.

    Returns:
        A :class:`PointSet` with ``source=path``.

    Raises:
        InputError: naming the file when it is missing, not JSON, or an entry is malformed
            (missing ``world``, a label other than ``foreground``/``background``, a bad class).

    Example:
        >>> points = read_points_json("points/case_000.json")
    """
    from medrefine.io import read_json

    path = Path(path)
    data = read_json(path, what="point file")
    if isinstance(data, list):
        entries = data
    elif isinstance(data, dict) and isinstance(data.get("points"), list):
        entries = data["points"]
        system = str(data.get("coordinate_system", "RAS")).upper()
        if system != "RAS":
            raise InputError(f"{path}: expected \"coordinate_system\": \"RAS\" (world mm, RAS+), found {system!r}")
    else:
        raise InputError(f"{path}: expected an object with a \"points\" list, found {type(data).__name__}")
    world, foreground, classes = [], [], []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "world" not in entry:
            raise InputError(f"{path}: point {i} must be an object with \"world\": [x, y, z], found {entry!r}")
        position = entry["world"]
        if (
            not isinstance(position, list)
            or len(position) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in position)
        ):
            raise InputError(f"{path}: point {i}: \"world\" must hold 3 finite numbers (RAS mm), found {position!r}")
        label = entry.get("label", FOREGROUND)
        if label not in (FOREGROUND, BACKGROUND):
            from medrefine.errors import did_you_mean

            raise InputError(
                f"{path}: point {i}: \"label\" must be \"foreground\" or \"background\", found {label!r}."
                + did_you_mean(str(label), (FOREGROUND, BACKGROUND))
            )
        is_fg = label == FOREGROUND
        cls = entry.get("class", 1 if is_fg else 0)
        if cls is None and not is_fg:
            cls = 0
        if isinstance(cls, bool) or not isinstance(cls, int) or cls < (1 if is_fg else 0):
            expected = ">= 1" if is_fg else ">= 0 (0 = any class)"
            raise InputError(f"{path}: point {i}: \"class\" of a {label} point must be an integer {expected}, found {cls!r}")
        world.append([float(v) for v in position])
        foreground.append(is_fg)
        classes.append(cls)
    return PointSet(
        world=np.asarray(world, dtype=np.float64).reshape(-1, 3),
        foreground=np.asarray(foreground, dtype=bool),
        classes=np.asarray(classes, dtype=np.int64),
        source=path,
    )


def write_points_json(
    points: PointSet,
    path: str | PathLike,
    *,
    reference_shape: Sequence[int] | None = None,
    reference_affine: np.ndarray | None = None,
    protect: Iterable[str | PathLike] = (),
) -> Path:
    """Write a point list as JSON (atomically; never onto a file in ``protect``).

    Args:
        points: the points.
        path: output ``.json`` path; parent folders are created.
        reference_shape: shape of the grid the points were made on (stored as ``reference``).
        reference_affine: its ``(4, 4)`` affine.
        protect: input paths that must not be overwritten.

    Returns:
        The written path.

    Raises:
        InputError: ``path`` does not end in ``.json`` or is an input.

    Example:
        >>> write_points_json(points, "out/case_000.json", reference_shape=(48, 48, 48), reference_affine=affine)
    """
    from medrefine.io import atomic_write

    path = Path(path)
    if not _is_json(path):
        raise InputError(f"{path}: expected an output path ending in .json")
    _refuse_inputs(path, protect)
    document: dict = {"format": POINTS_FORMAT, "version": 1, "coordinate_system": "RAS", "units": "mm"}
    if reference_shape is not None and reference_affine is not None:
        document["reference"] = {
            "shape": [int(s) for s in reference_shape[:3]],
            "affine": np.asarray(reference_affine, dtype=float).round(6).tolist(),
        }
    document["points"] = [
        {"world": [round(float(v), 4) for v in position], "label": label, "class": int(cls)}
        for position, label, cls in zip(points.world, points.labels(), points.classes)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        Path(tmp).write_text(json.dumps(document, indent=2) + "\n")
    return path


def _refuse_inputs(path: Path, protect: Iterable[str | PathLike]) -> None:
    target = path.resolve()
    for item in protect:
        if item is not None and Path(item).resolve() == target:
            raise InputError(f"{path}: refusing to overwrite an input file ({item}); expected a new output path")


def points_to_map(
    points: PointSet, shape: Sequence[int], affine: np.ndarray, *, image_name: str = "the image"
) -> np.ndarray:
    """Rasterise points into a point map on a grid (values: 0 none, 1 background, 1 + c foreground of class c).

    Each point goes to its nearest voxel. Where two points share a voxel, a foreground point wins
    over a background one (a warning is logged).

    Args:
        points: the points.
        shape: grid shape ``(X, Y, Z)``.
        affine: the grid's ``(4, 4)`` voxel-to-world matrix.
        image_name: name of the grid's image for messages.

    Returns:
        ``uint8`` array ``(X, Y, Z)`` (``uint16`` beyond 254 classes).

    Raises:
        InputError: a point lies outside the grid (the message names the point file and the point).

    Example:
        >>> point_map = points_to_map(points, image.shape, image.affine)
    """
    voxels = points.voxel_indices(shape, affine, image_name=image_name)
    values = np.where(points.foreground, points.classes + 1, 1)
    dtype = np.uint8 if values.size == 0 or values.max() < 255 else np.uint16
    point_map = np.zeros(tuple(int(s) for s in shape[:3]), dtype=dtype)
    order = np.argsort(points.foreground, kind="stable")  # background first, foreground overwrites
    for idx in order:
        i, j, k = voxels[idx]
        if point_map[i, j, k] and point_map[i, j, k] != values[idx]:
            logger.warning("%s: two points share voxel (%d, %d, %d); keeping the later foreground one", points.name, i, j, k)
        point_map[i, j, k] = values[idx]
    return point_map


def map_to_points(point_map: np.ndarray, affine: np.ndarray, *, source: str | PathLike | None = None) -> PointSet:
    """Read the points of a point map: every non-zero voxel is one point (at its voxel centre).

    Args:
        point_map: ``(X, Y, Z)`` integer array (values 0, 1, 1 + c).
        affine: its ``(4, 4)`` voxel-to-world matrix.
        source: file name for messages.

    Returns:
        A :class:`PointSet`; background points have class 0.

    Example:
        >>> points = map_to_points(point_map, affine)
    """
    array = np.asarray(point_map)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise InputError(f"{source or 'point map'}: expected a 3D point map, found shape {array.shape}")
    voxels = np.argwhere(array > 0)
    values = array[tuple(voxels.T)].astype(np.int64) if len(voxels) else np.zeros(0, np.int64)
    foreground = values >= 2
    classes = np.where(foreground, values - 1, 0)
    if len(voxels) == 0:
        return PointSet(np.zeros((0, 3)), np.zeros(0, bool), np.zeros(0, np.int64), source=source)
    return PointSet.from_voxel(voxels, affine, foreground, classes, source=source)


def load_point_map(path: str | PathLike, *, image: Volume | None = None, require_foreground: bool = True) -> Volume:
    """Load a PA-Seg point map and check it.

    Args:
        path: a label image (NIfTI or any format :func:`medrefine.io.load_label` reads).
        image: a :class:`medrefine.io.Volume` the map must share a grid with; ``None`` skips the check.
        require_foreground: raise when the map holds no foreground point (value ``>= 2``). Default ``True``.

    Returns:
        The map as a :class:`medrefine.io.Volume` (integer array).

    Raises:
        InputError: the file cannot be read, holds no point or no foreground point.
        GeometryError: the map and ``image`` are on different grids (both files named).

    Example:
        >>> image = load_image("images/case_000.nii.gz")
        >>> point_map = load_point_map("points/case_000.nii.gz", image=image)
    """
    from medrefine.io import check_same_grid, load_label

    volume = load_label(path)
    if image is not None:
        check_same_grid(
            image, volume, names=(str(image.path) if image.path is not None else "the image", str(volume.path))
        )
    values = np.unique(volume.array)
    if require_foreground and not (values >= 2).any():
        found = ", ".join(str(int(v)) for v in values[:10])
        raise InputError(
            f"{volume.path}: expected at least one foreground point (value 2, or 1 + class), "
            f"found values {found} (1 = background point)"
        )
    return volume


def save_point_map(
    points: PointSet,
    path: str | PathLike,
    *,
    shape: Sequence[int],
    affine: np.ndarray,
    protect: Iterable[str | PathLike] = (),
    image_name: str = "the image",
) -> Path:
    """Rasterise ``points`` (:func:`points_to_map`) and write the map as NIfTI with ``affine``.

    Raises:
        InputError: a point lies outside the grid, or ``path`` is an input.

    Example:
        >>> save_point_map(points, "out/case_000.nii.gz", shape=label.shape, affine=label.affine)
    """
    from medrefine.io import save_nifti

    point_map = points_to_map(points, shape, affine, image_name=image_name)
    return save_nifti(point_map, path, affine=np.asarray(affine, dtype=float), protect=protect)


def load_points(path: str | PathLike, *, image: Volume | None = None) -> PointSet:
    """Load points from a JSON list or a point map, by suffix; check them against ``image``.

    Args:
        path: ``.json`` point list, or a point map (``.nii``/``.nii.gz`` or another label format).
        image: optional :class:`medrefine.io.Volume`: every point must lie inside it, and a map must
            share its grid.

    Returns:
        A :class:`PointSet`.

    Raises:
        InputError: unreadable file, malformed entry, no foreground point, a point outside ``image``.
        GeometryError: a map on another grid than ``image``.

    Example:
        >>> points = load_points("points/case_000.json", image=load_image("images/case_000.nii.gz"))
    """
    path = Path(path)
    if _is_json(path):
        points = read_points_json(path)
        if not points.foreground.any():
            raise InputError(f"{path}: expected at least one foreground point, found {points.num_points} background point(s)")
        if image is not None:
            points.voxel_indices(image.shape, image.affine, image_name=str(image.path) if image.path else "the image")
        return points
    volume = load_point_map(path, image=image)
    return map_to_points(volume.array, volume.affine, source=volume.path)

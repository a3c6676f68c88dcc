"""Simulate PA-Seg's seven-point annotations from full label maps.

Protocol (after Zhai et al., PA-Seg, IEEE TMI 2023), per foreground class ``c`` of the label:

* one **foreground point** near the object's centre and inside it: the object voxel farthest
  from the object's boundary (Euclidean distance in mm; ties go to the voxel nearest the
  centroid). Unlike the centroid, it lies inside non-convex objects too;
* six **background points**, one per face of the object's bounding box: at the centre of the
  face, ``margin_mm`` beyond it (at least one voxel), clipped to the image. A face that touches
  the image border has no room outside the box and gets no point (one warning per object names
  the file, the class, the border faces and the object's point count).

``jitter_mm`` imitates an annotator's imprecision: every point moves by a normal draw with that
standard deviation (mm) per axis, redrawn (up to 20 times, else left in place) until the point still
obeys the rules (foreground inside its object; background outside the box and inside the image).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from medrefine.errors import InputError
from medrefine.points.pointset import PointSet

__all__ = ["background_points", "foreground_point", "points_per_object", "simulate_point_files", "simulate_points"]

logger = logging.getLogger(__name__)

_MAX_DRAWS = 20


def _spacing_of(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)


def foreground_point(mask: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The voxel of ``mask`` farthest from its boundary (ties: nearest to the centroid).

    Args:
        mask: ``(X, Y, Z)`` bool object mask (non-empty).
        spacing: voxel size in mm per axis. Default 1 mm.

    Returns:
        ``(3,)`` int64 voxel index inside ``mask``.

    Raises:
        ValueError: ``mask`` is empty or not 3D.

    Example:
        >>> mask = np.zeros((9, 9, 9), bool); mask[2:7, 2:7, 2:7] = True
        >>> foreground_point(mask).tolist()
        [4, 4, 4]
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"`mask` must be 3D (X, Y, Z), got shape {mask.shape}")
    if not mask.any():
        raise ValueError("`mask` must hold at least one object voxel, got an empty mask")
    padded = np.pad(mask, 1)  # the image border counts as boundary
    depth = ndimage.distance_transform_edt(padded, sampling=tuple(float(s) for s in spacing))[1:-1, 1:-1, 1:-1]
    candidates = np.argwhere(depth >= depth.max() - 1e-6)
    centroid = np.argwhere(mask).mean(axis=0)
    offsets = (candidates - centroid) * np.asarray(spacing, dtype=float)
    return candidates[int(np.argmin((offsets**2).sum(axis=1)))].astype(np.int64)


def background_points(
    mask: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0), *, margin_mm: float | None = None
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Face-centre points just outside the bounding box of ``mask``, one per face inside the image.

    Args:
        mask: ``(X, Y, Z)`` bool object mask (non-empty).
        spacing: voxel size in mm per axis.
        margin_mm: distance beyond the face in mm (rounded up to whole voxels, at least 1);
            ``None`` = 2 voxels along each axis.

    Returns:
        ``(voxels (M, 3) int64, faces)`` with ``faces[m] = (axis, side)``, ``side`` -1 (low) or +1
        (high); ``M <= 6`` (faces on the image border are skipped: the faces missing from ``faces``).

    Example:
        >>> mask = np.zeros((16, 16, 16), bool); mask[5:10, 5:10, 5:10] = True
        >>> background_points(mask)[0][:2].tolist()
        [[3, 7, 7], [11, 7, 7]]
    """
    mask = np.asarray(mask, dtype=bool)
    coords = np.argwhere(mask)
    if coords.size == 0:
        raise ValueError("`mask` must hold at least one object voxel, got an empty mask")
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    centre = np.rint((lo + hi) / 2.0).astype(np.int64)
    spacing = np.asarray(spacing, dtype=float)
    if margin_mm is None:
        margin = np.full(3, 2, dtype=np.int64)
    else:
        if not np.isfinite(margin_mm) or margin_mm < 0:
            raise ValueError(f"`margin_mm` must be a finite number >= 0, got {margin_mm!r}")
        margin = np.maximum(1, np.ceil(float(margin_mm) / spacing - 1e-9)).astype(np.int64)
    voxels, faces = [], []
    for axis in range(3):
        for side, edge in ((-1, lo[axis]), (1, hi[axis])):
            position = int(np.clip(edge + side * margin[axis], 0, mask.shape[axis] - 1))
            if (position - edge) * side < 1:
                continue
            voxel = centre.copy()
            voxel[axis] = position
            voxels.append(voxel)
            faces.append((axis, side))
    return np.asarray(voxels, dtype=np.int64).reshape(-1, 3), faces


def _jittered(
    voxel: np.ndarray, valid, rng: np.random.Generator, jitter_mm: float, spacing: np.ndarray
) -> np.ndarray:
    """A continuous voxel position near ``voxel`` whose nearest voxel passes ``valid`` (else ``voxel``)."""
    if jitter_mm <= 0:
        return voxel.astype(np.float64)
    for _ in range(_MAX_DRAWS):
        candidate = voxel + rng.normal(0.0, jitter_mm, size=3) / spacing
        if valid(np.rint(candidate).astype(np.int64)):
            return candidate
    return voxel.astype(np.float64)


def simulate_points(
    label: np.ndarray,
    affine: np.ndarray,
    *,
    classes: Sequence[int] | None = None,
    seed: int | np.random.Generator | None = 0,
    jitter_mm: float = 0.0,
    margin_mm: float | None = None,
    source: str | None = None,
) -> PointSet:
    """Simulate PA-Seg's seven points per class from a full label map (see the module docstring).

    Args:
        label: ``(X, Y, Z)`` integer label map (0 = background).
        affine: its ``(4, 4)`` voxel-to-world matrix (RAS+, mm); points are returned in world mm.
        classes: the classes to annotate; default every non-zero value present.
        seed: seed or generator of the jitter draws. Default 0.
        jitter_mm: standard deviation (mm) of the per-axis jitter; 0 = none. Default 0.
        margin_mm: distance of background points beyond the box faces (mm, at least one voxel);
            ``None`` = 2 voxels. Default ``None``.
        source: the label file, for messages.

    Returns:
        A :class:`PointSet`: for each class one foreground point, then its background points,
        each background point tagged with the class of its box.

    Raises:
        InputError: the label holds no foreground voxel, or a requested class is absent.
        ValueError: bad ``jitter_mm``/``margin_mm``/``label`` shape.

    Example:
        >>> image, label, spacing = make_blob_phantom(32)
        >>> points = simulate_points(label, np.diag([*spacing, 1.0]), seed=0)
        >>> points.num_points, int(points.foreground.sum())
        (7, 1)
    """
    label = np.asarray(label)
    name = source or "label"
    if label.ndim != 3:
        raise ValueError(f"`label` must be 3D (X, Y, Z), got shape {label.shape}")
    if not np.isfinite(jitter_mm) or jitter_mm < 0:
        raise ValueError(f"`jitter_mm` must be a finite number >= 0, got {jitter_mm!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    spacing = _spacing_of(affine)
    present = sorted(int(v) for v in np.unique(label) if v > 0)
    if classes is None:
        classes = present
        if not classes:
            raise InputError(f"{name}: expected at least one foreground voxel (label > 0), found only background")
    else:
        missing = [int(c) for c in classes if int(c) not in present]
        if missing:
            raise InputError(f"{name}: expected class(es) {missing} in the label, found classes {present}")
    shape = np.asarray(label.shape)
    voxels, foreground, point_classes = [], [], []
    for cls in classes:
        mask = label == cls
        centre = foreground_point(mask, spacing)
        voxels.append(_jittered(centre, lambda v, m=mask: bool(((v >= 0) & (v < shape)).all() and m[tuple(v)]), rng,
                                jitter_mm, spacing))
        foreground.append(True)
        point_classes.append(int(cls))
        coords = np.argwhere(mask)
        lo, hi = coords.min(axis=0), coords.max(axis=0)
        bg_voxels, faces = background_points(mask, spacing, margin_mm=margin_mm)

        def outside_box(v: np.ndarray, axis: int, side: int, lo=lo, hi=hi) -> bool:
            inside_image = bool(((v >= 0) & (v < shape)).all())
            beyond = v[axis] < lo[axis] if side < 0 else v[axis] > hi[axis]
            return inside_image and bool(beyond)

        if len(faces) < 6:
            border = [f"axis {axis} {'low' if side < 0 else 'high'}" for axis in range(3) for side in (-1, 1)
                      if (axis, side) not in faces]
            logger.warning("%s: class %d touches the image border (%s): %d points for it instead of 7, no background "
                           "point beyond that border", name, int(cls), ", ".join(border), 1 + len(faces))
        for voxel, (axis, side) in zip(bg_voxels, faces):
            voxels.append(_jittered(voxel, lambda v, a=axis, s=side: outside_box(v, a, s), rng, jitter_mm, spacing))
            foreground.append(False)
            point_classes.append(int(cls))
    return PointSet.from_voxel(np.asarray(voxels), affine, foreground, point_classes, source=source)


def points_per_object(points: PointSet) -> dict[int, int]:
    """``{class: number of points}`` of a simulated point set (its foreground point and its background points).

    Example:
        >>> points_per_object(simulate_points(label, affine))  # doctest: +SKIP
        {1: 7, 5: 5}
    """
    classes, counts = np.unique(np.asarray(points.classes, dtype=np.int64), return_counts=True)
    return {int(c): int(n) for c, n in zip(classes, counts)}


def _label_files(labels: str | PathLike) -> list[Path]:
    from medrefine.io import SUPPORTED_SUFFIXES

    path = Path(labels)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: label file or folder not found")
    files = sorted(
        p for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and any(p.name.lower().endswith(s) for s in SUPPORTED_SUFFIXES)
        and not p.name.lower().endswith(".json")
    )
    if not files:
        raise InputError(f"{path}: expected label files (.nii.gz, .nii, .nrrd, .mha, ...), found none")
    return files


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".npy"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def simulate_point_files(
    labels: str | PathLike,
    out_dir: str | PathLike,
    *,
    seed: int = 0,
    jitter_mm: float = 0.0,
    margin_mm: float | None = None,
    output_format: str = "nifti",
    echo: Callable[[str], None] | None = None,
) -> list[Path]:
    """Simulate points for a label file or every label file of a folder and write them to ``out_dir``.

    ``<out_dir>/<stem>.nii.gz`` (point map on the label's grid) or ``<out_dir>/<stem>.json`` for
    every ``<stem>.nii.gz`` (or other readable label). Each case draws its jitter from
    ``numpy.random.default_rng([seed, crc32(stem)])``, so a case's points do not depend on which
    other files are in the folder.

    Args:
        labels: a label file or a folder of label files.
        out_dir: output folder (created).
        seed: base seed. Default 0.
        jitter_mm: see :func:`simulate_points`. Default 0.
        margin_mm: see :func:`simulate_points`. Default ``None`` (2 voxels).
        output_format: ``"nifti"`` (PA-Seg point map) or ``"json"`` (world-coordinate list).
        echo: called with one line per file: the file written and the points per object
            (``"labels/a.nii.gz -> points/a.json: class 1: 7 points, class 5: 5 points"``).

    Returns:
        The written paths, in input order.

    Raises:
        InputError: missing or unreadable labels, a label without foreground, an unknown format,
            an output that would overwrite an input.

    Example:
        >>> simulate_point_files("cohort/labels", "cohort/points", seed=0, output_format="json")
    """
    from medrefine.errors import did_you_mean
    from medrefine.io import load_label
    from medrefine.points.files import save_point_map, write_points_json

    if output_format not in ("nifti", "json"):
        raise InputError(
            f"`output_format` must be 'nifti' or 'json', got {output_format!r}." + did_you_mean(output_format, ("nifti", "json"))
        )
    files = _label_files(labels)
    out = Path(out_dir)
    written = []
    for path in files:
        volume = load_label(path)
        stem = _stem(path)
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(stem.encode())])
        points = simulate_points(
            volume.array, volume.affine, seed=rng, jitter_mm=jitter_mm, margin_mm=margin_mm, source=str(path)
        )
        if output_format == "json":
            target = write_points_json(
                points, out / f"{stem}.json", reference_shape=volume.shape, reference_affine=volume.affine, protect=[path]
            )
        else:
            target = save_point_map(
                points, out / f"{stem}.nii.gz", shape=volume.shape, affine=volume.affine, protect=[path], image_name=str(path)
            )
        counts = ", ".join(f"class {c}: {n} points" for c, n in points_per_object(points).items())
        logger.info("%s -> %s: %s", path, target, counts)
        if echo is not None:
            echo(f"{path} -> {target}: {counts}")
        written.append(target)
    return written

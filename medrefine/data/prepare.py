"""Crop cases to their labels and resample them to a cube, keeping the way back.

The preprocessing of NeAR / MultiNeAR (Yang et al., "Neural Annotation Refinement", MICCAI 2023):
each case is cropped to the bounding box of its label plus a margin and resized to a fixed cube
(128^3 there), so the implicit model sees every structure at a similar scale. Unlike the
original scripts, medrefine records the geometry of every step so results on the cube can be
put back onto the original image grid (:func:`restore_to_original`), and the cube NIfTIs carry
an affine that keeps them in world coordinates (they overlay the original in any viewer).

Geometry. The crop box is ``[start, stop)`` voxel indices per axis: the labels' bounding box
grown by ``margin_mm`` millimetres (``ceil(margin_mm / spacing)`` voxels per axis, so the
margin is the same physical size on anisotropic grids), clipped to the image. The cube covers
the box edge to edge (voxel corners, like ``skimage.transform.resize``): cube voxel ``c`` sits at
original continuous index ``x = start - 0.5 + (c + 0.5) * scale`` with
``scale = (stop - start) / size``; the cube affine is ``original_affine @ [[diag(scale), x0], [0, 1]]``.

Interpolation. Images: trilinear. Labels, ``label_interpolation="linear"`` (default): each
class's one-hot mask is interpolated trilinearly and every voxel takes the class with the
largest value (the partial-volume vote; ties go to the lower value, so to background): smooth
boundaries without nearest neighbour's staircase, but specks of about one voxel can vanish;
``"nearest"``: nearest neighbour, keeps every value it hits. The way back
(:func:`restore_to_original`) uses nearest neighbour by default; outside the crop box it is 0.

MONAI's ``CropForeground`` + ``Resize`` transforms do the forward step on arrays but keep no
record of the geometry that a file-to-file round trip needs, hence these functions.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrefine.errors import InputError, did_you_mean

if TYPE_CHECKING:
    from medrefine.io import Volume

__all__ = [
    "INFO_FILE",
    "crop_box",
    "cube_affine",
    "resample_labels",
    "prepare_case",
    "apply_prepare",
    "restore_to_original",
    "restore_image_to_original",
    "normalize_appearance",
    "load_prepare_info",
]

logger = logging.getLogger(__name__)

INFO_FILE = "prepare_info.json"
_INTERPOLATIONS = ("linear", "nearest")
_LAYOUTS = ("nifti", "multinear")
_SAFE_CASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_RESERVED_FOLDERS = frozenset({"images", "labels", "appearance", "shape"})


def _triple(value: float | Sequence[float], name: str, *, integer: bool = False, minimum: float = 0.0) -> tuple:
    values = [value] * 3 if np.isscalar(value) else list(value)  # type: ignore[arg-type]
    if len(values) != 3:
        raise InputError(f"`{name}` must be one number or three, got {value!r}")
    try:
        out = tuple(int(v) if integer else float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"`{name}` must be numbers, got {value!r}") from None
    if integer and any(float(v) != int(v) for v in values):
        raise InputError(f"`{name}` must be whole numbers, got {value!r}")
    if any(not math.isfinite(v) or v < minimum for v in out):
        raise InputError(f"`{name}` must be >= {minimum:g}, got {value!r}")
    return out


def _check_interpolation(value: str) -> str:
    if value not in _INTERPOLATIONS:
        raise InputError(
            f"`label_interpolation` must be one of {_INTERPOLATIONS}, got {value!r}.{did_you_mean(value, _INTERPOLATIONS)}"
        )
    return value


def crop_box(
    labels: np.ndarray | Sequence[np.ndarray], spacing: Sequence[float], *, margin_mm: float | Sequence[float] = 10.0
) -> list[list[int]]:
    """Bounding box of the labels' foreground grown by a margin, clipped to the grid.

    Args:
        labels: one label array ``(X, Y, Z)`` or several on the same grid (their union is used).
        spacing: voxel size in mm per axis.
        margin_mm: margin in millimetres, one value or one per axis (default 10).

    Returns:
        ``[[start, stop], ...]`` per axis, ``stop`` exclusive.

    Raises:
        InputError: the labels hold no foreground or the arrays differ in shape.

    Example:
        >>> lab = np.zeros((10, 10, 10), np.uint8); lab[4:6, 4:6, 4:6] = 1
        >>> crop_box(lab, (1.0, 1.0, 2.0), margin_mm=2)
        [[2, 8], [2, 8], [3, 7]]
    """
    arrays = [labels] if isinstance(labels, np.ndarray) else list(labels)
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        raise InputError(f"label arrays must share one shape, got {[a.shape for a in arrays]}")
    if len(shape) != 3:
        raise InputError(f"labels must be 3D (X, Y, Z), got shape {shape}")
    foreground = np.zeros(shape, dtype=bool)
    for a in arrays:
        foreground |= np.asarray(a) > 0
    if not foreground.any():
        raise InputError("label is empty (no voxel > 0): cannot crop to its bounding box")
    margin = _triple(margin_mm, "margin_mm")
    spacing = _triple(spacing, "spacing", minimum=1e-9)
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(foreground.any(axis=other))
        pad = int(math.ceil(margin[axis] / spacing[axis] - 1e-9))
        box.append([max(0, int(idx[0]) - pad), min(shape[axis], int(idx[-1]) + 1 + pad)])
    return box


def _scale_offset(box: Sequence[Sequence[int]], size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    start = np.array([b[0] for b in box], dtype=np.float64)
    extent = np.array([b[1] - b[0] for b in box], dtype=np.float64)
    scale = extent / np.asarray(size, dtype=np.float64)
    return scale, start - 0.5 + 0.5 * scale


def cube_affine(affine: np.ndarray, box: Sequence[Sequence[int]], size: Sequence[int]) -> np.ndarray:
    """Voxel-to-world affine of the cube that covers ``box`` of a grid with ``affine``.

    Args:
        affine: ``(4, 4)`` affine of the original grid.
        box: crop box ``[[start, stop], ...]``.
        size: cube shape ``(sx, sy, sz)``.

    Returns:
        The ``(4, 4)`` cube affine (same orientation, spacing ``extent * spacing / size``).
    """
    scale, offset = _scale_offset(box, size)
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(scale)
    index_map[:3, 3] = offset
    return np.asarray(affine, dtype=np.float64) @ index_map


def _affine_resample(
    array: np.ndarray, matrix: np.ndarray, offset: np.ndarray, shape: Sequence[int], order: int
) -> np.ndarray:
    """scipy's affine_transform with a per-axis (diagonal) map, clamping at the borders."""
    from scipy.ndimage import affine_transform

    return affine_transform(array, matrix, offset=offset, output_shape=tuple(shape), order=order, mode="nearest")


def resample_labels(
    array: np.ndarray,
    matrix: np.ndarray,
    offset: np.ndarray,
    shape: Sequence[int],
    *,
    label_interpolation: str = "linear",
) -> np.ndarray:
    """Resample an integer label array with an axis-aligned index map.

    Output voxel ``o`` takes the label at input index ``matrix * o + offset`` (per axis).

    Args:
        array: ``(X, Y, Z)`` integer labels.
        matrix: per-axis scale, shape ``(3,)``.
        offset: per-axis offset, shape ``(3,)``.
        shape: output shape.
        label_interpolation: ``"linear"`` (one-hot trilinear, then the largest wins) or
            ``"nearest"``.

    Returns:
        Labels of ``shape`` with ``array``'s dtype.
    """
    _check_interpolation(label_interpolation)
    array = np.asarray(array)
    if label_interpolation == "nearest":
        return _affine_resample(array, matrix, offset, shape, order=0).astype(array.dtype)
    shape = tuple(int(s) for s in shape)
    matrix = np.asarray(matrix, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    values = np.unique(array)
    if values[0] != 0:  # no background to take the remainder: vote every value on the full grid
        out = np.full(shape, values[0], dtype=array.dtype)
        best = np.full(shape, -1.0, dtype=np.float32)
        for value in values:
            vote = _affine_resample((array == value).astype(np.float32), matrix, offset, shape, order=1)
            wins = vote > best
            out[wins] = value
            best[wins] = vote[wins]
        return out
    # Background (0) gets the remainder 1 - sum(foreground votes) (linear weights sum to 1), and
    # each foreground class is voted only around its own bounding box: fast with many classes.
    out = np.zeros(shape, dtype=array.dtype)
    best = np.zeros(shape, dtype=np.float32)
    total = np.zeros(shape, dtype=np.float32)
    for value in values[1:]:
        where = np.nonzero(array == value)
        lo_in = np.array([max(0, int(w.min()) - 1) for w in where])
        hi_in = np.array([min(n - 1, int(w.max()) + 1) for w, n in zip(where, array.shape)])
        # output voxels whose input position falls in [lo_in, hi_in]
        a, b = (lo_in - offset) / matrix, (hi_in - offset) / matrix
        lo_out = np.clip(np.floor(np.minimum(a, b)).astype(int) - 1, 0, shape)
        hi_out = np.clip(np.ceil(np.maximum(a, b)).astype(int) + 2, 0, shape)
        # mode="nearest" extends border voxels outwards: a class touching the border reaches the edge
        lo_out = np.where(lo_in == 0, 0, lo_out)
        hi_out = np.where(hi_in == np.array(array.shape) - 1, np.array(shape), hi_out)
        if np.any(hi_out <= lo_out):
            continue
        region_in = tuple(slice(int(l), int(h) + 1) for l, h in zip(lo_in, hi_in))
        region_out = tuple(slice(int(l), int(h)) for l, h in zip(lo_out, hi_out))
        sub_offset = offset + matrix * lo_out - lo_in
        vote = _affine_resample(
            (array[region_in] == value).astype(np.float32), matrix, sub_offset, tuple(hi_out - lo_out), order=1
        )
        block_best, block_out = best[region_out], out[region_out]
        wins = vote > block_best
        block_out[wins] = value
        block_best[wins] = vote[wins]
        total[region_out] += vote
    out[(1.0 - total) >= best - 1e-6] = 0  # ties go to background, as in the full vote
    return out


def apply_prepare(volume: Volume, info: Mapping[str, Any], *, is_label: bool) -> Volume:
    """Crop and resample another volume on the original grid exactly as a prepared case.

    Use it for more labels of a case (a clean reference, a second annotator) or a second image.

    Args:
        volume: a volume on the case's original grid.
        info: the case's info from :func:`prepare_case` (or ``prepare_info.json``).
        is_label: labels use ``info["label_interpolation"]``, images trilinear.

    Returns:
        The cube as a :class:`~medrefine.io.Volume` with the cube affine.

    Raises:
        InputError: ``volume`` is not on the original grid.
    """
    from medrefine.io import Volume

    original_shape = tuple(info["original_shape"])
    if tuple(volume.shape) != original_shape or not np.allclose(volume.affine, info["original_affine"], atol=1e-3):
        raise InputError(
            f"{volume.path or 'volume'}: not on the prepared case's original grid: shape {volume.shape} vs "
            f"{original_shape}, affine\n{np.round(volume.affine, 4)}\n"
            f"vs\n{np.round(np.asarray(info['original_affine']), 4)}"
        )
    box, size = info["crop_box"], tuple(info["cube_shape"])
    scale, offset = _scale_offset(box, size)
    if is_label:
        mode = info.get("label_interpolation", "linear")
        cube = resample_labels(volume.array, scale, offset, size, label_interpolation=mode)
    else:
        cube = _affine_resample(np.asarray(volume.array, dtype=np.float32), scale, offset, size, order=1)
    return Volume(cube, np.asarray(info["cube_affine"], dtype=np.float64))


def prepare_case(
    image: Volume,
    label: Volume,
    *,
    size: int | Sequence[int] = 128,
    margin_mm: float | Sequence[float] = 10.0,
    extra_labels: Mapping[str, Volume] | None = None,
    label_interpolation: str = "linear",
    case: str | None = None,
) -> tuple[Volume, Volume, dict[str, Any]]:
    """Crop a case to its labels' bounding box plus a margin and resample it to a cube.

    Args:
        image: the image.
        label: its label on the same grid (integer values).
        size: cube shape, one int (``128`` -> 128^3) or three. Default 128.
        margin_mm: margin around the bounding box in millimetres (one value or per axis).
            Default 10.
        extra_labels: more labels of the case (e.g. ``{"label_clean": vol}``) whose foreground
            also goes into the crop box; crop them with :func:`apply_prepare`.
        label_interpolation: ``"linear"`` (one-hot partial-volume vote, default) or ``"nearest"``.
        case: case id stored in ``info``.

    Returns:
        ``(image_cube, label_cube, info)``: two :class:`~medrefine.io.Volume` with the cube affine
        (image float32, label with the label's dtype) and a JSON-ready dict with ``case``,
        ``original_shape``, ``original_affine``, ``original_spacing``, ``crop_box``,
        ``margin_mm``, ``margin_voxels``, ``cube_shape``, ``cube_affine``, ``cube_spacing``,
        ``label_interpolation`` and the ``image``/``label`` paths when known.

    Raises:
        GeometryError: image, label or extra labels are not on one grid.
        InputError: the labels are empty, or ``size``/``margin_mm`` are invalid.

    Example:
        >>> img_cube, lab_cube, info = prepare_case(image, label, size=64, margin_mm=5)  # doctest: +SKIP
        >>> back = restore_to_original(lab_cube, info)  # doctest: +SKIP
    """
    from medrefine.io import Volume, check_same_grid

    _check_interpolation(label_interpolation)
    cube_shape = _triple(size, "size", integer=True, minimum=1)
    margin = _triple(margin_mm, "margin_mm")
    names = (str(image.path or "image"), str(label.path or "label"))
    check_same_grid(image, label, names=names)
    arrays = [np.asarray(label.array)]
    for key, extra in (extra_labels or {}).items():
        check_same_grid(label, extra, names=(names[1], str(extra.path or key)))
        arrays.append(np.asarray(extra.array))
    try:
        box = crop_box(arrays, label.spacing, margin_mm=margin)
    except InputError as err:
        raise InputError(f"{names[1]}: {err}") from None
    spacing = np.asarray(label.spacing, dtype=np.float64)
    scale, offset = _scale_offset(box, cube_shape)
    affine = cube_affine(label.affine, box, cube_shape)
    info: dict[str, Any] = {
        "case": case,
        "image": str(image.path) if image.path else None,
        "label": str(label.path) if label.path else None,
        "original_shape": list(label.shape),
        "original_affine": np.asarray(label.affine).tolist(),
        "original_spacing": spacing.tolist(),
        "crop_box": box,
        "margin_mm": list(margin),
        "margin_voxels": [int(math.ceil(m / s - 1e-9)) for m, s in zip(margin, spacing)],
        "cube_shape": list(cube_shape),
        "cube_affine": affine.tolist(),
        "cube_spacing": (spacing * scale).tolist(),
        "label_interpolation": label_interpolation,
    }
    image_cube = _affine_resample(np.asarray(image.array, dtype=np.float32), scale, offset, cube_shape, order=1)
    label_cube = resample_labels(label.array, scale, offset, cube_shape, label_interpolation=label_interpolation)
    return Volume(image_cube, affine), Volume(label_cube, affine.copy()), info


def restore_to_original(
    label_cube: Volume | np.ndarray, info: Mapping[str, Any], *, label_interpolation: str = "nearest"
) -> np.ndarray:
    """Put a label cube (e.g. a refined label) back onto the case's original grid.

    Args:
        label_cube: ``cube_shape`` integer labels (array or Volume).
        info: the case's info from :func:`prepare_case` or ``prepare_info.json``.
        label_interpolation: ``"nearest"`` (default) or ``"linear"`` (one-hot vote).

    Returns:
        Labels of ``info["original_shape"]`` with ``label_cube``'s dtype; 0 outside the crop box.
        Save with ``info["original_affine"]`` to get the original geometry.

    Raises:
        InputError: the cube's shape is not ``info["cube_shape"]`` or ``info`` lacks a key.

    Example:
        >>> restored = restore_to_original(refined_cube, info)  # doctest: +SKIP
        >>> save_nifti(restored, "refined.nii.gz", affine=np.array(info["original_affine"]))  # doctest: +SKIP
    """
    array = np.asarray(label_cube.array if hasattr(label_cube, "array") else label_cube)
    missing = [k for k in ("original_shape", "crop_box", "cube_shape") if k not in info]
    if missing:
        raise InputError(f"`info` lacks {missing}; pass the info returned by prepare_case or stored in {INFO_FILE}")
    cube_shape = tuple(int(s) for s in info["cube_shape"])
    if array.shape != cube_shape:
        raise InputError(f"`label_cube` must have the prepared cube shape {cube_shape}, got {array.shape}")
    box = [[int(a), int(b)] for a, b in info["crop_box"]]
    scale, offset = _scale_offset(box, cube_shape)
    start = np.array([b[0] for b in box], dtype=np.float64)
    region = tuple(b[1] - b[0] for b in box)
    inside = resample_labels(
        array, 1.0 / scale, (start - offset) / scale, region, label_interpolation=label_interpolation
    )
    out = np.zeros(tuple(int(s) for s in info["original_shape"]), dtype=array.dtype)
    out[tuple(slice(a, b) for a, b in box)] = inside
    return out



def restore_image_to_original(
    cube: Volume | np.ndarray, info: Mapping[str, Any], *, order: int = 1, fill_value: float = 0.0
) -> np.ndarray:
    """Put a float cube (e.g. an uncertainty map) back onto the case's original grid.

    The float twin of :func:`restore_to_original`: trilinear (``order=1``) or nearest (``0``)
    interpolation inside the crop box, ``fill_value`` outside.

    Returns:
        float32 array of ``info["original_shape"]``.

    Raises:
        InputError: the cube's shape is not ``info["cube_shape"]`` or ``info`` lacks a key.
    """
    array = np.asarray(cube.array if hasattr(cube, "array") else cube, dtype=np.float32)
    missing = [k for k in ("original_shape", "crop_box", "cube_shape") if k not in info]
    if missing:
        raise InputError(f"`info` lacks {missing}; pass the info returned by prepare_case or stored in {INFO_FILE}")
    cube_shape = tuple(int(s) for s in info["cube_shape"])
    if array.shape != cube_shape:
        raise InputError(f"`cube` must have the prepared cube shape {cube_shape}, got {array.shape}")
    box = [[int(a), int(b)] for a, b in info["crop_box"]]
    scale, offset = _scale_offset(box, cube_shape)
    start = np.array([b[0] for b in box], dtype=np.float64)
    region = tuple(b[1] - b[0] for b in box)
    inside = _affine_resample(array, 1.0 / scale, (start - offset) / scale, region, order=int(order))
    out = np.full(tuple(int(s) for s in info["original_shape"]), fill_value, dtype=np.float32)
    out[tuple(slice(a, b) for a, b in box)] = inside
    return out

def normalize_appearance(array: np.ndarray, *, window: Sequence[float] | None = (-1000.0, 1000.0)) -> np.ndarray:
    """Scale intensities to ``[0, 1]`` float32 for MultiNeAR's ``appearance`` arrays.

    Args:
        array: image intensities.
        window: ``(low, high)``: clip to it and scale (CT in HU; default -1000..1000 as
            MultiNeAR's preprocessing); ``None``: per-case 0.5th..99.5th percentiles (MR).

    Returns:
        float32 array in ``[0, 1]``.
    """
    array = np.asarray(array, dtype=np.float32)
    if window is None:
        low, high = (float(v) for v in np.percentile(array, [0.5, 99.5]))
    else:
        low, high = (float(v) for v in window)
        if not high > low:
            raise InputError(f"`window` must be (low, high) with high > low, got {tuple(window)!r}")
    if high <= low:
        return np.zeros_like(array)
    return np.clip((array - low) / (high - low), 0.0, 1.0).astype(np.float32)


def load_prepare_info(path: str | Path) -> dict[str, Any]:
    """Read ``prepare_info.json`` (or the folder holding it).

    Returns:
        ``{"size": ..., "margin_mm": ..., "cases": {case: info}, ...}``.

    Raises:
        InputError: missing or invalid file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / INFO_FILE
    from medrefine.io import read_json

    data = read_json(path, what=INFO_FILE)
    if not isinstance(data, dict) or not isinstance(data.get("cases"), dict):
        raise InputError(f"{path}: expected an object with 'cases' {{case: info}}")
    return data

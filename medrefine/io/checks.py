"""Checks on loaded volumes, each raising an error that names the file, the expectation and the finding.

The readers call these on every load, so a bad file fails at the door with a message such as::

    InputError: labels/case_003.nii.gz: label values must be integers in 0..3 (num_classes=4), found 5, 7 (12 voxels)

rather than deep inside a training loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike

import numpy as np

from medrefine.errors import GeometryError, InputError
from medrefine.io.volume import Volume

__all__ = [
    "check_finite",
    "check_ndim",
    "check_not_empty",
    "check_affine",
    "as_label_array",
    "check_same_grid",
]

logger = logging.getLogger(__name__)

# how many offending values an error message lists
_MAX_SHOWN = 5


def _name(source: str | PathLike | None, default: str = "array") -> str:
    return str(source) if source is not None else default


def _fmt_values(values: np.ndarray) -> str:
    shown = ", ".join(f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in values[:_MAX_SHOWN].tolist())
    return shown + (", ..." if values.size > _MAX_SHOWN else "")


def check_not_empty(array: np.ndarray, source: str | PathLike | None = None) -> None:
    """Raise when ``array`` holds no voxels (a zero-length axis).

    Args:
        array: voxel values.
        source: the file (or name) the array came from, used in the message.

    Raises:
        InputError: if ``array.size == 0``.

    Example:
        >>> check_not_empty(np.zeros((2, 2, 2)), "ok.nii.gz")
    """
    if array.size == 0:
        raise InputError(f"{_name(source)}: expected a non-empty volume, found shape {tuple(array.shape)} (zero voxels)")


def check_ndim(array: np.ndarray, source: str | PathLike | None = None, *, ndim: int = 3, what: str = "volume") -> None:
    """Raise unless ``array`` has ``ndim`` axes (a 4D series where one 3D volume is expected).

    Args:
        array: voxel values.
        source: the file (or name) the array came from, used in the message.
        ndim: the number of axes expected. Default 3.
        what: what the array is (``"image"``, ``"label"``), used in the message.

    Raises:
        InputError: ``"<source>: expected a 3D image, found an array of shape (X, Y, Z, T)"``.

    Example:
        >>> check_ndim(np.zeros((2, 2, 2)), "ok.nii.gz")
    """
    if np.ndim(array) != ndim:
        raise InputError(f"{_name(source)}: expected a {ndim}D {what}, found an array of shape {tuple(np.shape(array))}")


def check_finite(array: np.ndarray, source: str | PathLike | None = None) -> None:
    """Raise when ``array`` holds NaN or +-Inf values.

    Args:
        array: voxel values (integer arrays always pass).
        source: the file (or name) the array came from, used in the message.

    Raises:
        InputError: naming ``source``, the number of NaN/Inf voxels and the first one's index.

    Example:
        >>> check_finite(np.ones((2, 2, 2)), "ok.nii.gz")
    """
    if not np.issubdtype(array.dtype, np.inexact):
        return
    finite = np.isfinite(array)
    if finite.all():
        return
    bad = ~finite
    n_nan = int(np.isnan(array).sum())
    n_inf = int(bad.sum()) - n_nan
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise InputError(
        f"{_name(source)}: expected finite voxel values, found {n_nan} NaN and {n_inf} Inf voxel(s) "
        f"(first at index {first}) out of {array.size}"
    )


def check_affine(affine: np.ndarray, source: str | PathLike | None = None) -> np.ndarray:
    """Check that ``affine`` is a finite, invertible 4x4 voxel-to-world matrix and return it as float64.

    Args:
        affine: ``(4, 4)`` matrix.
        source: the file (or name) the affine came from, used in the message.

    Returns:
        The affine as a float64 array.

    Raises:
        InputError: if the shape is not ``(4, 4)``, a value is not finite, or the 3x3 part is singular
            (a zero voxel size in the header).

    Example:
        >>> check_affine(np.eye(4), "ok.nii.gz").shape
        (4, 4)
    """
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise InputError(f"{_name(source, 'affine')}: expected a 4x4 affine, found shape {aff.shape}")
    if not np.isfinite(aff).all():
        raise InputError(f"{_name(source, 'affine')}: expected a finite affine, found\n{_fmt_affine(aff)}")
    if abs(np.linalg.det(aff[:3, :3])) < 1e-12:
        raise InputError(
            f"{_name(source, 'affine')}: expected an invertible affine (non-zero voxel sizes), found\n{_fmt_affine(aff)}"
        )
    return aff


def _label_dtype(max_value: int) -> np.dtype:
    if max_value <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if max_value <= np.iinfo(np.int16).max:
        return np.dtype(np.int16)
    return np.dtype(np.int32)


def as_label_array(
    array: np.ndarray, source: str | PathLike | None = None, *, num_classes: int | None = None
) -> np.ndarray:
    """Check that ``array`` is a label map and return it with the smallest fitting integer dtype.

    Float arrays whose values are all integral (a label saved as float32) are accepted and cast.

    Args:
        array: label values, any shape.
        source: the file (or name) the array came from, used in the message.
        num_classes: when given, every value must be ``< num_classes`` (background 0 included).

    Returns:
        The labels as ``uint8`` if the largest value fits, else ``int16``, else ``int32``.

    Raises:
        InputError: on non-integer, negative, too large (``>= num_classes``) or non-finite values,
            or if ``num_classes`` is not a positive integer.

    Example:
        >>> as_label_array(np.array([0.0, 1.0, 2.0]), "lab.nii.gz", num_classes=3).dtype
        dtype('uint8')
    """
    name = _name(source, "labels")
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise InputError(f"`num_classes` must be a positive integer, got {num_classes!r}")
        num_classes = int(num_classes)
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.complexfloating) or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise InputError(f"{name}: expected integer label values, found data of type {arr.dtype}")
    check_finite(arr, name)
    check_not_empty(arr, name)
    if np.issubdtype(arr.dtype, np.floating):
        fractional = arr != np.rint(arr)
        if fractional.any():
            values = np.unique(arr[fractional])
            raise InputError(
                f"{name}: expected integer label values, found {int(fractional.sum())} non-integer voxel(s) "
                f"with values such as {_fmt_values(values)} (is this an image rather than a label map?)"
            )
    lo, hi = arr.min(), arr.max()
    if lo < 0:
        values = np.unique(arr[arr < 0])
        raise InputError(
            f"{name}: expected label values >= 0, found negative values {_fmt_values(values)} "
            f"({int((arr < 0).sum())} voxels)"
        )
    if num_classes is not None and hi >= num_classes:
        over = arr >= num_classes
        values = np.unique(arr[over])
        raise InputError(
            f"{name}: expected label values in 0..{num_classes - 1} (num_classes={num_classes}), "
            f"found {_fmt_values(values)} ({int(over.sum())} voxels)"
        )
    out_dtype = _label_dtype(int(hi))
    if arr.dtype != out_dtype:
        arr = arr.astype(out_dtype)
    if hi == 0:
        logger.warning("%s: label map holds only background (all voxels are 0)", name)
    return arr


def _fmt_affine(affine: np.ndarray) -> str:
    return np.array2string(np.asarray(affine, dtype=np.float64) + 0.0, precision=4, suppress_small=True, max_line_width=120)


def _fmt_tuple(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def check_same_grid(
    a: Volume, b: Volume, *, atol: float = 1e-3, names: Sequence[str] | None = None
) -> None:
    """Raise unless ``a`` and ``b`` share one voxel grid: same shape and same affine within ``atol``.

    Args:
        a: first volume (e.g. the image).
        b: second volume (e.g. its label).
        atol: largest allowed absolute difference between affine entries (mm), default ``1e-3``.
        names: two names for the message; default the volumes' ``.path`` (or "first"/"second volume").

    Raises:
        GeometryError: naming both volumes with their shapes, spacings, orientations, origins and
            affines; the fix (``resample_to``) is suggested when only the affine differs.

    Example:
        >>> v = Volume(np.zeros((4, 4, 4)))
        >>> check_same_grid(v, Volume(np.ones((4, 4, 4))))
    """
    if names is None:
        names = (_name(a.path, "first volume"), _name(b.path, "second volume"))
    if len(names) != 2:
        raise InputError(f"`names` must hold two names, got {list(names)!r}")
    name_a, name_b = (str(n) for n in names)
    shape_a, shape_b = a.shape[:3], b.shape[:3]
    same_shape = shape_a == shape_b
    diff = float(np.max(np.abs(a.affine - b.affine)))
    if same_shape and diff <= atol:
        return
    problems = []
    if not same_shape:
        problems.append(f"shape {shape_a} vs {shape_b}")
    if diff > atol:
        problems.append(f"affines differ by up to {diff:.4g} mm (tolerance atol={atol:g})")
    hint = "Resample one onto the other in world coordinates with medrefine.io.resample_to(moving, reference)."
    raise GeometryError(
        f"{name_a} and {name_b} are expected to share one voxel grid, found {' and '.join(problems)}.\n"
        f"  {name_a}: shape {shape_a}, spacing {_fmt_tuple(a.spacing)}, orientation {a.orientation}, "
        f"origin {_fmt_tuple(a.origin)}, affine\n{_fmt_affine(a.affine)}\n"
        f"  {name_b}: shape {shape_b}, spacing {_fmt_tuple(b.spacing)}, orientation {b.orientation}, "
        f"origin {_fmt_tuple(b.origin)}, affine\n{_fmt_affine(b.affine)}\n{hint}"
    )

"""Resample a volume onto another's voxel grid in world coordinates.

Every voxel of the reference grid is mapped to world (RAS+ mm) by the reference affine, then into
the moving volume's voxel space by the inverse of its affine, and the moving array is sampled
there: ``index_moving = inv(A_moving) @ A_reference @ index_reference``. Flips, axis permutations,
other origins and other spacings are all handled by that one matrix.

MONAI's ``SpatialResample`` computes the same mapping with torch; here ``scipy.ndimage`` is used so
``medrefine.io`` stays free of torch and nearest-neighbour label resampling stays exact on large
integer volumes (no float32 round trip of the label values).
"""

from __future__ import annotations

import numpy as np

from medrefine.errors import InputError
from medrefine.io.volume import Volume

__all__ = ["resample_to"]


def _grid_matrix(moving: Volume, reference: Volume) -> np.ndarray:
    return np.linalg.inv(moving.affine) @ reference.affine


def _as_axis_mapping(matrix: np.ndarray, atol: float = 1e-4) -> tuple[list[int], list[int], list[int]] | None:
    """If ``matrix`` maps grid points onto grid points (a signed axis permutation with an integer
    offset: flips, transposes, shifted origins), return per output axis (source axis, sign, offset)."""
    lin, off = matrix[:3, :3], matrix[:3, 3]
    rounded = np.rint(lin)
    if not np.allclose(lin, rounded, atol=atol) or not np.allclose(off, np.rint(off), atol=atol):
        return None
    if not (np.abs(rounded).sum(axis=0) == 1).all() or not (np.abs(rounded).sum(axis=1) == 1).all():
        return None
    axes = [int(np.flatnonzero(rounded[:, a])[0]) for a in range(3)]
    signs = [int(rounded[axes[a], a]) for a in range(3)]
    offsets = [int(np.rint(off[axes[a]])) for a in range(3)]
    return axes, signs, offsets


def _take_axis_mapping(
    array: np.ndarray, mapping: tuple[list[int], list[int], list[int]], out_shape: tuple[int, ...], fill_value: float
) -> np.ndarray:
    """Exact resampling by indexing when the grids line up voxel for voxel (see ``_as_axis_mapping``)."""
    axes, signs, offsets = mapping
    src = np.transpose(array, axes)
    index, valid = [], []
    for a in range(3):
        idx = signs[a] * np.arange(out_shape[a]) + offsets[a]
        ok = (idx >= 0) & (idx < src.shape[a])
        index.append(idx[ok])
        valid.append(ok)
    out = np.full(out_shape, np.asarray(fill_value).astype(array.dtype), dtype=array.dtype)
    out[np.ix_(*valid)] = src[np.ix_(*index)]
    return out


def _nearest(array: np.ndarray, matrix: np.ndarray, out_shape: tuple[int, ...], fill_value: float) -> np.ndarray:
    """Nearest-neighbour sampling of ``array`` at ``matrix @ index`` for every index of ``out_shape``.

    Done by hand rather than with ``scipy.ndimage.affine_transform(order=0)``, whose ``constant``
    mode drops points a rounding error outside the first or last voxel (so a flipped grid loses
    its border), and which goes through float64 for every dtype. Processed in slabs along the last
    axis to bound memory.
    """
    out = np.empty(out_shape, dtype=array.dtype)
    bounds = np.asarray(array.shape)[:, None]
    fill = np.asarray(fill_value).astype(array.dtype)
    plane = out_shape[0] * out_shape[1]
    step = max(1, (1 << 20) // max(plane, 1))
    ii, jj = np.meshgrid(np.arange(out_shape[0]), np.arange(out_shape[1]), indexing="ij")
    for k0 in range(0, out_shape[2], step):
        k1 = min(k0 + step, out_shape[2])
        n = k1 - k0
        idx = np.empty((3, plane * n), dtype=np.float64)
        idx[0] = np.tile(ii.ravel(), n)
        idx[1] = np.tile(jj.ravel(), n)
        idx[2] = np.repeat(np.arange(k0, k1), plane)
        coords = np.rint(matrix[:3, :3] @ idx + matrix[:3, 3:4]).astype(np.int64)
        inside = np.all((coords >= 0) & (coords < bounds), axis=0)
        flat = np.full(coords.shape[1], fill, dtype=array.dtype)
        flat[inside] = array[coords[0, inside], coords[1, inside], coords[2, inside]]
        # flat is ordered (k, i, j) with i, j fastest: reshape then move k last
        out[:, :, k0:k1] = flat.reshape(n, out_shape[0], out_shape[1]).transpose(1, 2, 0)
    return out


def resample_to(moving: Volume, reference: Volume, *, order: int = 0, fill_value: float = 0.0) -> Volume:
    """Resample ``moving`` onto the voxel grid (shape and affine) of ``reference``.

    Args:
        moving: the volume to resample, array ``(X, Y, Z)`` or ``(X, Y, Z, C)`` (channels resampled
            one by one).
        reference: the volume whose grid the result takes (only its shape and affine are used).
        order: interpolation order: ``0`` nearest neighbour (labels, keeps the dtype), ``1`` linear
            (images, float32 output unless the input is float64), up to ``5`` for splines.
            Default ``0``.
        fill_value: value for reference voxels that fall outside the moving volume. Default ``0``.

    Returns:
        A new :class:`Volume` with ``reference``'s shape and affine (``path`` is ``None``).

    Raises:
        InputError: if ``order`` is not an integer in 0..5, or the volumes are not 2D/3D.

    Example:
        >>> label = load_label("ct_dicom_seg.nii.gz")
        >>> image = load_image("ct_dicom")
        >>> on_image = resample_to(label, image)           # nearest neighbour
        >>> on_image.shape == image.shape
        True
    """
    from scipy import ndimage

    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= 5:
        raise InputError(f"`order` must be an integer in 0..5 (0 nearest, 1 linear), got {order!r}")
    if not isinstance(moving, Volume) or not isinstance(reference, Volume):
        raise InputError(
            f"`moving` and `reference` must be Volume objects, got {type(moving).__name__} and {type(reference).__name__}"
        )
    ref_shape = reference.shape[:3]
    if len(ref_shape) < 2 or moving.array.ndim < 2:
        raise InputError(
            f"expected 2D or 3D volumes, got moving shape {moving.shape} and reference shape {reference.shape}"
        )
    matrix = _grid_matrix(moving, reference)
    moving_array = np.asarray(moving.array)
    spatial = min(moving_array.ndim, 3)
    # same grid: nothing to interpolate
    if moving.shape[:spatial] == tuple(ref_shape) and np.allclose(matrix, np.eye(4), atol=1e-6):
        return Volume(array=moving_array.copy(), affine=reference.affine.copy(), path=None)

    # work in 3D: a 2D array is a single slice along the third axis
    src = moving_array if moving_array.ndim >= 3 else moving_array[..., None]
    out_shape = tuple(ref_shape) if len(ref_shape) == 3 else (*ref_shape, 1)
    channels = src.shape[3:]
    src = src.reshape(*src.shape[:3], -1)

    if order == 0:
        out_dtype = src.dtype
    elif src.dtype == np.float64:
        out_dtype = np.dtype(np.float64)
    else:
        out_dtype = np.dtype(np.float32)
    result = np.empty((*out_shape, src.shape[3]), dtype=out_dtype)
    mapping = _as_axis_mapping(matrix)
    for c in range(src.shape[3]):
        channel = src[..., c]
        if mapping is not None:
            result[..., c] = _take_axis_mapping(channel, mapping, out_shape, fill_value)
        elif order == 0:
            result[..., c] = _nearest(channel, matrix, out_shape, fill_value)
        else:
            work = channel if np.issubdtype(channel.dtype, np.floating) else channel.astype(np.float32)
            result[..., c] = ndimage.affine_transform(
                work,
                matrix[:3, :3],
                offset=matrix[:3, 3],
                output_shape=out_shape,
                order=order,
                mode="grid-constant",
                cval=fill_value,
                prefilter=order > 1,
            )
    result = result.reshape(*out_shape, *channels)
    if len(ref_shape) == 2:
        result = result[:, :, 0, ...]
    return Volume(array=result, affine=reference.affine.copy(), path=None)

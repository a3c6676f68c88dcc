"""A blob phantom for the point-supervision (PA-Seg) benchmark: one lumpy target in texture.

The target imitates a small lesion such as PA-Seg's vestibular schwannoma: a sphere whose radius
is modulated by a smooth random field (a lumpy, star-shaped blob, about 25-35 % of the field of view
across), brighter than a background that carries smooth low-frequency shading, a mid-frequency
texture with a few bright and dark patches, and Gaussian noise. The blob has a soft, slightly
blurred edge, so the edge is visible to a geodesic distance but not trivially sharp.
Everything is in millimetres, so another spacing changes the field of view, not the blob.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medrefine.errors import InputError

__all__ = ["make_blob_phantom"]


def _check(size, spacing) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    shape = (size,) * 3 if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else tuple(size)
    if len(shape) != 3 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 16 for s in shape):
        raise InputError(f"`size` must be an integer >= 16 or 3 such integers, got {size!r}")
    sp = (float(spacing),) * 3 if isinstance(spacing, (int, float)) else tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise InputError(f"`spacing` must have 3 positive finite values, got {spacing!r}")
    return tuple(int(s) for s in shape), sp  # type: ignore[return-value]


def make_blob_phantom(
    size: int | Sequence[int] = 48,
    *,
    seed: int = 0,
    spacing: float | Sequence[float] = (1.0, 1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Make one blob phantom: textured image and binary label. Deterministic in ``seed``.

    Args:
        size: voxels per axis (int for a cube, or 3 ints), at least 16. Default 48.
        seed: seed of the :class:`numpy.random.Generator`. Default 0.
        spacing: voxel size in mm (one value or 3). Default 1 mm isotropic.

    Returns:
        ``(image, label, spacing)``: ``image`` float32 ``(X, Y, Z)`` with background around 0.3 and
        the blob around 0.7 (plus texture and noise), ``label`` uint8 ``(X, Y, Z)`` in {0, 1} (one
        connected blob, not touching the border), and the spacing as a tuple. Place it in the
        world with :func:`medrefine.data.phantoms.phantom_affine`.

    Raises:
        InputError: ``size`` below 16 or not integer, ``spacing`` not positive.

    Example:
        >>> image, label, spacing = make_blob_phantom(32, seed=1)
        >>> image.shape, image.dtype, sorted(np.unique(label).tolist())
        ((32, 32, 32), dtype('float32'), [0, 1])
    """
    from scipy import ndimage

    from medrefine.data.corruption import _smooth_field

    shape, sp = _check(size, spacing)
    rng = np.random.default_rng(seed)
    extent = np.asarray(shape) * np.asarray(sp)  # field of view, mm
    fov = float(extent.min())
    axes = [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape, sp)]
    # centre: within the middle fifth of the field of view
    centre = rng.uniform(-0.1, 0.1, size=3) * extent
    x, y, z = (axes[0] - centre[0])[:, None, None], (axes[1] - centre[1])[None, :, None], (axes[2] - centre[2])[None, None, :]
    radius_mm = np.sqrt(x**2 + y**2 + z**2)
    base = fov * rng.uniform(0.13, 0.17)
    lumps = _smooth_field(rng, shape, sp, wavelength_mm=base * 2.0)
    label = (radius_mm < base * (1.0 + 0.3 * lumps)).astype(np.uint8)
    # keep the component holding the centre (the blob is one piece)
    components, count = ndimage.label(label)
    if count > 1:
        sizes = ndimage.sum(label, components, index=range(1, count + 1))
        label = (components == 1 + int(np.argmax(sizes))).astype(np.uint8)

    shading = 0.08 * _smooth_field(rng, shape, sp, wavelength_mm=fov * 1.5)
    texture = 0.06 * _smooth_field(rng, shape, sp, wavelength_mm=fov / 6.0)
    patches = 0.12 * np.clip(_smooth_field(rng, shape, sp, wavelength_mm=fov / 3.0) * 2.0, -1.0, 1.0)
    contrast = rng.uniform(0.35, 0.45)
    soft = ndimage.gaussian_filter(label.astype(np.float32), sigma=[0.6 / s * min(sp) for s in sp])
    image = 0.3 + shading + texture + patches * (1.0 - soft) + contrast * soft
    image += rng.normal(0.0, 0.04, size=shape)
    return image.astype(np.float32), label, sp

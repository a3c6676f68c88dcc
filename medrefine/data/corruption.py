"""Annotation corruption that imitates an imperfect (junior) annotator.

The NeAR paper (Yang et al., MICCAI 2022, arXiv:2206.15328) trains and evaluates annotation
refinement on labels distorted from the reference (mean Dice 0.71 on its adrenal data).
:func:`corrupt_label` produces such labels for any multi-class label map, in five steps that
each copy a habit of hurried annotation:

1. **smooth boundary displacement**: the label is warped (nearest neighbour) by a smooth random
   displacement field, so boundaries wander by a few millimetres over tens of millimetres;
2. **per-class erosion / dilation**: each class is drawn systematically too tight or too
   generous (Euclidean erosion / dilation; vacated voxels go to the nearest other label);
3. **sparse slices**: only every k-th slice along ``slice_axis`` is "drawn"; the slices between
   come from shape-based interpolation (the per-class 2D signed distances of the two
   neighbouring drawn slices are blended linearly), as in interactive annotation tools;
4. **missed thin structures**: classes thinner than ~3 mm in radius (coronaries, small vessels)
   lose pieces along their length;
5. **spurious blobs**: small ellipsoids of a class are painted next to (or away from) it.

One ``severity`` in [0, 1] sets all step sizes (:func:`corruption_params`); the named levels were
calibrated on the cardiac phantoms of :mod:`medrefine.data.phantoms` at 64^3 (2.25 mm) to a
mean foreground Dice of ~0.85 (``"mild"``), ~0.75 (``"moderate"``) and ~0.6 (``"severe"``)
against the clean label; ``benchmarks/noise_severity.py`` measures it (see docs/phantoms.md).
Step sizes are in millimetres, so pass ``spacing`` for images whose voxels are not 1 mm.

All steps are vectorised with :mod:`scipy.ndimage` (a 64^3 label takes well under a second).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medrefine.errors import InputError, did_you_mean

__all__ = ["SEVERITY_LEVELS", "CorruptionParams", "corrupt_label", "corruption_params"]

#: Named severities -> severity in [0, 1] (calibrated on 64^3 cardiac phantoms, see module doc).
SEVERITY_LEVELS: dict[str, float] = {"mild": 0.29, "moderate": 0.49, "severe": 0.7}

_THIN_RADIUS_MM = 3.0


@dataclass(frozen=True)
class CorruptionParams:
    """Step sizes of :func:`corrupt_label` (all lengths in mm).

    Attributes:
        displacement_mm: peak amplitude of the smooth boundary displacement.
        displacement_wavelength_mm: typical wavelength of the displacement field.
        morphology_mm: largest per-class erosion / dilation radius.
        slice_gap_mm: distance between drawn slices (0: every slice drawn).
        thin_drop_fraction: fraction of each thin structure's voxels dropped (about).
        num_blobs: number of spurious blobs.
        blob_radius_mm: largest blob semi-axis.
    """

    displacement_mm: float
    displacement_wavelength_mm: float
    morphology_mm: float
    slice_gap_mm: float
    thin_drop_fraction: float
    num_blobs: int
    blob_radius_mm: float


def _severity_value(severity: str | float) -> float:
    if isinstance(severity, str):
        if severity not in SEVERITY_LEVELS:
            raise InputError(
                f"`severity` must be one of {list(SEVERITY_LEVELS)} or a float in [0, 1], got {severity!r}."
                f"{did_you_mean(severity, SEVERITY_LEVELS)}"
            )
        return SEVERITY_LEVELS[severity]
    if isinstance(severity, bool) or not isinstance(severity, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"`severity` must be a name {list(SEVERITY_LEVELS)} or a float, got {type(severity).__name__}"
        )
    value = float(severity)
    if not 0.0 <= value <= 1.0:
        raise InputError(f"`severity` must be in [0, 1], got {value}")
    return value


def corruption_params(severity: str | float = "moderate") -> CorruptionParams:
    """Map a severity (a name of :data:`SEVERITY_LEVELS` or a float in [0, 1]) to step sizes.

    Every size grows with the severity (displacement and erosion / dilation quadratically); 0 means no corruption at all.

    Args:
        severity: ``"mild"``, ``"moderate"``, ``"severe"`` or a float in [0, 1].

    Returns:
        The :class:`CorruptionParams`.

    Raises:
        InputError: unknown name or a value outside [0, 1].
        TypeError: ``severity`` is neither a string nor a number.

    Example:
        >>> corruption_params(0.0).num_blobs
        0
    """
    s = _severity_value(severity)
    return CorruptionParams(
        displacement_mm=4.0 * s + 8.0 * s**2,
        displacement_wavelength_mm=45.0,
        morphology_mm=2.0 * s + 5.0 * s**2,
        slice_gap_mm=0.0 if s < 0.15 else 3.0 + 10.0 * s,
        thin_drop_fraction=min(0.9, 0.6 * s),
        num_blobs=round(16 * s),
        blob_radius_mm=2.0 + 6.0 * s,
    )


# --------------------------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------------------------


def _axis_mm(n: int, spacing: float) -> np.ndarray:
    return ((np.arange(n) - (n - 1) / 2.0) * spacing).astype(np.float32)


def _smooth_field(rng: np.random.Generator, shape, spacing, wavelength_mm: float, num_modes: int = 12) -> np.ndarray:
    """Smooth random field in [-1, 1]: a sum of separable random cosine modes (mm wavelengths)."""
    field = np.zeros(shape, np.float32)
    for _ in range(num_modes):
        parts = []
        for axis in range(3):
            omega = 2 * np.pi / wavelength_mm * rng.uniform(0.5, 1.5)
            parts.append(np.cos(omega * _axis_mm(shape[axis], spacing[axis]) + rng.uniform(0, 2 * np.pi)))
        field += np.float32(rng.normal()) * parts[0][:, None, None] * parts[1][None, :, None] * parts[2][None, None, :]
    field *= math.sqrt(2.0 / num_modes)
    return np.clip(field, -1.0, 1.0, out=field)


def _warp(label: np.ndarray, rng, spacing, amplitude_mm: float, wavelength_mm: float) -> np.ndarray:
    from scipy import ndimage

    coords = np.indices(label.shape, dtype=np.float32)
    for axis in range(3):
        coords[axis] += _smooth_field(rng, label.shape, spacing, wavelength_mm) * (amplitude_mm / spacing[axis])
    return ndimage.map_coordinates(label, coords, order=0, mode="nearest")


def _bbox(mask: np.ndarray, margin: Sequence[int]) -> tuple[slice, ...] | None:
    slices = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        slices.append(slice(max(0, hits[0] - margin[axis]), min(mask.shape[axis], hits[-1] + margin[axis] + 1)))
    return tuple(slices)


def _morphology(label: np.ndarray, rng, spacing, classes, radius_mm: float) -> np.ndarray:
    """Per class, in random order: erode or dilate by a random radius up to ``radius_mm``."""
    from scipy import ndimage

    out = label.copy()
    order = rng.permutation(classes)
    radii = rng.uniform(0.3, 1.0, size=len(order)) * radius_mm * rng.choice([-1.0, 0.0, 1.0], size=len(order),
                                                                             p=[0.4, 0.2, 0.4])
    for value, radius in zip(order, radii):
        if abs(radius) < 0.5 * min(spacing):
            continue
        margin = [math.ceil(abs(radius) / s) + 1 for s in spacing]
        box = _bbox(out == value, margin)
        if box is None:
            continue
        view = out[box]
        mask = view == value
        if radius > 0:  # dilate: paint over neighbours within `radius`
            grow = ndimage.distance_transform_edt(~mask, sampling=spacing) <= radius
            view[grow] = value
        else:  # erode: give the rim to the nearest other label
            dist, nearest = ndimage.distance_transform_edt(mask, sampling=spacing, return_indices=True)
            rim = mask & (dist <= -radius)
            view[rim] = view[tuple(idx[rim] for idx in nearest)]
    return out


def _sparse_slices(label: np.ndarray, rng, spacing, classes, gap_mm: float, axis: int) -> np.ndarray:
    """Keep every k-th slice along ``axis``; fill the others by shape-based interpolation."""
    from scipy import ndimage

    n = label.shape[axis]
    step = round(gap_mm / spacing[axis])
    if step <= 1 or n < 3:
        return label
    drawn = np.arange(int(rng.integers(step)), n, step)
    if drawn.size < 2:
        return label
    moved = np.moveaxis(label, axis, -1)
    plane_spacing = [s for a, s in enumerate(spacing) if a != axis]
    stack = moved[..., drawn]
    # position of every slice between its two drawn neighbours
    pos = np.clip(np.arange(n), drawn[0], drawn[-1])
    lower = np.clip(np.searchsorted(drawn, pos, side="right") - 1, 0, drawn.size - 2)
    weight = ((pos - drawn[lower]) / (drawn[lower + 1] - drawn[lower])).astype(np.float32)
    cap = max(gap_mm, 2.0 * max(plane_spacing))
    far = 1e4  # mm between stacked slices: EDT never crosses slices that hold the class

    best = np.full(moved.shape, np.inf, np.float32)
    result = np.zeros(moved.shape, label.dtype)
    margin = [math.ceil(cap / s) + 1 for s in plane_spacing] + [0]
    for value in [0, *classes]:
        mask = stack == value
        if value == 0:
            box = (slice(None), slice(None), slice(None))
        else:
            box = _bbox(mask, margin)
            if box is None:
                continue
            box = (box[0], box[1], slice(None))
        sub = mask[box]
        sampling = (*plane_spacing, far)
        inside = ndimage.distance_transform_edt(sub, sampling=sampling)
        outside = ndimage.distance_transform_edt(~sub, sampling=sampling)
        sdf = np.where(sub, 0.5 * min(plane_spacing) - inside, outside - 0.5 * min(plane_spacing))
        np.minimum(sdf, cap, out=sdf)
        sdf = sdf.astype(np.float32)
        score = sdf[..., lower] * (1.0 - weight) + sdf[..., lower + 1] * weight
        target = best[box[0], box[1], :]
        better = score < target
        target[better] = score[better]
        result[box[0], box[1], :][better] = value
    return np.moveaxis(result, -1, axis)


def _thin_classes(label: np.ndarray, spacing, classes) -> list[int]:
    from scipy import ndimage

    thin = []
    limit = max(_THIN_RADIUS_MM, 1.5 * max(spacing))
    for value in classes:
        box = _bbox(label == value, [1, 1, 1])
        if box is None:
            continue
        mask = label[box] == value
        if ndimage.distance_transform_edt(mask, sampling=spacing).max() <= limit:
            thin.append(int(value))
    return thin


def _drop_thin(label: np.ndarray, rng, spacing, thin, fraction: float) -> np.ndarray:
    """Remove pieces (balls around random voxels) of thin structures until ``fraction`` is gone."""
    out = label.copy()
    sp = np.asarray(spacing, dtype=np.float32)
    for value in thin:
        idx = np.argwhere(out == value)
        if idx.shape[0] < 2:
            continue
        pts = idx * sp
        extent = float(np.linalg.norm(pts.max(0) - pts.min(0)))
        radius = max(4.0 * float(sp.max()), 0.08 * extent)
        keep = np.ones(len(idx), bool)
        target = round(fraction * len(idx))
        for _ in range(50):
            if (~keep).sum() >= target:
                break
            centre = pts[rng.integers(len(idx))]
            keep &= ((pts - centre) ** 2).sum(1) > radius**2
        gone = idx[~keep]
        out[gone[:, 0], gone[:, 1], gone[:, 2]] = 0
    return out


def _blobs(label: np.ndarray, rng, spacing, classes, count: int, radius_mm: float) -> np.ndarray:
    """Paint ``count`` small random ellipsoids of random classes near (70%) or away from them."""
    out = label.copy()
    if count <= 0 or len(classes) == 0:
        return out
    sp = np.asarray(spacing, dtype=np.float64)
    foreground = np.argwhere(label > 0)
    for _ in range(count):
        value = int(rng.choice(classes))
        idx = np.argwhere(out == value)
        if idx.size == 0:
            continue
        axes = rng.uniform(0.4, 1.0, size=3) * radius_mm
        if rng.random() < 0.7:
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction) or 1.0
            centre = idx[rng.integers(len(idx))] * sp + direction * axes.mean() * rng.uniform(0.5, 1.2)
        else:
            centre = foreground[rng.integers(len(foreground))] * sp
        lo = np.maximum(0, np.floor((centre - axes) / sp)).astype(int)
        hi = np.minimum(label.shape, np.ceil((centre + axes) / sp) + 1).astype(int)
        if np.any(hi <= lo):
            continue
        grids = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        inside = sum(((g * s - c) / a) ** 2 for g, s, c, a in zip(grids, sp, centre, axes)) <= 1.0
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][inside] = value
    return out


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def corrupt_label(
    label: np.ndarray,
    *,
    severity: str | float = "moderate",
    seed: int | np.random.Generator | None = 0,
    num_classes: int | None = None,
    spacing: float | Sequence[float] | None = None,
    slice_axis: int = 2,
) -> np.ndarray:
    """Return a copy of ``label`` distorted the way an imperfect annotator would draw it.

    See the module docstring for the five steps. The input is never modified; the result has
    the same shape and dtype and only values that occur in the input (plus background).

    Args:
        label: integer label map ``(X, Y, Z)``, values in ``[0, num_classes)``, 0 = background.
        severity: ``"mild"`` | ``"moderate"`` | ``"severe"`` (mean foreground Dice ~0.85 / 0.75 /
            0.6 on the cardiac phantoms) or a float in [0, 1] (0 returns an exact copy).
            Default ``"moderate"``.
        seed: seed or :class:`numpy.random.Generator`; the same seed gives the same result.
            Default 0.
        num_classes: number of classes including background; checked against the values when
            given. Default: ``label.max() + 1``.
        spacing: voxel size in mm (one value or 3). Default 1 mm. All step sizes are in mm.
        slice_axis: the axis whose slices the annotator draws (2 = axial for RAS arrays).

    Returns:
        The corrupted label, same shape and dtype as ``label``.

    Raises:
        TypeError: ``label`` is not an integer numpy array.
        InputError: ``label`` is not 3D, holds negative values or values >= ``num_classes``;
            bad ``severity``, ``spacing`` or ``slice_axis``.

    Example:
        >>> from medrefine.data.phantoms import make_cardiac_phantom
        >>> _, label, spacing = make_cardiac_phantom(32, seed=0)
        >>> noisy = corrupt_label(label, severity="moderate", seed=1, spacing=spacing)
        >>> noisy.shape == label.shape and noisy.dtype == label.dtype
        True
    """
    if not isinstance(label, np.ndarray):
        raise TypeError(f"`label` must be a numpy array, got {type(label).__name__}")
    if not np.issubdtype(label.dtype, np.integer):
        raise TypeError(f"`label` must have an integer dtype, got {label.dtype}")
    if label.ndim != 3:
        raise InputError(f"`label` must be 3D (X, Y, Z), got shape {label.shape}")
    if label.size == 0:
        raise InputError(f"`label` is empty, got shape {label.shape}")
    low, high = int(label.min()), int(label.max())
    if low < 0:
        raise InputError(f"`label` values must be >= 0, got minimum {low}")
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise InputError(f"`num_classes` must be a positive integer, got {num_classes!r}")
        if high >= num_classes:
            raise InputError(f"`label` values must be < num_classes={num_classes}, got maximum {high}")
    if spacing is None:
        spacing_mm = (1.0, 1.0, 1.0)
    else:
        spacing_mm = (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(s) for s in spacing)
        if len(spacing_mm) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing_mm):
            raise InputError(f"`spacing` must be one or 3 positive values in mm, got {spacing!r}")
    if slice_axis not in (0, 1, 2):
        raise InputError(f"`slice_axis` must be 0, 1 or 2, got {slice_axis!r}")
    params = corruption_params(severity)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if _severity_value(severity) == 0.0 or high == 0:
        return label.copy()

    classes = [int(v) for v in np.unique(label) if v > 0]
    thin = _thin_classes(label, spacing_mm, classes)
    out = label
    if params.displacement_mm > 0:
        out = _warp(out, rng, spacing_mm, params.displacement_mm, params.displacement_wavelength_mm)
    if params.morphology_mm > 0:
        out = _morphology(out, rng, spacing_mm, classes, params.morphology_mm)
    if params.slice_gap_mm > 0:
        out = _sparse_slices(out, rng, spacing_mm, classes, params.slice_gap_mm, slice_axis)
    if params.thin_drop_fraction > 0 and thin:
        out = _drop_thin(out, rng, spacing_mm, thin, params.thin_drop_fraction)
    out = _blobs(out, rng, spacing_mm, classes, params.num_blobs, params.blob_radius_mm)
    return np.ascontiguousarray(out, dtype=label.dtype)

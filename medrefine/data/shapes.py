"""Geometry primitives for the phantoms: ellipsoids and tubes in world millimetres.

Shapes are rasterised inside their own bounding boxes, so painting a thin tube into a 128^3 grid
costs what the tube covers, not what the grid holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Grid", "ellipsoid_mask", "spline", "paint_tube", "paint_ellipsoid", "random_rotation", "smooth_field"]



@dataclass
class Grid:
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def axis_mm(self, axis: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        n = self.shape[axis]
        stop = n if stop is None else stop
        return ((np.arange(start, stop) - (n - 1) / 2.0) * self.spacing[axis]).astype(np.float32)

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[tuple[slice, ...], list[np.ndarray]] | None:
        """Voxel slices covering the world box [lo, hi] and the broadcastable mm coordinates."""
        slices, coords = [], []
        for axis in range(3):
            n, sp = self.shape[axis], self.spacing[axis]
            i0 = max(0, math.floor(lo[axis] / sp + (n - 1) / 2.0))
            i1 = min(n, math.ceil(hi[axis] / sp + (n - 1) / 2.0) + 1)
            if i1 <= i0:
                return None
            slices.append(slice(i0, i1))
            view = [1, 1, 1]
            view[axis] = i1 - i0
            coords.append(self.axis_mm(axis, i0, i1).reshape(view))
        return tuple(slices), coords


def ellipsoid_mask(grid: Grid, centre: np.ndarray, axes: np.ndarray, clip=None):
    """Mask of the ellipsoid ``{centre + axes @ u : |u| <= 1}`` (``axes`` columns = semi-axes).

    ``clip`` = (point, normal) keeps only the half-space ``(x - point) . normal <= 0``.
    """
    half = np.sqrt((axes**2).sum(axis=1))
    found = grid.box(centre - half, centre + half)
    if found is None:
        return None, None
    slices, (x, y, z) = found
    inv = np.linalg.inv(axes).astype(np.float32)
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    total = np.zeros(tuple(s.stop - s.start for s in slices), np.float32)
    for k in range(3):
        total += (inv[k, 0] * dx + inv[k, 1] * dy + inv[k, 2] * dz) ** 2
    mask = total <= 1.0
    if clip is not None:
        point, normal = clip
        mask &= (dx + centre[0] - point[0]) * normal[0] + (dy + centre[1] - point[1]) * normal[1] + (
            dz + centre[2] - point[2]
        ) * normal[2] <= 0
    return slices, mask


def spline(points: np.ndarray, step_mm: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Points along a smooth curve (Catmull-Rom) through the control ``points`` (N, 3).

    Returns the curve points (M, 3) and their parameter in [0, N - 1] (control point i at i).
    """
    pts = np.asarray(points, dtype=np.float64)
    padded = np.vstack([2 * pts[0] - pts[1], pts, 2 * pts[-1] - pts[-2]])
    out, param = [pts[:1]], [np.zeros(1)]
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1], padded[i], padded[i + 1], padded[i + 2]
        n = max(2, math.ceil(np.linalg.norm(p2 - p1) / step_mm))
        t = np.linspace(0, 1, n + 1)[1:, None]
        param.append(i - 1 + t[:, 0])
        out.append(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    return np.vstack(out), np.concatenate(param)


def paint_tube(label, grid, points, radii, value, *, only_background=False) -> None:
    """Paint a tube (capsules between consecutive centreline points) with ``value``."""
    radii = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(points),))
    for a, b, ra, rb in zip(points[:-1], points[1:], radii[:-1], radii[1:]):
        r = max(ra, rb)
        found = grid.box(np.minimum(a, b) - r, np.maximum(a, b) + r)
        if found is None:
            continue
        slices, (x, y, z) = found
        ab = b - a
        denom = float(ab.dot(ab)) or 1e-9
        px, py, pz = x - a[0], y - a[1], z - a[2]
        t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / denom, 0.0, 1.0)
        dist2 = (px - t * ab[0]) ** 2 + (py - t * ab[1]) ** 2 + (pz - t * ab[2]) ** 2
        mask = dist2 <= (ra + t * (rb - ra)) ** 2
        view = label[slices]
        if only_background:
            mask &= view == 0
        view[mask] = value


def paint_ellipsoid(label, grid, centre, axes, value, clip=None) -> None:
    slices, mask = ellipsoid_mask(grid, centre, axes, clip)
    if slices is not None:
        label[slices][mask] = value


def random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    angles = np.deg2rad(rng.normal(0.0, max_deg / 2.0, size=3).clip(-max_deg, max_deg))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def smooth_field(rng: np.random.Generator, grid: Grid, wavelength_mm: float) -> np.ndarray:
    """A smooth random field in [-1, 1] with wavelengths around ``wavelength_mm``."""
    from medrefine.data.corruption import _smooth_field

    return _smooth_field(rng, grid.shape, grid.spacing, wavelength_mm)

"""Signed distance functions (SDFs) for building phantoms: primitives, smooth booleans, sampling.

A shape is a function from points (millimetres) to the signed distance to its surface: negative
inside, positive outside. Shapes combine with (smooth) unions and subtractions, so anatomy can be
modelled as a few primitives blended together (Quilez, "Smooth minimum", iquilezles.org; Hart,
"Sphere tracing", The Visual Computer 1996) and rasterised at any resolution.

Evaluation is done on a :class:`SampleBlock`: a box of sample points on a regular world grid
(possibly finer than the voxel grid, for partial volume) seen through a similarity pose (the
shapes live in a body frame; the block converts world to body points). Each primitive evaluates
only inside its bounding box and returns :data:`FAR` elsewhere, so a thin tube costs what it
covers, not what the block holds. Values are exact distances for spheres, capsules and planes,
and close approximations (exact sign, distance within a factor of the axis ratio) for ellipsoids
and superellipsoids, which is all smooth booleans and thresholds need.

MONAI and scipy have no SDF modelling; this module is the small part of it the phantoms need.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FAR",
    "Ellipsoid",
    "HalfSpace",
    "Pose",
    "SampleBlock",
    "Superellipsoid",
    "Tube",
    "resample_polyline",
    "smooth_max",
    "smooth_min",
]

#: Value returned outside a primitive's bounding box (mm): "far outside".
FAR = np.float32(1.0e3)


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: a union of two SDFs with a fillet of size ``k`` (mm).

    Equals ``min(a, b)`` where ``|a - b| >= k``; ``k = 0`` is the hard union.

    Example:
        >>> float(smooth_min(np.float32(0.0), np.float32(0.0), 2.0))
        -0.5
    """
    if k <= 0:
        return np.minimum(a, b)
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * (k / 4.0)


def smooth_max(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth maximum (intersection); ``smooth_max(a, -b, k)`` subtracts ``b`` from ``a``."""
    return -smooth_min(-a, -b, k)


@dataclass(frozen=True)
class Pose:
    """Similarity transform body -> world: ``world = scale * rotation @ body + shift`` (mm)."""

    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: float = 1.0

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """Body points ``(..., 3)`` -> world points ``(..., 3)``."""
        return self.scale * np.asarray(points, dtype=np.float64) @ self.rotation.T + self.shift

    def to_body(self, points: np.ndarray) -> np.ndarray:
        """World points ``(..., 3)`` -> body points ``(..., 3)``."""
        return ((np.asarray(points, dtype=np.float64) - self.shift) @ self.rotation) / self.scale


class SampleBlock:
    """A box of sample points on a regular world grid, seen in the body frame of a :class:`Pose`.

    Args:
        axes_mm: three 1D arrays, the world coordinates (mm) of the samples along each axis.
        pose: body -> world transform of the shapes evaluated on the block.
    """

    def __init__(self, axes_mm: Sequence[np.ndarray], pose: Pose) -> None:
        self.axes = [np.asarray(a, dtype=np.float64) for a in axes_mm]
        self.shape = tuple(len(a) for a in self.axes)
        self.pose = pose

    def window(self, centre_body: np.ndarray, radius_body: float) -> tuple[slice, ...] | None:
        """Index box of the samples within ``radius_body`` (per axis) of a body point, or None."""
        centre = self.pose.to_world(centre_body)
        half = radius_body * self.pose.scale
        slices = []
        for axis, coords in enumerate(self.axes):
            i0 = int(np.searchsorted(coords, centre[axis] - half, side="left"))
            i1 = int(np.searchsorted(coords, centre[axis] + half, side="right"))
            if i1 <= i0:
                return None
            slices.append(slice(i0, i1))
        return tuple(slices)

    def body_points(self, window: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Body-frame coordinates ``(x, y, z)`` of the samples in ``window`` (float32 arrays)."""
        wx = (self.axes[0][window[0]] - self.pose.shift[0])[:, None, None]
        wy = (self.axes[1][window[1]] - self.pose.shift[1])[None, :, None]
        wz = (self.axes[2][window[2]] - self.pose.shift[2])[None, None, :]
        rot, s = self.pose.rotation, self.pose.scale
        # body = R^T (world - shift) / s: row k of R^T is column k of R
        return tuple(
            ((rot[0, k] * wx + rot[1, k] * wy + rot[2, k] * wz) / s).astype(np.float32) for k in range(3)
        )  # type: ignore[return-value]

    def far(self) -> np.ndarray:
        """An array of :data:`FAR` over the whole block."""
        return np.full(self.shape, FAR, np.float32)


class _Primitive(abc.ABC):
    """A shape with a bounding sphere (body frame); ``render`` fills the block (world mm)."""

    centre: np.ndarray
    bound: float
    margin: float = 8.0

    @abc.abstractmethod
    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Signed distance (body-frame units) at the points ``(x, y, z)``."""

    def render(self, block: SampleBlock) -> np.ndarray:
        out = block.far()
        window = block.window(self.centre, self.bound + self.margin)
        if window is not None:
            out[window] = self.distance(*block.body_points(window)) * block.pose.scale
        return out


def _local(x, y, z, centre, rotation):
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    r = rotation.astype(np.float32)
    return (r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz, r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
            r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz)


class HalfSpace(_Primitive):
    """The half-space ``(p - point) . normal <= 0`` (exact signed distance; evaluated everywhere)."""

    def __init__(self, point, normal) -> None:
        self.point = np.asarray(point, dtype=np.float64)
        normal = np.asarray(normal, dtype=np.float64)
        self.normal = normal / np.linalg.norm(normal)
        self.centre, self.bound, self.margin = self.point, 1.0e6, 0.0

    def distance(self, x, y, z):
        n = self.normal.astype(np.float32)
        return (x - np.float32(self.point[0])) * n[0] + (y - np.float32(self.point[1])) * n[1] + (
            z - np.float32(self.point[2])) * n[2]


class Ellipsoid(_Primitive):
    """Ellipsoid with semi-axes ``semi_axes`` along the columns of ``rotation`` (body mm).

    Distance outside by Quilez's approximation ``k0 (k0 - 1) / k1``, inside by
    ``(k0 - 1) min(semi_axes)`` (both exact for spheres; exact sign everywhere).
    """

    def __init__(self, centre, semi_axes, rotation=None) -> None:
        self.centre = np.asarray(centre, dtype=np.float64)
        self.semi_axes = np.asarray(semi_axes, dtype=np.float64)
        self.rotation = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
        self.bound = float(self.semi_axes.max())

    def distance(self, x, y, z):
        u, v, w = _local(x, y, z, self.centre, self.rotation)
        a, b, c = (np.float32(s) for s in self.semi_axes)
        k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)
        k1 = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2 + (w / c**2) ** 2)
        outside = k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)
        return np.where(k0 < 1.0, (k0 - 1.0) * np.float32(self.semi_axes.min()), outside)


class Superellipsoid(Ellipsoid):
    """Superellipsoid ``sum |u_i / a_i|^p = 1`` (``p > 2``: boxier, ``p < 2``: pinched).

    Distance approximated as ``(F - 1) * min(a)`` with ``F`` the ``p``-norm of ``u / a`` (exact
    sign; a lower bound of the distance near the surface).
    """

    def __init__(self, centre, semi_axes, exponent: float = 2.5, rotation=None) -> None:
        super().__init__(centre, semi_axes, rotation)
        self.exponent = float(exponent)
        self.bound = float(np.linalg.norm(self.semi_axes))

    def distance(self, x, y, z):
        u, v, w = _local(x, y, z, self.centre, self.rotation)
        p = np.float32(self.exponent)
        a, b, c = (np.float32(s) for s in self.semi_axes)
        norm = (np.abs(u / a) ** p + np.abs(v / b) ** p + np.abs(w / c) ** p) ** (1.0 / p)
        return (norm - 1.0) * np.float32(self.semi_axes.min())


class Tube(_Primitive):
    """A swept sphere along a polyline with linearly varying radius (a chain of round cones).

    Evaluated segment by segment inside each segment's bounding box, so long thin tubes are cheap.
    The distance is ``|p - c(t)| - r(t)`` with ``c(t)`` the closest point of the segment (exact for
    a constant radius, close for gentle tapers).

    Args:
        points: ``(N, 3)`` centreline points (body mm), ``N >= 2``.
        radii: one radius or ``N`` radii (mm).
    """

    def __init__(self, points, radii) -> None:
        self.points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if len(self.points) < 2:
            raise ValueError(f"`points` of a Tube must hold at least 2 points, got {len(self.points)}")
        self.radii = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(self.points),)).copy()
        lo, hi = self.points.min(0), self.points.max(0)
        self.centre = (lo + hi) / 2
        self.bound = float(np.linalg.norm(hi - lo) / 2 + self.radii.max())

    def distance(self, x, y, z):
        """Distance at points given as arrays broadcastable to ``(N,)`` (all segments at once)."""
        pts = np.stack(np.broadcast_arrays(x, y, z), axis=-1).reshape(-1, 1, 3).astype(np.float64)
        p0, p1 = self.points[:-1][None], self.points[1:][None]
        seg = p1 - p0
        t = np.clip(((pts - p0) * seg).sum(-1) / np.maximum((seg * seg).sum(-1), 1e-12), 0.0, 1.0)
        d = np.linalg.norm(pts - (p0 + t[..., None] * seg), axis=-1) - (self.radii[:-1] + t * np.diff(self.radii))
        return d.min(axis=1).reshape(np.broadcast(x, y, z).shape).astype(np.float32)

    def render(self, block: SampleBlock) -> np.ndarray:
        out = block.far()
        margin = self.margin
        for (p0, p1), (r0, r1) in zip(zip(self.points[:-1], self.points[1:]), zip(self.radii[:-1], self.radii[1:])):
            half = float(np.linalg.norm(p1 - p0)) / 2 + max(r0, r1) + margin
            window = block.window((p0 + p1) / 2, half)
            if window is None:
                continue
            x, y, z = block.body_points(window)
            seg = (p1 - p0).astype(np.float32)
            length2 = float(seg @ seg)
            dx, dy, dz = x - np.float32(p0[0]), y - np.float32(p0[1]), z - np.float32(p0[2])
            t = (dx * seg[0] + dy * seg[1] + dz * seg[2]) / max(length2, 1e-12)
            t = np.clip(t, 0.0, 1.0)
            d = np.sqrt((dx - t * seg[0]) ** 2 + (dy - t * seg[1]) ** 2 + (dz - t * seg[2]) ** 2)
            d = d - (np.float32(r0) + t * np.float32(r1 - r0))
            np.minimum(out[window], d * np.float32(block.pose.scale), out=out[window])
        return out

    def length(self) -> float:
        """Centreline length (body mm)."""
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())


def resample_polyline(points: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` (mm) along a polyline, first and last kept."""
    points = np.asarray(points, dtype=np.float64)
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(math.ceil(arc[-1] / step)) + 1)
    s = np.linspace(0.0, arc[-1], n)
    return np.stack([np.interp(s, arc, points[:, k]) for k in range(3)], axis=1)

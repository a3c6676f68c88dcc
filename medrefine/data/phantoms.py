"""Synthetic cardiac CT phantoms with MultiNeAR's 11 classes, and cohorts of them on disk.

The anatomy lives in a continuous frame measured in millimetres around the heart (so a phantom
looks the same at any grid size): the left ventricle is a thick-walled, base-truncated
ellipsoid whose wall is the myocardium, the right ventricle a crescent wrapping it, the atria
sit above the base, the aorta arches up from the LV outflow and descends behind the left
atrium, the pulmonary artery rises from the RV outflow and splits, the left atrial appendage is
a small lobe off the LA, four pulmonary veins enter the LA from behind, and the coronary
arteries are thin tubes running over the epicardium (left main, LAD, circumflex, RCA with its
posterior descending branch). Every case draws its own sizes, shapes, pose, fat thickness,
contrast and noise from a seeded :class:`numpy.random.Generator`.

The default grid covers a 144 mm cube around the heart (the field of view of a heart-cropped
cardiac CT): spacing ``144 / size`` mm, i.e. 2.25 mm at 64^3, 1.125 mm at 128^3. Tubes are
never thinner than 0.7 voxel in radius, so the coronaries stay present and mostly connected on
coarse grids (at 32^3 they are thicker in millimetres than real ones).

Intensities are CT-like (HU): contrast-filled left-heart blood ~320-420, right heart a little
lower, myocardium ~80-130, chamber and vessel walls ~60, epicardial fat ~-100, lung ~-800, body
soft tissue ~40, a vertebral body ~450, air -1000; then Gaussian blur (0.6 voxel) and
slightly correlated Gaussian noise (sigma 15-30 HU).

Class table: :data:`CARDIAC_CLASSES` (the MultiNeAR / MM-WHS-style cardiac structures).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medrefine.data.shapes import (
    Grid,
    paint_ellipsoid,
    paint_tube,
    random_rotation,
    smooth_field,
    spline,
)
from medrefine.data.phantom_cohort import NOISE_LEVELS
from medrefine.errors import InputError

__all__ = [
    "CARDIAC_CLASSES",
    "FIELD_OF_VIEW_MM",
    "NOISE_LEVELS",
    "make_cardiac_cohort",
    "make_cardiac_phantom",
    "phantom_affine",
]

logger = logging.getLogger(__name__)

CARDIAC_CLASSES: dict[int, str] = {
    0: "background",
    1: "myocardium",
    2: "left_atrium",
    3: "left_ventricle",
    4: "right_atrium",
    5: "right_ventricle",
    6: "aorta",
    7: "pulmonary_artery",
    8: "left_atrial_appendage",
    9: "coronary_arteries",
    10: "pulmonary_veins",
}

#: Edge length (mm) of the cube the default grid covers.
FIELD_OF_VIEW_MM = 144.0


MYO, LA, LV, RA, RV, AO, PA, LAA, COR, PV = range(1, 11)

# Fixed anatomical tilt: columns are the heart frame's axes written in body RAS+ coordinates.
#   z_h: long axis, apex -> base (the apex points anterior, left and inferior);
#   x_h: from the LV across the septum towards the RV;  y_h = z_h x x_h.
_Z_H = np.array([0.55, -0.50, 0.65])
_Z_H /= np.linalg.norm(_Z_H)
_X_H = np.array([0.60, 0.70, -0.10])
_X_H -= _X_H.dot(_Z_H) * _Z_H
_X_H /= np.linalg.norm(_X_H)
_Y_H = np.cross(_Z_H, _X_H)
_TILT = np.stack([_X_H, _Y_H, _Z_H], axis=1)

# Body-frame offset (mm, relative to the LV cavity centre) of the point placed at the centre of
# the field of view; chosen so the heart and the roots of the great vessels sit in the middle.
_FOV_CENTRE = np.array([8.0, -10.0, 14.0])


# --------------------------------------------------------------------------------------------
# the anatomy
# --------------------------------------------------------------------------------------------


def _draw_anatomy(rng: np.random.Generator) -> dict:
    """Per-case anatomical parameters in the heart / body frames (millimetres)."""

    def u(lo, hi, size=None):
        return rng.uniform(lo, hi, size)

    def jitter(points, sd=2.5):
        pts = np.asarray(points, dtype=np.float64)
        return pts + rng.normal(0.0, sd, size=pts.shape)

    p = {
        "scale": u(0.9, 1.1),
        "rotation": random_rotation(rng, 12.0),
        "shift": rng.normal(0.0, 3.0, size=3),
        "lv_axes": np.array([u(19, 23), u(19, 23), u(36, 42)]),
        "lv_wall": u(8.0, 11.5),
        "base_z": u(18, 22),
        "rv_axes": np.array([u(23, 28), u(33, 38), u(34, 40)]),
        "rv_centre": np.array([u(25, 30), u(5, 11), u(0, 5)]),
        "la_axes": np.array([u(24, 29), u(18, 22), u(19, 23)]),
        "la_centre": np.array([u(-14, -8), u(-19, -13), u(38, 44)]),
        "ra_axes": np.array([u(19, 24), u(17, 21), u(20, 25)]),
        "ra_centre": np.array([u(24, 30), u(-21, -15), u(32, 38)]),
        "laa_size": np.array([u(17, 21), u(9, 11), u(8, 10)]),
        "laa_dir": np.array([-0.75, 0.55, 0.35]) + rng.normal(0, 0.12, 3),
        "ao_radius": u(11.0, 14.0),
        "pa_radius": u(11.0, 13.5),
        "pv_radius": u(5.0, 6.5, size=4),
        "cor_radius": u(1.4, 1.8),
        "lad_phi": u(45, 65),
        "pda_phi": u(-80, -55),
        "lcx_end": u(200, 250),
        "fat_mm": u(3.0, 8.0),
        "midline_x": u(14, 26),
        "chest_y": u(58, 75),
        "diaphragm_z": u(-70, -50),
    }
    # vessel centrelines, body frame relative to the LV cavity centre
    p["aorta"] = jitter(
        [[14, -6, 12], [18, -4, 32], [22, 0, 55], [12, -16, 82], [-6, -42, 74], [-14, -50, 40], [-15, -52, 0],
         [-14, -52, -45], [-12, -50, -90]]
    )
    p["pa"] = jitter([[-2, 18, 30], [-8, 10, 46], [-10, -8, 58]])
    p["lpa"] = jitter([[-10, -8, 58], [-32, -22, 60], [-58, -32, 55]])
    p["rpa"] = jitter([[-10, -8, 58], [12, -20, 58], [40, -26, 52], [62, -28, 48]])
    p["rvot"] = jitter([[10, 18, 8], [3, 20, 20], [-2, 18, 31]], 1.5)
    p["pv_jitter"] = rng.normal(0.0, 3.0, size=(4, 3))
    return p


def _to_world(p: dict, points: np.ndarray) -> np.ndarray:
    """Body-frame points (relative to the LV centre) -> world mm (FOV centre at the origin)."""
    pts = np.atleast_2d(points) - _FOV_CENTRE
    return (pts * p["scale"]) @ p["rotation"].T + p["shift"]


def _heart_to_body(points: np.ndarray) -> np.ndarray:
    return np.atleast_2d(points) @ _TILT.T


def _axes_world(p: dict, axes_body: np.ndarray) -> np.ndarray:
    return p["rotation"] @ axes_body * p["scale"]


def _rasterise(grid: Grid, p: dict) -> np.ndarray:
    label = np.zeros(grid.shape, np.uint8)
    min_r = 0.7 * max(grid.spacing)
    s = p["scale"]

    def tube(points_body, radius, value, only_background=False, step=1.5, surface=False, ostium=False):
        curve, param = spline(points_body, step_mm=step)
        if surface:  # keep the centreline on the outer surface of the heart (in the grooves)
            curve = push_out(curve, skip_aorta=ostium)
        pts = _to_world(p, curve)
        radius = np.atleast_1d(np.asarray(radius, dtype=np.float64))
        if radius.size > 1:
            radius = np.interp(param, np.linspace(0, len(points_body) - 1, radius.size), radius)
        r = np.maximum(radius * s, min_r)
        paint_tube(label, grid, pts, r, value, only_background=only_background)

    def ellipsoid(centre_h, axes_h, value, clip_z=None):
        centre_w = _to_world(p, _heart_to_body(centre_h))[0]
        axes_w = _axes_world(p, _TILT @ np.diag(axes_h))
        clip = None
        if clip_z is not None:
            point = _to_world(p, _heart_to_body([0.0, 0.0, clip_z]))[0]
            clip = (point, p["rotation"] @ _Z_H)
        paint_ellipsoid(label, grid, centre_w, axes_w, value, clip)

    lv_c = np.array([0.0, 0.0, -4.0])
    la_c, ra_c = p["la_centre"], p["ra_centre"]
    la_body = _heart_to_body(la_c)[0]

    # 1. vessels first; the chambers painted afterwards own the junctions
    pv_offsets = [([-1, -0.45, 0.55], [-1, -0.5, 0.75]), ([-1, -0.4, -0.35], [-1, -0.45, -0.6]),
                  ([1, -0.35, 0.5], [1, -0.45, 0.7]), ([1, -0.3, -0.35], [1, -0.4, -0.6])]
    for (start, end), radius, shake in zip(pv_offsets, p["pv_radius"], p["pv_jitter"]):
        start = la_body + np.array(start) * [18, 14, 12]
        end = la_body + np.array(end) * [44, 30, 22] + shake
        tube([start, (start + end) / 2, end], radius, PV)
    laa_dir = p["laa_dir"] / np.linalg.norm(p["laa_dir"])
    laa_root = la_body + laa_dir * p["la_axes"][0] * 0.8
    tube([la_body + laa_dir * 10, laa_root + laa_dir * p["laa_size"][0] * 0.6], p["laa_size"][1] * 0.75, LAA)
    laa_axes = np.stack(
        [laa_dir, np.cross(laa_dir, [0, 0, 1.0]), np.cross(laa_dir, np.cross(laa_dir, [0, 0, 1.0]))], axis=1
    )
    laa_axes /= np.linalg.norm(laa_axes, axis=0)
    tube(p["aorta"], p["ao_radius"], AO, step=2.0)
    tube(p["pa"], p["pa_radius"], PA, step=2.0)
    tube(p["lpa"], [p["pa_radius"], 0.75 * p["pa_radius"], 0.7 * p["pa_radius"]], PA, step=2.0)
    tube(p["rpa"], [p["pa_radius"], 0.75 * p["pa_radius"], 0.7 * p["pa_radius"], 0.65 * p["pa_radius"]], PA, step=2.0)

    # 2. chambers
    ellipsoid(ra_c, p["ra_axes"], RA)
    ellipsoid(la_c, p["la_axes"], LA)
    centre_w = _to_world(p, laa_root + laa_dir * p["laa_size"][0])[0]  # the LAA lobe, outside the LA
    paint_ellipsoid(label, grid, centre_w, _axes_world(p, laa_axes * p["laa_size"]), LAA)
    tube(p["rvot"], [0.7 * p["rv_axes"][0], 0.65 * p["pa_radius"] + 3, p["pa_radius"]], RV)
    ellipsoid(p["rv_centre"], p["rv_axes"], RV, clip_z=p["base_z"] + 2)
    epi = p["lv_axes"] + p["lv_wall"]
    epi = epi * [1, 1, 0.92 + 0.08 * p["lv_axes"][2] / 40]
    ellipsoid(lv_c, epi, MYO, clip_z=p["base_z"] + 2)
    ellipsoid(lv_c, p["lv_axes"], LV, clip_z=p["base_z"])

    # 3. coronary arteries over the epicardium (painted into background only)
    r_cor = p["cor_radius"]
    off = r_cor + 0.8
    laa_centre = laa_root + laa_dir * p["laa_size"][0]
    laa_inverse = np.linalg.inv(laa_axes * (p["laa_size"] + off))
    chambers = [  # (centre, semi-axes, clip height) in the heart frame
        (lv_c, epi, p["base_z"] + 2), (p["rv_centre"], p["rv_axes"], p["base_z"] + 2),
        (ra_c, p["ra_axes"], None), (la_c, p["la_axes"], None),
    ]
    vessels = [  # (centreline, radius) in the body frame
        (spline(p[name], 2.0)[0], radius)
        for name, radius in (("aorta", p["ao_radius"]), ("pa", p["pa_radius"]), ("lpa", p["pa_radius"]),
                             ("rpa", p["pa_radius"]), ("rvot", 0.7 * p["rv_axes"][0]))
    ]

    def blocked(pts_b: np.ndarray, skip_aorta: bool) -> np.ndarray:
        pts_h = pts_b @ _TILT
        inside = ((((pts_b - laa_centre) @ laa_inverse.T) ** 2).sum(1) <= 1.0)
        for centre, axes, clip_z in chambers:
            q = (((pts_h - centre) / (np.asarray(axes) + off)) ** 2).sum(1) <= 1.0
            if clip_z is not None:
                q &= pts_h[:, 2] <= clip_z + off
            inside |= q
        for k, (line, radius) in enumerate(vessels):
            if k == 0 and skip_aorta:
                continue
            d2 = ((pts_b[:, None, :] - line[None, :, :]) ** 2).sum(-1).min(1)
            inside |= d2 <= (radius + off) ** 2
        return inside

    def push_out(points_b: np.ndarray, skip_aorta: bool = False) -> np.ndarray:
        """Move points radially away from the LV axis until they clear the other structures."""
        pts = np.array(points_b, dtype=np.float64)
        radial = (pts @ _TILT) * [1.0, 1.0, 0.0]
        radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-6)
        radial = _heart_to_body(radial)
        for _ in range(60):
            inside = blocked(pts, skip_aorta)
            if not inside.any():
                break
            pts[inside] += radial[inside]
        return pts

    def on_epi(phi_deg, theta_deg):
        phi, theta = np.deg2rad(phi_deg), np.deg2rad(theta_deg)
        a = epi + off
        return lv_c + np.array([a[0] * np.sin(theta) * np.cos(phi), a[1] * np.sin(theta) * np.sin(phi),
                                a[2] * np.cos(theta)])

    theta_base = np.rad2deg(np.arccos(np.clip((p["base_z"] - 2 - lv_c[2]) / (epi[2] + off), -1, 1))) + 4
    ao_root = p["aorta"][0]
    lm_start = ao_root + np.array([-0.6, 0.1, 0.3]) * p["ao_radius"]
    bif = _heart_to_body(on_epi(100, theta_base))[0]
    lad = [_heart_to_body(on_epi(p["lad_phi"] + 20 * (1 - t), theta_base + t * (165 - theta_base)))[0]
           for t in np.linspace(0, 1, 9)]
    lcx = [_heart_to_body(on_epi(100 + t * (p["lcx_end"] - 100), theta_base + 6 * t))[0] for t in np.linspace(0, 1, 8)]
    tube([lm_start, (lm_start + bif) / 2 + [-3, 6, 0], bif], r_cor * 1.15, COR, only_background=True, surface=True,
         ostium=True)
    tube([bif] + lad, np.linspace(r_cor, 0.7 * r_cor, 10), COR, only_background=True, surface=True)
    tube(lcx, np.linspace(r_cor * 0.95, 0.7 * r_cor, 8), COR, only_background=True, surface=True)

    rv_c, rv_a = p["rv_centre"], p["rv_axes"]
    z_groove = p["base_z"] - 1
    frac = math.sqrt(max(0.05, 1 - ((z_groove - rv_c[2]) / rv_a[2]) ** 2))
    rca = [ao_root + np.array([0.7, 0.35, 0.2]) * p["ao_radius"]]
    for psi in np.deg2rad(np.linspace(105, -115, 9)):
        h = rv_c + np.array([(rv_a[0] + off + 1) * frac * np.cos(psi), (rv_a[1] + off + 1) * frac * np.sin(psi),
                             z_groove - rv_c[2]])
        rca.append(_heart_to_body(h)[0])
    pda = [_heart_to_body(on_epi(p["pda_phi"], theta_base + t * (118 - theta_base)))[0] for t in np.linspace(0, 1, 6)]
    tube(rca + pda, np.linspace(r_cor * 1.05, 0.7 * r_cor, len(rca) + len(pda)), COR, only_background=True,
         surface=True)
    return label


# --------------------------------------------------------------------------------------------
# intensities
# --------------------------------------------------------------------------------------------


def _render_image(label: np.ndarray, grid: Grid, p: dict, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    left_blood = rng.uniform(320, 420)
    right_blood = left_blood - rng.uniform(20, 130)
    hu = {
        MYO: rng.uniform(80, 130), LA: left_blood, LV: left_blood, RA: right_blood, RV: right_blood,
        AO: left_blood, PA: right_blood, LAA: left_blood - rng.uniform(0, 40), COR: left_blood,
        PV: left_blood,
    }
    fat_hu, lung_hu, soft_hu, wall_hu = rng.uniform(-120, -80), rng.uniform(-850, -750), rng.uniform(30, 60), 60.0
    noise_sd = rng.uniform(15, 30)

    # environment (body frame, not rotated with the heart)
    x = grid.axis_mm(0).reshape(-1, 1, 1) - p["shift"][0]
    y = grid.axis_mm(1).reshape(1, -1, 1) - p["shift"][1]
    z = grid.axis_mm(2).reshape(1, 1, -1) - p["shift"][2]
    # body coordinates relative to the LV centre
    bx, by, bz = x + _FOV_CENTRE[0], y + _FOV_CENTRE[1], z + _FOV_CENTRE[2]
    mid = p["midline_x"]
    image = np.full(grid.shape, soft_hu, np.float32)
    for side in (-1, 1):
        lung = ((bx - (mid + side * 80)) / 72) ** 2 + ((by + 15) / 95) ** 2 + ((bz - 20) / 160) ** 2 <= 1
        lung &= bz > p["diaphragm_z"] + (12 if side > 0 else 0) + 0.004 * (bx - mid) ** 2
        image[np.broadcast_to(lung, grid.shape)] = lung_hu
    image[np.broadcast_to(by > p["chest_y"], grid.shape)] = soft_hu
    image[np.broadcast_to((by > p["chest_y"] - 6) & (by <= p["chest_y"]), grid.shape)] = fat_hu
    image[np.broadcast_to(by > p["chest_y"] + 22, grid.shape)] = -1000.0
    spine = ((bx - mid) / 20) ** 2 + ((by + 88) / 17) ** 2 <= 1
    image[np.broadcast_to(spine, grid.shape)] = 450.0
    image += 25.0 * smooth_field(rng, grid, 30.0) * (image < -500)

    # epicardial fat and chamber / vessel walls around the heart
    heart = label > 0
    d_heart, nearest = ndimage.distance_transform_edt(~heart, sampling=grid.spacing, return_indices=True)
    fat_mm = p["fat_mm"] * (1.0 + 0.6 * smooth_field(rng, grid, 60.0))
    image[(d_heart > 0) & (d_heart <= fat_mm)] = fat_hu
    walled = np.isin(label[tuple(nearest)], [LA, RA, RV, AO, PA, LAA, PV])
    del nearest
    image[(d_heart > 0) & (d_heart <= max(2.5, 0.6 * max(grid.spacing))) & walled] = wall_hu
    for value, level in hu.items():
        image[label == value] = level

    image = ndimage.gaussian_filter(image, 0.6, mode="nearest")
    noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, grid.shape).astype(np.float32), 0.5)
    noise *= noise_sd / max(float(noise.std()), 1e-6)
    return (image + noise).astype(np.float32)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def _check_size(size) -> tuple[int, int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        shape = (int(size),) * 3
    elif isinstance(size, Sequence) and len(size) == 3 and all(isinstance(s, (int, np.integer)) for s in size):
        shape = tuple(int(s) for s in size)
    else:
        raise InputError(f"`size` must be an int or 3 ints (voxels per axis), got {size!r}")
    if min(shape) < 16:
        raise InputError(f"`size` must be at least 16 voxels per axis, got {shape}")
    return shape  # type: ignore[return-value]


def _check_spacing(spacing, shape) -> tuple[float, float, float]:
    if spacing is None:
        return tuple(FIELD_OF_VIEW_MM / n for n in shape)  # type: ignore[return-value]
    values = (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"`spacing` must be one or 3 positive values in mm, got {spacing!r}")
    return values  # type: ignore[return-value]


def phantom_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """RAS+ voxel-to-world affine of a phantom grid: axis-aligned, centred on the origin.

    Args:
        shape: grid shape ``(X, Y, Z)``.
        spacing: voxel size in mm per axis.

    Returns:
        ``(4, 4)`` float64 affine.

    Example:
        >>> float(phantom_affine((64, 64, 64), (2.25, 2.25, 2.25))[0, 3])
        -70.875
    """
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = [-(n - 1) / 2.0 * s for n, s in zip(shape, spacing)]
    return affine


def make_cardiac_phantom(
    size: int | Sequence[int] = 64,
    *,
    seed: int = 0,
    spacing: float | Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Make one synthetic cardiac CT: image (HU) and 11-class label (MultiNeAR's classes).

    Deterministic: the same ``seed`` gives the same arrays; shapes, pose, contrast and noise
    vary between seeds. See the module docstring for the anatomy and intensity model.

    Args:
        size: voxels per axis (an int for a cube, or 3 ints); 32..128 is the tested range.
            Default 64.
        seed: seed of the case's :class:`numpy.random.Generator`. Default 0.
        spacing: voxel size in mm (one value or 3). Default ``144 / size`` (a 144 mm field of
            view around the heart). The anatomy is in millimetres, so a different spacing
            changes the field of view, not the heart's size.

    Returns:
        ``(image, label, spacing)``: ``image`` float32 ``(X, Y, Z)`` in HU, ``label`` uint8
        ``(X, Y, Z)`` with values 0..10 (:data:`CARDIAC_CLASSES`), and the spacing used. Arrays
        are indexed (i, j, k) = (R, A, S) as in :func:`phantom_affine`.

    Raises:
        InputError: ``size`` below 16 or not integer; ``spacing`` not positive.

    Example:
        >>> image, label, spacing = make_cardiac_phantom(32, seed=1)
        >>> image.shape, int(label.max()), spacing
        ((32, 32, 32), 10, (4.5, 4.5, 4.5))
    """
    shape = _check_size(size)
    spacing_mm = _check_spacing(spacing, shape)
    rng = np.random.default_rng(seed)
    params = _draw_anatomy(rng)
    grid = Grid(shape, spacing_mm)
    label = _rasterise(grid, params)
    image = _render_image(label, grid, params, rng)
    return image, label, spacing_mm


def make_cardiac_cohort(
    out_dir: str | Path,
    *,
    cases: int = 8,
    size: int | Sequence[int] = 64,
    noise: str | float = "moderate",
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a cohort of cardiac phantoms with clean and noisy labels, and its datalist.

    The layout of :mod:`medrefine.data.phantom_cohort` (``images/``, ``labels/`` clean,
    ``labels_noisy/`` after :func:`~medrefine.data.corruption.corrupt_label`, ``classes.json``,
    ``datalist.json`` with ``label`` = noisy and ``label_clean``).

    The cohort is built in a temporary sibling folder and renamed into place at the end, so an
    interrupted run leaves nothing half-written. Case ``i`` uses the phantom seed
    ``SeedSequence([seed, i])`` and the corruption seed ``SeedSequence([seed, i, 1])``.

    Args:
        out_dir: folder to create. It may exist only if empty, unless ``overwrite``.
        cases: number of cases (>= 1). Default 8.
        size: voxels per axis (see :func:`make_cardiac_phantom`). Default 64.
        noise: annotation corruption: ``"none"``, ``"mild"``, ``"moderate"``, ``"severe"`` or a
            severity in [0, 1]. With ``"none"`` the noisy labels equal the clean ones.
        seed: cohort seed. Default 0.
        overwrite: replace an existing non-empty ``out_dir``. Default False.
        progress: show a tqdm progress bar on stderr. Default False.

    Returns:
        Path of ``datalist.json``.

    Raises:
        InputError: ``out_dir`` exists and is not empty (without ``overwrite``) or is a file;
            bad ``cases``, ``size`` or ``noise``.

    Example:
        >>> make_cardiac_cohort("cohort", cases=2, size=32, noise="mild")  # doctest: +SKIP
        PosixPath('cohort/datalist.json')
    """
    from medrefine.data.corruption import corrupt_label
    from medrefine.data.phantom_cohort import check_noise_level, write_phantom_cohort

    shape = _check_size(size)
    check_noise_level(noise)
    spacing = _check_spacing(None, shape)

    def make_case(i: int):
        case_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        noise_seed = int(np.random.SeedSequence([seed, i, 1]).generate_state(1)[0])
        image, label, spacing_used = make_cardiac_phantom(shape, seed=case_seed)
        if noise == "none" or (not isinstance(noise, str) and float(noise) == 0.0):
            noisy = label.copy()
        else:
            noisy = corrupt_label(label, severity=noise, seed=noise_seed, num_classes=len(CARDIAC_CLASSES),
                                  spacing=spacing_used)
        return image, label, noisy, phantom_affine(shape, spacing_used)

    return write_phantom_cohort(
        out_dir, cases, make_case, classes=CARDIAC_CLASSES, name="medrefine cardiac phantoms",
        description=(
            f"{cases} synthetic cardiac CT phantoms ({'x'.join(map(str, shape))} voxels, spacing "
            f"{tuple(round(s, 4) for s in spacing)} mm), annotation noise {noise!r}, seed {seed}; "
            "'label' is the noisy label, 'label_clean' the reference"
        ),
        overwrite=overwrite, progress=progress,
    )  # fmt: skip

"""A second cardiac phantom family: hearts built from signed distance functions.

Why a second family: a refinement recipe tuned on one synthetic family can fit that family's
quirks (its shapes, its image model, its noise) and not carry over to real cohorts. Tune on one
family, report on the other. This family shares only the class table
(:data:`~medrefine.data.phantoms.CARDIAC_CLASSES`) and the on-disk layout with
:mod:`medrefine.data.phantoms`; anatomy, image and noise are built differently:

- **anatomy** from SDFs (:mod:`medrefine.data.sdf`) in a body frame (RAS, millimetres, origin at
  the field-of-view centre): the LV cavity and myocardium as base-truncated ellipsoids (the
  myocardium is the epicardium minus the cavity), the RV as an ellipsoid plus outflow tract minus
  the epicardium (a crescent), the atria as superellipsoids, the aorta (ascending and descending,
  the latter just behind the LA) and the pulmonary trunk with its branches as swept tubes, the
  LAA and four pulmonary veins as **thin-necked protrusions** of the LA (a narrow neck then a wider
  body), and the coronary arteries as **connected trees** of tapering tubes (left main -> LAD
  with diagonals + circumflex with an obtuse marginal; RCA with an acute marginal and the
  posterior descending artery; radii 1.5-2.5 mm) laid on the heart's offset surface by
  projecting their paths along the SDF gradient;
- **image** from tissue classes on a supersampled grid (``supersample^3`` samples per voxel,
  averaged: partial volume), with a contrast phase drawn per case (arterial, pulmonary or late:
  blood-to-myocardium contrast from ~300 HU down to ~60 HU), epicardial fat, lungs, a liver dome
  under the heart and the descending aorta behind the LA at blood-pool intensity (similar-intensity
  neighbours, so leaks are plausible), a smooth multiplicative bias field on attenuation, and
  Gaussian noise correlated in-plane only (a CT-like noise texture);
- **labels** are the tissue of each voxel's centre sample (exactly the same for any odd
  ``supersample``).

At the defaults (64^3, 1.5 mm, a 96 mm field of view) the heart fills the field; great vessels,
lungs and liver are cut by its edges.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from medrefine.data.phantoms import CARDIAC_CLASSES
from medrefine.data.sdf import (
    Ellipsoid,
    HalfSpace,
    Pose,
    SampleBlock,
    Superellipsoid,
    Tube,
    resample_polyline,
    smooth_max,
    smooth_min,
)
from medrefine.errors import InputError

__all__ = ["CONTRAST_PHASES", "CORONARY_RADIUS_MM", "HeartAnatomy", "draw_heart_anatomy", "make_heart_sdf_phantom"]

logger = logging.getLogger(__name__)

MYO, LA, LV, RA, RV, AO, PA, LAA, COR, PV = range(1, 11)
FAT, LIVER, LUNG, BONE, SOFT = range(11, 16)

#: Contrast phases a case is drawn from, with their probabilities.
CONTRAST_PHASES: dict[str, float] = {"arterial": 0.5, "pulmonary": 0.25, "late": 0.25}

#: Range of the coronary radii (mm, after the case's scale).
CORONARY_RADIUS_MM = (1.5, 2.5)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    angles = np.deg2rad(rng.uniform(-max_deg, max_deg, 3))
    out = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = math.cos(angle), math.sin(angle)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


@dataclass
class HeartAnatomy:
    """One case's shapes (body frame, mm) and pose; see :func:`draw_heart_anatomy`.

    Attributes:
        pose: body -> world similarity transform.
        shapes: primitives by name (``"lv"``, ``"epi"``, ``"rv"``, ``"la"``, ...).
        coronary_trees: per tree (``"left"``, ``"right"``) its tubes, trunk first.
        params: scalar draws (sizes, radii, fat thickness) for reports and tests.
    """

    pose: Pose
    shapes: dict
    coronary_trees: dict[str, list[Tube]]
    params: dict


# --------------------------------------------------------------------------------------------
# composition: one function for blocks of samples and for loose points
# --------------------------------------------------------------------------------------------


def _compose(shapes: dict, ev: Callable) -> dict[int, np.ndarray]:
    """Signed distances of the chambers and vessels (classes 1..8 and 10), composed from shapes."""
    lv = smooth_max(ev(shapes["lv"]), ev(shapes["lv_base"]), 2.0)
    epi = smooth_max(ev(shapes["epi"]), ev(shapes["epi_base"]), 3.0)
    rv = smooth_max(smooth_min(ev(shapes["rv"]), ev(shapes["rvot"]), 6.0), ev(shapes["rv_base"]), 3.0)
    rv = np.maximum(rv, -epi)
    la, ra = ev(shapes["la"]), ev(shapes["ra"])
    ao_raw = np.minimum(ev(shapes["aorta"]), ev(shapes["aorta_desc"]))
    ao = np.maximum(ao_raw, -lv)
    pa = np.maximum(np.minimum(ev(shapes["pa"]), np.minimum(ev(shapes["lpa"]), ev(shapes["rpa"]))), -rv)
    laa = np.maximum(smooth_min(ev(shapes["laa_neck"]), ev(shapes["laa_body"]), 1.5), -la)
    pv = None
    for k in range(4):
        vein = smooth_min(ev(shapes[f"pv{k}_neck"]), ev(shapes[f"pv{k}_body"]), 1.0)
        pv = vein if pv is None else np.minimum(pv, vein)
    pv = np.maximum(pv, -la)
    myo = np.maximum(np.maximum(epi, -lv), -ao_raw)
    return {MYO: myo, LA: la, LV: lv, RA: ra, RV: rv, AO: ao, PA: pa, LAA: laa, PV: pv,
            0: epi}


def _heart_surface(shapes: dict, pts: np.ndarray) -> np.ndarray:
    """Smooth union of the heart's big structures at body points ``(N, 3)`` (mm)."""
    x, y, z = (pts[:, k].astype(np.float32) for k in range(3))
    f = _compose(shapes, lambda s: s.distance(x, y, z))
    out = f[0]
    for c in (LA, RA, RV, AO, PA, LAA):
        out = smooth_min(out, f[c], 5.0)
    return out


def _project(shapes: dict, pts: np.ndarray, offset: np.ndarray, iterations: int = 6) -> np.ndarray:
    """Move points along the SDF gradient onto the surface at ``offset`` mm outside the heart."""
    pts = np.array(pts, dtype=np.float64)
    h = 0.25
    for _ in range(iterations):
        d = _heart_surface(shapes, pts)
        grad = np.stack([
            (_heart_surface(shapes, pts + h * e) - _heart_surface(shapes, pts - h * e)) / (2 * h) for e in np.eye(3)
        ], axis=1)
        grad /= np.maximum((grad**2).sum(1, keepdims=True), 0.25)
        pts -= np.clip(d - offset, -6.0, 6.0)[:, None] * grad
    return pts


def _vessel_path(shapes, waypoints, offset, step=1.5):
    """Surface-hugging centreline through ``waypoints``: densify, project, smooth, project."""
    pts = resample_polyline(np.asarray(waypoints), 1.0)
    pts = _project(shapes, pts, offset)
    kernel = np.ones(5) / 5
    for _ in range(2):
        pad = np.concatenate([pts[:1].repeat(2, 0), pts, pts[-1:].repeat(2, 0)])
        pts = np.stack([np.convolve(pad[:, k], kernel, mode="valid") for k in range(3)], axis=1)
        pts = _project(shapes, pts, offset, iterations=3)
    return resample_polyline(pts, step)


# --------------------------------------------------------------------------------------------
# the anatomy
# --------------------------------------------------------------------------------------------


def draw_heart_anatomy(rng: np.random.Generator) -> HeartAnatomy:
    """Draw one case's anatomy: sizes, pose, vessel paths and coronary branch angles.

    Args:
        rng: the case's generator (consumed in a fixed order, so a seed replays the case).

    Returns:
        The :class:`HeartAnatomy`.
    """
    u = rng.uniform
    scale = u(0.93, 1.06)
    pose = Pose(rotation=_rotation(rng, 8.0), shift=rng.normal(0.0, 2.0, 3), scale=scale)
    apex = _unit(np.array([-0.5, 0.5, -0.7]) + rng.normal(0, 0.06, 3))
    e1 = _unit(np.array([0.72, 0.69, 0.0]) - apex * (apex @ [0.72, 0.69, 0.0]))  # LV -> RV (septum normal)
    e2 = np.cross(e1, apex)  # anterior-superior around the LV axis
    frame = np.stack([e1, e2, apex], axis=1)
    base = np.array([-3.0, 2.0, 2.0]) + rng.normal(0, 1.5, 3)  # centre of the LV base (mitral plane)
    r_cav, l_cav, wall = u(13.0, 15.5), u(25.0, 30.0), u(7.5, 10.0)
    back = u(13.0, 16.0)  # cavity centre below the base plane
    c_lv = base + apex * back
    shapes: dict = {}
    shapes["lv"] = Ellipsoid(c_lv, [r_cav, r_cav * u(0.9, 1.05), l_cav], frame)
    shapes["lv_base"] = HalfSpace(base, -apex)
    shapes["epi"] = Ellipsoid(c_lv, [r_cav + wall, r_cav + wall, l_cav + 0.8 * wall], frame)
    shapes["epi_base"] = HalfSpace(base - apex * 2.0, -apex)
    c_rv = c_lv + e1 * u(15.0, 18.0) - e2 * u(0.0, 4.0) - apex * 3.0
    shapes["rv"] = Ellipsoid(c_rv, [u(15.0, 18.0), u(25.0, 29.0), l_cav + u(0.0, 4.0)], frame)
    shapes["rv_base"] = HalfSpace(base - apex * 4.0, -apex)
    pulm_valve = base + e1 * 17.0 + e2 * 12.0 - apex * 10.0 + rng.normal(0, 1.5, 3)
    shapes["rvot"] = Tube([c_rv - apex * 6.0, (c_rv + pulm_valve) / 2 + e2 * 4, pulm_valve], [13.0, 10.0, 9.0])
    la_c = np.array([-4.0, -19.0, 20.0]) + rng.normal(0, 1.5, 3)
    la_axes = np.array([u(19.0, 23.0), u(10.0, 12.5), u(12.0, 15.0)])
    shapes["la"] = Superellipsoid(la_c, la_axes, exponent=u(2.2, 2.8))
    ra_c = np.array([25.0, -7.0, 14.0]) + rng.normal(0, 1.5, 3)
    shapes["ra"] = Superellipsoid(ra_c, [u(12.0, 15.0), u(13.0, 16.0), u(15.0, 19.0)], exponent=u(2.0, 2.6))
    ao_r = u(10.0, 12.5)
    ao_root = base + e1 * 6.0 - e2 * 2.0 + np.array([0.0, 0.0, 4.0])
    shapes["aorta"] = Tube([base + apex * 3.0, ao_root, ao_root + [4.0, 3.0, 16.0] + rng.normal(0, 1.5, 3),
                            ao_root + [2.0, -2.0, 40.0]], [ao_r * 0.9, ao_r, ao_r, ao_r])
    desc_r = u(8.0, 9.5)
    desc = np.array([la_c[0] - u(8.0, 13.0), la_c[1] - la_axes[1] - desc_r - u(0.5, 2.0), 0.0])
    shapes["aorta_desc"] = Tube([desc + [0, 0, 60.0], desc + [1.0, 1.0, 0.0], desc + [2.0, 3.0, -60.0]], desc_r)
    pa_r = u(10.0, 12.0)
    bif = pulm_valve + np.array([-6.0, -14.0, 22.0]) + rng.normal(0, 1.5, 3)
    shapes["pa"] = Tube([pulm_valve - (pulm_valve - c_rv) * 0.15, pulm_valve + [-3.0, -3.0, 9.0], bif], pa_r)
    shapes["lpa"] = Tube([bif, bif + [-18.0, -10.0, 4.0], bif + [-40.0, -16.0, 4.0]],
                         [pa_r * 0.8, pa_r * 0.75, 0.7 * pa_r])
    shapes["rpa"] = Tube([bif, bif + [12.0, -14.0, 6.0], bif + [50.0, -20.0, 4.0]],
                         [pa_r * 0.8, pa_r * 0.7, 0.65 * pa_r])
    # left atrial appendage: a narrow neck from the LA's left-anterior-superior side, then a lobe
    laa_dir = _unit(np.array([-0.8, 0.55, 0.05]) + rng.normal(0, 0.08, 3))
    laa_root = la_c + laa_dir * (la_axes * np.abs(laa_dir)).sum() * 0.7
    neck_r, body_r = u(3.0, 3.8), u(6.5, 8.0)
    neck_end = laa_root + laa_dir * u(5.0, 7.0)
    bend = _unit(laa_dir + np.array([0.0, 0.5, -0.9]))
    shapes["laa_neck"] = Tube([la_c + laa_dir * 5.0, neck_end], neck_r)
    shapes["laa_body"] = Tube([neck_end + laa_dir * (body_r * 0.7), neck_end + laa_dir * 9.0 + bend * 7.0,
                               neck_end + laa_dir * 11.0 + bend * 18.0], [body_r * 0.8, body_r, body_r * 0.6])
    # pulmonary veins: neck off the LA's posterior wall, wider vein body beyond
    pv_neck, pv_body = [], []
    for k, (side, height) in enumerate([(-1, 1), (-1, -1), (1, 1), (1, -1)]):
        direction = _unit(np.array([0.75 * side, -0.8, 0.35 * height]) + rng.normal(0, 0.08, 3))
        ostium = la_c + np.array([0.6 * side * la_axes[0], -0.6 * la_axes[1], 0.45 * height * la_axes[2]])
        nr, br = u(2.8, 3.4), u(5.0, 6.0)
        n_end = ostium + direction * u(6.0, 8.0)
        shapes[f"pv{k}_neck"] = Tube([ostium, n_end], nr)
        shapes[f"pv{k}_body"] = Tube([n_end + direction * br * 0.8, n_end + direction * 30.0], br)
        pv_neck.append(nr)
        pv_body.append(br)

    # coronary trees on the offset surface, radii tapering within CORONARY_RADIUS_MM (world)
    lo, hi = CORONARY_RADIUS_MM[0] / scale, CORONARY_RADIUS_MM[1] / scale
    r_main = min(u(2.2, 2.5), CORONARY_RADIUS_MM[1]) / scale

    def radii(n, r0, r1):
        return np.clip(np.linspace(r0, r1, n), lo, hi)

    def on_lv(phi_deg, t, out=3.0):
        """Point near the LV epicardium: angle around the long axis (0 = septum), t along it."""
        phi = math.radians(phi_deg)
        radial = e1 * math.cos(phi) + e2 * math.sin(phi)
        return c_lv + apex * t + radial * (r_cav + wall + out)

    trees: dict[str, list[Tube]] = {}
    off = 0.8
    ant, post = u(55.0, 75.0), -u(55.0, 75.0)  # interventricular grooves
    groove_t = -back - 1.0  # AV groove level
    sinus = ao_root + np.array([2.0, 1.5, 8.0])
    ostium_l = sinus + _unit([-0.8, -0.4, 0.0]) * (ao_r - 1.0)
    lm_end = on_lv(ant + 40.0, groove_t)
    lm = _vessel_path(shapes, [ostium_l + (lm_end - ostium_l) * 0.2, lm_end], r_main + off)
    lm = np.concatenate([ostium_l[None], lm])
    lad = _vessel_path(shapes, [lm[-1]] + [on_lv(ant, t) for t in np.linspace(groove_t + 8, l_cav + 4, 4)]
                       + [on_lv(ant - 40.0, l_cav + wall)], 2.0 + off)
    lcx_phi = np.linspace(ant + 70, 190 + u(0, 40), 4)
    lcx = _vessel_path(shapes, [lm[-1]] + [on_lv(phi, groove_t + 1.0) for phi in lcx_phi],
                       1.9 + off)
    left = [Tube(lm, r_main), Tube(lad, radii(len(lad), r_main * 0.92, lo * 1.02)),
            Tube(lcx, radii(len(lcx), r_main * 0.85, lo * 1.05))]
    branch_angles = []
    for parent, frac, target_phi, target_t in ((lad, u(0.25, 0.35), ant + u(45, 70), u(5, 15)),
                                                (lad, u(0.5, 0.6), ant + u(50, 80), u(18, 26)),
                                                (lcx, u(0.45, 0.65), u(150, 175), u(10, 20))):
        i0 = int(frac * (len(parent) - 1))
        target = on_lv(target_phi, target_t)
        along = _unit(parent[min(i0 + 2, len(parent) - 1)] - parent[max(i0 - 2, 0)])
        side = target - parent[i0]
        side = _unit(side - along * (side @ along))
        angle = math.radians(u(30.0, 60.0))  # take-off angle of the side branch
        first = parent[i0] + (along * math.cos(angle) + side * math.sin(angle)) * 8.0
        path = _vessel_path(shapes, [parent[i0], first, target], 1.6 + off)
        path = np.concatenate([parent[i0:i0 + 1], path[1:]])
        left.append(Tube(path, radii(len(path), 1.8, lo)))
        a_dir = parent[min(i0 + 2, len(parent) - 1)] - parent[max(i0 - 2, 0)]
        b_dir = path[min(3, len(path) - 1)] - path[0]
        branch_angles.append(math.degrees(math.acos(np.clip(_unit(a_dir) @ _unit(b_dir), -1, 1))))
    trees["left"] = left
    # RCA: from the right aortic sinus around the tricuspid annulus, then the PDA
    ostium_r = sinus + _unit([0.6, 0.8, 0.0]) * (ao_r - 1.0)
    ring = [c_rv - apex * (back + 1.0) + (e1 * math.cos(p) * 1.15 + e2 * math.sin(p)) * 26.0
            for p in np.deg2rad(np.linspace(80, -80, 5))]
    rca = _vessel_path(shapes, [ostium_r + (ring[0] - ostium_r) * 0.2] + ring + [on_lv(post, groove_t + 4)],
                       2.1 + off)
    rca = np.concatenate([ostium_r[None], rca])
    pda = _vessel_path(shapes, [rca[-1]] + [on_lv(post, t) for t in np.linspace(groove_t + 10, l_cav - 5, 3)],
                       1.7 + off)
    i_am = int(u(0.45, 0.6) * (len(rca) - 1))
    am_target = c_rv + e1 * 22.0 + apex * u(10, 20)
    am = _vessel_path(shapes, [rca[i_am], am_target], 1.6 + off)
    am = np.concatenate([rca[i_am:i_am + 1], am[1:]])
    trees["right"] = [Tube(rca, radii(len(rca), r_main * 0.95, lo * 1.15)),
                      Tube(np.concatenate([rca[-1:], pda[1:]]), radii(len(pda), lo * 1.12, lo)),
                      Tube(am, radii(len(am), 1.7, lo))]
    params = {
        "scale": scale, "lv_cavity_radius_mm": r_cav * scale, "wall_mm": wall * scale,
        "aorta_radius_mm": ao_r * scale, "laa_neck_radius_mm": neck_r * scale, "laa_body_radius_mm": body_r * scale,
        "pv_neck_radius_mm": [r * scale for r in pv_neck], "pv_body_radius_mm": [r * scale for r in pv_body],
        "coronary_branch_angles_deg": branch_angles, "fat_mm": u(2.5, 6.0),
    }
    return HeartAnatomy(pose, shapes, trees, params)


# --------------------------------------------------------------------------------------------
# tissues and intensities
# --------------------------------------------------------------------------------------------

_ENVIRONMENT = {
    "liver": Ellipsoid([20.0, 6.0, -72.0], [72.0, 58.0, 40.0]),
    "lung_left": Ellipsoid([-74.0, -14.0, 10.0], [40.0, 62.0, 120.0]),
    "lung_right": Ellipsoid([76.0, -14.0, 10.0], [40.0, 62.0, 120.0]),
    "spine": Tube([[-2.0, -64.0, 80.0], [-2.0, -64.0, -80.0]], 15.0),
}


def _tissue_block(anatomy: HeartAnatomy, block: SampleBlock) -> np.ndarray:
    """Tissue code per sample: 0 unused, 1..10 the classes, then FAT, LIVER, LUNG, BONE, SOFT."""
    fields = _compose(anatomy.shapes, lambda s: s.render(block))
    stack = np.stack([fields[c] for c in range(1, 11) if c != COR])
    classes = np.array([c for c in range(1, 11) if c != COR], np.uint8)
    best = stack.min(0)
    tissue = np.where(best < 0, classes[stack.argmin(0)], np.uint8(SOFT)).astype(np.uint8)
    cor = None
    for tubes in anatomy.coronary_trees.values():
        for tube in tubes:
            d = tube.render(block)
            cor = d if cor is None else np.minimum(cor, d)
    tissue[(cor < 0) & (tissue != AO)] = COR
    heart = fields[0]
    for c in (LA, RA, RV, AO, PA, LAA, PV):
        heart = smooth_min(heart, fields[c], 10.0)
    soft = tissue == SOFT
    tissue[soft & (heart < anatomy.params["fat_mm"])] = FAT
    env = {name: shape.render(block) for name, shape in _ENVIRONMENT.items()}
    free = (tissue == SOFT) | (tissue == FAT)
    tissue[free & (env["liver"] < 0) & (best > 2.0)] = LIVER
    lung = (np.minimum(env["lung_left"], env["lung_right"]) < 0) & (heart > anatomy.params["fat_mm"] + 3.0)
    tissue[(tissue == SOFT) & lung] = LUNG
    tissue[(tissue == SOFT) & (env["spine"] < 0)] = BONE
    return tissue


def _intensities(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """HU per tissue code for one case, and the contrast phase drawn."""
    names = list(CONTRAST_PHASES)
    phase = names[int(rng.choice(len(names), p=list(CONTRAST_PHASES.values())))]
    u = rng.uniform
    myo = u(100.0, 140.0)
    if phase == "arterial":
        left, right, liver = u(330.0, 450.0), u(150.0, 280.0), u(60.0, 95.0)
    elif phase == "pulmonary":
        right, left, liver = u(330.0, 450.0), u(200.0, 300.0), u(55.0, 85.0)
    else:  # late: blood pool close to myocardium
        left = right = u(160.0, 210.0)
        liver = u(100.0, 130.0)
    hu = np.zeros(16, np.float32)
    hu[[LA, LV, AO, COR, PV]] = left
    hu[LAA] = left * u(0.85, 1.0)
    hu[[RA, RV, PA]] = right
    hu[MYO], hu[LIVER] = myo, liver
    hu[FAT], hu[LUNG], hu[BONE], hu[SOFT] = u(-110.0, -70.0), u(-850.0, -750.0), u(350.0, 550.0), u(30.0, 60.0)
    return hu, phase


def _bias_field(rng: np.random.Generator, shape, spacing) -> np.ndarray:
    """Smooth multiplicative field ``1 + b`` with a random quadratic ``b`` (peak 3-8 %)."""
    coords = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s / 48.0 for n, s in zip(shape, spacing)],
                         indexing="ij", sparse=True)
    x, y, z = coords
    terms = [x, y, z, x * x, y * y, z * z, x * y, y * z, x * z]
    b = sum(np.float32(c) * t for c, t in zip(rng.normal(0.0, 1.0, len(terms)), terms))
    b = np.broadcast_to(b, shape).astype(np.float32)
    b -= b.mean()
    return 1.0 + b * np.float32(rng.uniform(0.03, 0.08) / max(float(np.abs(b).max()), 1e-6))


def render_heart_sdf(
    anatomy: HeartAnatomy,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    *,
    supersample: int = 3,
    chunk: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise an anatomy: tissue-class HU averaged over sub-samples, label of the centre sample.

    Returns:
        ``(hu, label)``: noiseless partial-volume float32 image without bias (HU per tissue from
        ``anatomy.params["hu"]``) and the uint8 label (0..10).
    """
    f = int(supersample)
    offsets = (np.arange(f) - (f - 1) / 2.0) / f
    fine = [((np.arange(n) - (n - 1) / 2.0)[:, None] + offsets[None, :]).ravel() * s for n, s in zip(shape, spacing)]
    hu_table = anatomy.params["hu"]
    label = np.zeros(shape, np.uint8)
    image = np.zeros(shape, np.float32)
    nx, ny, nz = shape
    for i0 in range(0, nx, chunk):
        i1 = min(nx, i0 + chunk)
        block = SampleBlock([fine[0][i0 * f:i1 * f], fine[1], fine[2]], anatomy.pose)
        tissue = _tissue_block(anatomy, block)
        centre = tissue[f // 2::f, f // 2::f, f // 2::f]
        label[i0:i1] = np.where(centre <= 10, centre, 0)
        image[i0:i1] = hu_table[tissue].reshape(i1 - i0, f, ny, f, nz, f).mean(axis=(1, 3, 5))
    return image, label


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def _check_shape(size) -> tuple[int, int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        shape = (int(size),) * 3
    elif isinstance(size, Sequence) and len(size) == 3 and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size):
        shape = tuple(int(s) for s in size)
    else:
        raise InputError(f"`size` must be an int or 3 ints (voxels per axis), got {size!r}")
    if min(shape) < 8:
        raise InputError(f"`size` must be at least 8 voxels per axis, got {shape}")
    return shape  # type: ignore[return-value]


def _check_spacing(spacing_mm) -> tuple[float, float, float]:
    try:
        values = (float(spacing_mm),) * 3 if np.isscalar(spacing_mm) else tuple(float(s) for s in spacing_mm)
    except (TypeError, ValueError):
        values = ()
    if isinstance(spacing_mm, bool) or len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"`spacing_mm` must be one or 3 positive values in mm, got {spacing_mm!r}")
    return values  # type: ignore[return-value]


def make_heart_sdf_phantom(
    size: int | Sequence[int] = 64,
    *,
    seed: int = 0,
    spacing_mm: float | Sequence[float] = 1.5,
    supersample: int = 3,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Make one SDF cardiac CT phantom: image (HU) and 11-class label (``CARDIAC_CLASSES``).

    Deterministic per ``seed``: the anatomy (:func:`draw_heart_anatomy`), the contrast phase,
    the bias field and the noise all come from one :class:`numpy.random.Generator`. The anatomy
    is in millimetres: ``spacing_mm`` changes the field of view (``size * spacing_mm``), not the
    heart. The label does not depend on ``supersample`` (it is each voxel's centre sample).

    Args:
        size: voxels per axis (int for a cube, or 3 ints), at least 8. Default 64.
        seed: the case's seed. Default 0.
        spacing_mm: voxel size (one value or 3). Default 1.5 (a 96 mm field at 64^3).
        supersample: odd number of samples per voxel and axis averaged into the image (partial
            volume); 1 samples voxel centres only. Default 3.

    Returns:
        ``(image, label, spacing)``: float32 HU ``(X, Y, Z)``, uint8 label 0..10, spacing (mm).
        Axes are (R, A, S) as in :func:`~medrefine.data.phantoms.phantom_affine`.

    Raises:
        InputError: bad ``size``, ``spacing_mm`` or ``supersample``.

    Example:
        >>> image, label, spacing = make_heart_sdf_phantom(32, seed=1, spacing_mm=3.0, supersample=1)
        >>> image.shape, label.dtype, spacing
        ((32, 32, 32), dtype('uint8'), (3.0, 3.0, 3.0))
    """
    from scipy import ndimage

    shape = _check_shape(size)
    spacing = _check_spacing(spacing_mm)
    if isinstance(supersample, bool) or not isinstance(supersample, (int, np.integer)) or supersample < 1 \
            or supersample % 2 == 0:
        raise InputError(f"`supersample` must be an odd positive integer (1, 3, 5), got {supersample!r}")
    rng = np.random.default_rng(seed)
    anatomy = draw_heart_anatomy(rng)
    hu, phase = _intensities(rng)
    anatomy.params["hu"], anatomy.params["phase"] = hu, phase
    image, label = render_heart_sdf(anatomy, shape, spacing, supersample=int(supersample))
    image = (image + 1000.0) * _bias_field(rng, shape, spacing) - 1000.0
    noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, shape).astype(np.float32), sigma=(0.9, 0.9, 0.0))
    noise *= np.float32(rng.uniform(12.0, 30.0) / max(float(noise.std()), 1e-6))
    return (image + noise).astype(np.float32), label, spacing

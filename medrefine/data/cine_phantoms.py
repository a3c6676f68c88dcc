"""4D short-axis cine phantoms with a known answer: shapes, motion field and ejection fractions.

Each subject is an end-diastolic (ED) template in subject-local cardiac axes ``(u, v, w)`` (mm;
``u`` points from the LV axis to the RV, ``w`` along the long axis, 0 at the base plane, ``-L``
at the apex): the LV cavity is a half prolate ellipsoid, the myocardium a shell around it and the
RV cavity a crescent (an ellipsoid beside the LV minus the dilated epicardium). The heart moves by
an analytic, invertible map from ED to phase ``t`` of the cycle, driven by a periodic activation
``a(t)`` (0 at ED, 1 at end-systole ``t_es``, smooth and periodic):

1. in-plane radial contraction about the LV axis, ``r -> r (1 - k(θ) a exp(-r²/σ(θ)²))``, stronger
   towards the RV (``k``, ``σ`` grow near ``θ = 0``), so the LV and the RV both empty and the
   wall thickens (inner layers move more than outer ones); monotone in ``r`` since ``k < 1``;
2. longitudinal shortening towards the fixed apex, ``w -> -L + (w + L)(1 - l a)``;
3. twist about the long axis, ``θ -> θ + τ a (w' + L) / L``.

The Jacobian determinant of the map is ``(r'/r) dr'/dr (1 - l a)`` (the twist is volume
preserving), so cavity volumes at every frame, and the ejection fractions, follow exactly from the
ED template (:meth:`CinePhantom.volumes_ml`). Images are sampled on an anisotropic short-axis grid
(default 1.5 x 1.5 x 8 mm, 10 slices, 20 frames) by pulling each voxel back to ED
(:meth:`CinePhantom.to_ed`): MR-like (bright blood, dark myocardium, lungs, bias field, Rician
noise, partial volume across the slice), with optional per-slice in-plane shifts (breath-hold
misalignment) applied to the image and its label alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from medrefine.data.cine import CINE_CLASSES
from medrefine.errors import InputError

__all__ = ["CINE_CLASSES", "CinePhantom", "activation", "draw_cine_phantom", "ed_boundary_points", "make_cine_cohort",
           "render_cine"]


_NEWTON_STEPS = 12


def activation(t: np.ndarray | float, t_es: float) -> np.ndarray:
    """Periodic contraction ``a(t)`` in ``[0, 1]``: 0 at ED (``t = 0`` mod 1), 1 at ``t_es``.

    Half-cosine rise on ``[0, t_es]`` and fall on ``[t_es, 1]``: continuous with zero slope at both
    ends, and ``a(t + 1) == a(t)``.
    """
    if not 0.0 < float(t_es) < 1.0:
        raise ValueError(f"`t_es` must lie in (0, 1), got {t_es}")
    t = np.mod(np.asarray(t, dtype=np.float64), 1.0)
    rise = 0.5 * (1.0 - np.cos(np.pi * t / t_es))
    fall = 0.5 * (1.0 + np.cos(np.pi * (t - t_es) / (1.0 - t_es)))
    return np.where(t <= t_es, rise, fall)


@dataclass(frozen=True)
class CinePhantom:
    """One subject: ED template, motion parameters and pose (all lengths in mm, angles in rad).

    Attributes:
        centre: world RAS position of the base-plane centre of the LV ``(3,)``.
        angle: in-plane rotation of the local ``u`` axis against world ``x``.
        lv_radius, lv_length: LV cavity semi-axes (in-plane, long axis).
        wall: myocardial thickness at ED.
        rv_offset, rv_radii, rv_length: RV ellipsoid centre along ``u`` and semi-axes (``u``, ``v``) and length.
        k_lv, k_rv, sigma_lv, sigma_rv: radial contraction strength and reach, LV side and RV side.
        shortening: longitudinal shortening ``l`` at end-systole.
        twist: base rotation ``τ`` at end-systole.
        t_es: phase of end-systole.
        blood, myocardium, tissue, lung: MR intensities; noise: Rician noise sd.
    """

    centre: tuple[float, float, float]
    angle: float
    lv_radius: float
    lv_length: float
    wall: float
    rv_offset: float
    rv_radii: tuple[float, float]
    rv_length: float
    k_lv: float
    k_rv: float
    sigma_lv: float
    sigma_rv: float
    shortening: float
    twist: float
    t_es: float
    blood: float = 0.9
    myocardium: float = 0.28
    tissue: float = 0.45
    lung: float = 0.06
    noise: float = 0.03

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready)."""
        return {k: (list(v) if isinstance(v, tuple) else float(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CinePhantom:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        values["centre"] = tuple(float(v) for v in values["centre"])
        values["rv_radii"] = tuple(float(v) for v in values["rv_radii"])
        return cls(**values)

    # -- frames -----------------------------------------------------------------------------------

    def _rotation(self) -> np.ndarray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def local_to_world(self) -> np.ndarray:
        """``(4, 4)`` matrix mapping local ``(u, v, w)`` to world RAS mm."""
        out = np.eye(4)
        out[:3, :3] = self._rotation()
        out[:3, 3] = self.centre
        return out

    def to_local(self, world: np.ndarray) -> np.ndarray:
        """World RAS points ``(..., 3)`` to local ``(u, v, w)``."""
        return (np.asarray(world, dtype=np.float64) - np.asarray(self.centre)) @ self._rotation()

    def to_world(self, local: np.ndarray) -> np.ndarray:
        """Local points ``(..., 3)`` to world RAS."""
        return np.asarray(local, dtype=np.float64) @ self._rotation().T + np.asarray(self.centre)

    # -- motion -----------------------------------------------------------------------------------

    def _radial(self, theta: np.ndarray, a: float) -> tuple[np.ndarray, np.ndarray]:
        bump = np.exp(-((np.angle(np.exp(1j * theta))) / 0.9) ** 2)
        k = (self.k_lv + (self.k_rv - self.k_lv) * bump) * a
        sigma = self.sigma_lv + (self.sigma_rv - self.sigma_lv) * bump
        return k, sigma

    def from_ed(self, local: np.ndarray, t: float) -> np.ndarray:
        """Move ED local points ``(..., 3)`` to phase ``t`` (the forward map, local coordinates)."""
        a = float(activation(t, self.t_es))
        u, v, w = np.moveaxis(np.asarray(local, dtype=np.float64), -1, 0)
        r, theta = np.hypot(u, v), np.arctan2(v, u)
        k, sigma = self._radial(theta, a)
        r1 = r * (1.0 - k * np.exp(-(r**2) / sigma**2))
        length = self.lv_length
        w1 = -length + (w + length) * (1.0 - self.shortening * a)
        theta1 = theta + self.twist * a * (w1 + length) / length
        return np.stack([r1 * np.cos(theta1), r1 * np.sin(theta1), w1], axis=-1)

    def to_ed(self, local: np.ndarray, t: float) -> np.ndarray:
        """Pull local points ``(..., 3)`` at phase ``t`` back to ED (the inverse map)."""
        a = float(activation(t, self.t_es))
        u1, v1, w1 = np.moveaxis(np.asarray(local, dtype=np.float64), -1, 0)
        length = self.lv_length
        w = -length + (w1 + length) / (1.0 - self.shortening * a)
        theta = np.arctan2(v1, u1) - self.twist * a * (w1 + length) / length
        r1 = np.hypot(u1, v1)
        k, sigma = self._radial(theta, a)
        r = r1.copy()  # Newton on f(r) = r (1 - k e^{-r²/σ²}) - r1, bracketed by [r1, r1 / (1 - k)]
        upper = r1 / (1.0 - k)
        for _ in range(_NEWTON_STEPS):
            e = np.exp(-(r**2) / sigma**2)
            f = r * (1.0 - k * e) - r1
            df = 1.0 - k * e * (1.0 - 2.0 * r**2 / sigma**2)
            r = np.clip(r - f / df, r1, upper)
        return np.stack([r * np.cos(theta), r * np.sin(theta), w], axis=-1)

    def jacobian_determinant(self, local: np.ndarray, t: float) -> np.ndarray:
        """``det D(from_ed)`` at ED local points ``(..., 3)``: ``(r'/r) dr'/dr (1 - l a)``."""
        a = float(activation(t, self.t_es))
        u, v, _ = np.moveaxis(np.asarray(local, dtype=np.float64), -1, 0)
        r, theta = np.hypot(u, v), np.arctan2(v, u)
        k, sigma = self._radial(theta, a)
        e = np.exp(-(r**2) / sigma**2)
        ratio = 1.0 - k * e
        slope = 1.0 - k * e * (1.0 - 2.0 * r**2 / sigma**2)
        return ratio * slope * (1.0 - self.shortening * a)

    def displacement_mm(self, world_ed: np.ndarray, t: float) -> np.ndarray:
        """World displacement ``(..., 3)`` of ED world points to phase ``t`` (mm)."""
        moved = self.to_world(self.from_ed(self.to_local(world_ed), t))
        return moved - np.asarray(world_ed, dtype=np.float64)

    # -- template ---------------------------------------------------------------------------------

    def ed_labels(self, local: np.ndarray) -> np.ndarray:
        """Class of ED local points ``(..., 3)`` (see :data:`CINE_CLASSES`)."""
        u, v, w = np.moveaxis(np.asarray(local, dtype=np.float64), -1, 0)
        below = w <= 0.0
        rho = u**2 + v**2
        a, length, wall = self.lv_radius, self.lv_length, self.wall
        endo = below & (rho / a**2 + w**2 / length**2 <= 1.0)
        epi = below & (rho / (a + wall) ** 2 + w**2 / (length + wall) ** 2 <= 1.0)
        ru, rv = self.rv_radii
        rv_shape = below & ((u - self.rv_offset) ** 2 / ru**2 + v**2 / rv**2 + w**2 / self.rv_length**2 <= 1.0)
        margin = 2.0  # septal clearance: RV blood never touches the LV epicardium
        epi_dilated = rho / (a + wall + margin) ** 2 + w**2 / (length + wall + margin) ** 2 <= 1.0
        out = np.zeros(u.shape, dtype=np.uint8)
        out[rv_shape & ~epi_dilated & (u > -0.3 * a)] = 3
        out[epi] = 2
        out[endo] = 1
        return out

    def labels_at(self, world: np.ndarray, t: float) -> np.ndarray:
        """Class of world points ``(..., 3)`` at phase ``t``."""
        return self.ed_labels(self.to_ed(self.to_local(world), t))

    def volumes_ml(self, frames: int, *, step_mm: float = 0.75) -> dict[str, np.ndarray]:
        """Exact LV, myocardium and RV volumes (ml) at ``frames`` equally spaced phases.

        Integrates the Jacobian determinant over the ED template sampled every ``step_mm``.
        """
        reach = max(self.lv_radius + self.wall, self.rv_offset + self.rv_radii[0], self.rv_radii[1]) + 2.0
        depth = max(self.lv_length + self.wall, self.rv_length) + 1.0
        axis = np.arange(-reach, reach + step_mm, step_mm)
        ws = np.arange(-depth, step_mm, step_mm)
        grid = np.stack(np.meshgrid(axis, axis, ws, indexing="ij"), axis=-1).reshape(-1, 3)
        labels = self.ed_labels(grid)
        keep = labels > 0
        grid, labels = grid[keep], labels[keep]
        cell = step_mm**3 / 1000.0
        out = {name: np.zeros(frames) for name in ("left_ventricle", "myocardium", "right_ventricle")}
        for f in range(frames):
            det = self.jacobian_determinant(grid, f / frames)
            for value, name in ((1, "left_ventricle"), (2, "myocardium"), (3, "right_ventricle")):
                out[name][f] = float(det[labels == value].sum() * cell)
        return out

    def ejection_fractions(self, frames: int) -> dict[str, float]:
        """LV and RV ejection fractions (%) and volumes over ``frames`` sampled phases."""
        vol = self.volumes_ml(frames)
        out: dict[str, float] = {}
        for short, name in (("lv", "left_ventricle"), ("rv", "right_ventricle")):
            edv, esv = float(vol[name][0]), float(vol[name].min())
            out[f"{short}_edv_ml"], out[f"{short}_esv_ml"] = edv, esv
            out[f"{short}_ef"] = 100.0 * (edv - esv) / edv
        out["myocardium_ml"] = float(vol["myocardium"][0])
        return out


def draw_cine_phantom(rng: np.random.Generator, *, field_of_view_mm: Sequence[float]) -> CinePhantom:
    """A random subject: sizes, contraction, twist and pose varied (LV EF about 40-70 %)."""
    lv_radius = rng.uniform(21.0, 27.0)
    wall = rng.uniform(8.0, 11.0)
    lv_length = rng.uniform(50.0, 60.0)
    fov = np.asarray(field_of_view_mm, dtype=np.float64)
    # the stack is centred on 0: base plane at 88 % of its height, apex inside the lowest slices
    centre = (rng.uniform(-4.0, 4.0), rng.uniform(-4.0, 4.0), 0.38 * fov[2] + rng.uniform(-2.0, 2.0))
    return CinePhantom(
        centre=centre,
        angle=rng.uniform(-0.5, 0.5),
        lv_radius=lv_radius,
        lv_length=lv_length,
        wall=wall,
        rv_offset=lv_radius + wall + rng.uniform(-4.0, 0.0),
        rv_radii=(rng.uniform(18.0, 24.0), rng.uniform(36.0, 44.0)),
        rv_length=lv_length * rng.uniform(0.75, 0.9),
        k_lv=rng.uniform(0.3, 0.5),
        k_rv=rng.uniform(0.55, 0.7),
        sigma_lv=rng.uniform(30.0, 38.0),
        sigma_rv=rng.uniform(55.0, 65.0),
        shortening=rng.uniform(0.08, 0.15),
        twist=rng.uniform(0.1, 0.25),
        t_es=rng.uniform(0.33, 0.42),
        blood=rng.uniform(0.82, 0.95),
        myocardium=rng.uniform(0.22, 0.32),
        tissue=rng.uniform(0.4, 0.5),
    )


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-8)


def render_cine(
    phantom: CinePhantom,
    affine: np.ndarray,
    shape: Sequence[int],
    frames: int,
    *,
    slice_thickness_mm: float | None = None,
    slice_shifts_mm: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    image: bool = True,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Sample a subject on a grid: 4D image ``(X, Y, Z, T)`` (float32) and label (uint8).

    Args:
        phantom: the subject.
        affine: ``(4, 4)`` RAS voxel-to-world matrix of the short-axis grid.
        shape: ``(X, Y, Z)``.
        frames: phases ``t = f / frames``.
        slice_thickness_mm: partial-volume depth of the image (default the slice spacing).
        slice_shifts_mm: ``(Z, 2)`` in-plane world shift of each slice (misalignment), or None.
        rng: noise generator (needed when ``image``).
        image: also render the image (False: labels only, e.g. a truth at another resolution).

    Returns:
        ``(image or None, label)``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1 or int(frames) < 1:
        raise InputError(f"`shape` must be 3 positive sizes and `frames` >= 1, got {shape} and {frames}")
    idx = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), axis=-1)
    world = idx @ affine[:3, :3].T + affine[:3, 3]
    if slice_shifts_mm is not None:
        world[..., :2] += np.asarray(slice_shifts_mm, dtype=np.float64)[None, None, :, :]
    labels = np.stack([phantom.labels_at(world, f / frames) for f in range(int(frames))], axis=-1).astype(np.uint8)
    if not image:
        return None, labels
    if rng is None:
        raise InputError("`rng` is required to render the image (noise)")
    spacing_z = float(np.linalg.norm(affine[:3, 2]))
    depth = spacing_z if slice_thickness_mm is None else float(slice_thickness_mm)
    z_dir = affine[:3, 2] / spacing_z
    offsets = (-depth / 3.0, 0.0, depth / 3.0)
    lookup = np.array([phantom.tissue, phantom.blood, phantom.myocardium, phantom.blood], dtype=np.float64)
    # lungs: two dark ellipsoids lateral to the heart; body: an ellipse of tissue, air outside
    local0 = phantom.to_local(world)
    lung_l = ((local0[..., 0] + 58.0) / 26.0) ** 2 + ((local0[..., 1] - 5.0) / 42.0) ** 2 < 1.0
    lung_r = ((local0[..., 0] - 62.0) / 22.0) ** 2 + ((local0[..., 1] + 28.0) / 30.0) ** 2 < 1.0
    body = (world[..., 0] / 95.0) ** 2 + (world[..., 1] / 75.0) ** 2 < 1.0
    texture = 1.0 + 0.08 * _smooth_field(rng, shape, 2.0)
    bias = 1.0 + 0.12 * _smooth_field(rng, shape, 10.0)
    out = np.empty(shape + (int(frames),), dtype=np.float32)
    for f in range(int(frames)):
        acc = np.zeros(shape)
        for off in offsets:
            lab = phantom.labels_at(world + off * z_dir, f / frames) if off else labels[..., f]
            value = lookup[lab] * np.where(lab == 0, texture, 1.0)
            value = np.where((lab == 0) & (lung_l | lung_r), phantom.lung, value)
            acc += np.where(body | (lab > 0), value, 0.0)
        clean = acc / len(offsets) * bias
        noisy = np.hypot(clean + rng.normal(0.0, phantom.noise, shape), rng.normal(0.0, phantom.noise, shape))
        out[..., f] = noisy.astype(np.float32)
    return out, labels


def ed_boundary_points(phantom: CinePhantom, *, step_mm: float = 2.0, max_points: int = 3000,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """World points on the ED boundaries of the LV, myocardium and RV, and their class ``(N, 3), (N,)``.

    Voxels of a ``step_mm`` grid of the template whose 6-neighbourhood holds another class,
    at most ``max_points`` of them (a seeded draw).
    """
    reach = max(phantom.lv_radius + phantom.wall, phantom.rv_offset + phantom.rv_radii[0], phantom.rv_radii[1]) + 4.0
    depth = max(phantom.lv_length + phantom.wall, phantom.rv_length) + 4.0
    axis = np.arange(-reach, reach + step_mm, step_mm)
    ws = np.arange(-depth, step_mm, step_mm)
    grid = np.stack(np.meshgrid(axis, axis, ws, indexing="ij"), axis=-1)
    labels = phantom.ed_labels(grid)
    edge = np.zeros(labels.shape, dtype=bool)
    for dim in range(3):
        diff = np.diff(labels, axis=dim) != 0
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[dim], hi[dim] = slice(0, -1), slice(1, None)
        edge[tuple(lo)] |= diff
        edge[tuple(hi)] |= diff
    edge &= labels > 0
    points, classes = grid[edge], labels[edge]
    if len(points) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(points), max_points, replace=False))
        points, classes = points[keep], classes[keep]
    return phantom.to_world(points), classes


def _write_transform(phantom: CinePhantom, path: Any) -> None:
    """The local cardiac axes as an ITK transform (local ``(u, v, w)`` -> physical LPS mm)."""
    import SimpleITK as sitk

    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    matrix = phantom.local_to_world()
    transform = sitk.AffineTransform(3)
    transform.SetMatrix((ras_to_lps @ matrix[:3, :3]).ravel().tolist())
    transform.SetTranslation((ras_to_lps @ matrix[:3, 3]).tolist())
    sitk.WriteTransform(transform, str(path))


def make_cine_cohort(
    out_dir: Any,
    *,
    subjects: int = 16,
    size: Sequence[int] = (96, 96),
    slices: int = 10,
    frames: int = 20,
    spacing: Sequence[float] = (1.5, 1.5, 8.0),
    misalignment_mm: float = 0.0,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> Any:
    """Write a cine phantom cohort in the BIDS-like layout of NIMOSEF, with its truth.

    Layout::

        OUT/dataset_description.json, OUT/classes.json
        OUT/sub-000/anat/sub-000_short_axis.nii.gz                 4D cine (X, Y, Z, T) float32
        OUT/derivatives/sa_segmentation/sub-000/sub-000_sa_seg.nii.gz   4D labels (uint8)
        OUT/derivatives/sa_coordinates/sub-000/sa_axis_affine.tfm   local cardiac axes (ITK)
        OUT/derivatives/phantom_truth/sub-000/sub-000_truth.json    parameters, volumes, EF
        OUT/derivatives/phantom_truth/sub-000/sub-000_motion.npz    ED boundary points + displacement

    Args:
        out_dir: folder to create (may exist only if empty, unless ``overwrite``).
        subjects: number of subjects (>= 1).
        size: in-plane voxels ``(X, Y)``.
        slices: short-axis slices.
        frames: frames over one cycle (frame 0 = ED).
        spacing: voxel size ``(x, y, z)`` in mm (z = slice spacing = thickness).
        misalignment_mm: sd of a per-slice in-plane shift (0 = aligned slices).
        seed: cohort seed.
        overwrite: replace a non-empty ``out_dir``.
        progress: tqdm bar on stderr.

    Returns:
        The cohort folder.

    Raises:
        InputError: bad sizes, or an existing non-empty ``out_dir`` without ``overwrite``.
    """
    import json
    from pathlib import Path

    from medrefine.data.classes import save_classes
    from medrefine.data.phantom_cohort import building_folder
    from medrefine.data.phantoms import phantom_affine
    from medrefine.io import atomic_write, save_nifti

    size = tuple(int(s) for s in size)
    spacing = tuple(float(s) for s in spacing)
    if isinstance(subjects, bool) or int(subjects) < 1:
        raise InputError(f"`subjects` must be a positive integer, got {subjects!r}")
    if len(size) != 2 or min(size) < 8 or int(slices) < 2 or int(frames) < 2:
        raise InputError(f"`size` must be 2 sizes >= 8, `slices` and `frames` >= 2; got {size}, {slices}, {frames}")
    if len(spacing) != 3 or min(spacing) <= 0 or float(misalignment_mm) < 0:
        raise InputError(f"`spacing` must be 3 positive values and `misalignment_mm` >= 0, got {spacing}, {misalignment_mm}")
    shape = (*size, int(slices))
    affine = phantom_affine(shape, spacing)
    fov = [n * s for n, s in zip(shape, spacing)]
    out = Path(out_dir)
    with building_folder(out, overwrite) as tmp:
        iterator = range(int(subjects))
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="cine phantoms", unit="subject")
        for i in iterator:
            rng = np.random.default_rng([int(seed), i])
            sub = f"sub-{i:03d}"
            phantom = draw_cine_phantom(rng, field_of_view_mm=fov)
            shifts = rng.normal(0.0, float(misalignment_mm), (shape[2], 2)) if misalignment_mm > 0 else None
            image, label = render_cine(phantom, affine, shape, int(frames), slice_shifts_mm=shifts, rng=rng)
            save_nifti(image, tmp / sub / "anat" / f"{sub}_short_axis.nii.gz", affine=affine)
            save_nifti(label, tmp / "derivatives" / "sa_segmentation" / sub / f"{sub}_sa_seg.nii.gz", affine=affine)
            coords = tmp / "derivatives" / "sa_coordinates" / sub
            coords.mkdir(parents=True, exist_ok=True)
            with atomic_write(coords / "sa_axis_affine.tfm") as part:
                _write_transform(phantom, part)
            truth_dir = tmp / "derivatives" / "phantom_truth" / sub
            truth_dir.mkdir(parents=True, exist_ok=True)
            volumes = phantom.volumes_ml(int(frames))
            truth = {"subject": sub, "phantom": phantom.to_dict(), "frames": int(frames), "shape": list(shape),
                     "affine": affine.tolist(), "slice_shifts_mm": None if shifts is None else shifts.tolist(),
                     **phantom.ejection_fractions(int(frames)),
                     "volumes_ml": {k: v.tolist() for k, v in volumes.items()}}
            with atomic_write(truth_dir / f"{sub}_truth.json") as part:
                part.write_text(json.dumps(truth, indent=1) + "\n")
            points, classes = ed_boundary_points(phantom, seed=i)
            motion = np.stack([phantom.displacement_mm(points, f / frames) for f in range(int(frames))])
            with atomic_write(truth_dir / f"{sub}_motion.npz") as part:
                with open(part, "wb") as handle:
                    np.savez_compressed(handle, points=points.astype(np.float32), classes=classes,
                                        displacement=motion.astype(np.float32))
        save_classes(CINE_CLASSES, tmp / "classes.json")
        description = {"Name": "medrefine cine phantoms", "BIDSVersion": "1.8.0", "DatasetType": "raw",
                       "GeneratedBy": [{"Name": "medrefine phantom cine"}],
                       "subjects": int(subjects), "frames": int(frames), "spacing_mm": list(spacing),
                       "misalignment_mm": float(misalignment_mm), "seed": int(seed)}
        with atomic_write(tmp / "dataset_description.json") as part:
            part.write_text(json.dumps(description, indent=1) + "\n")
    return out

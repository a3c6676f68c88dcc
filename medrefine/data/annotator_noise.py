"""Annotator-noise models of a second kind: slice-wise contouring and model-style errors.

:mod:`medrefine.data.corruption` imitates a hurried annotator by warping and eroding the whole
label. The models here copy two other sources of label error, so that a refinement recipe tuned
against one kind of noise can be reported against another:

- ``"slicewise"`` (:func:`slicewise_contours`): a person contours every k-th axial slice with a
  personal habit (drawing every boundary ``bias_mm`` outside, or inside, the true one) and a
  hand tremor (a smooth in-plane jitter of the contour); the slices between are filled by
  shape-based interpolation, i.e. linear interpolation of the per-class signed distance maps of
  the two neighbouring drawn slices (Raya & Udupa, IEEE TMI 1990). A structure that a drawn
  slice's erosion would erase keeps its deepest pixel (a person still clicks the vessel).
- ``"model"`` (:func:`model_errors`): the errors of an automatic segmentation used as a label:
  leaks into a neighbour of similar intensity (grown from a random border point within a radius),
  missed distal branches of tree-like classes (the tree cut beyond a random geodesic depth from
  its root), small false-positive islands where the intensity looks like the class, and label
  swaps along shared borders (e.g. LA/LAA, RA/RV).
- ``"mixed"``: slice-wise contouring, then model-style errors, each at a reduced severity.

:func:`annotate` chooses the model by name. One ``severity`` (a name of :data:`SEVERITY_LEVELS`
or a float in [0, 1]) sets all step sizes; the named levels were calibrated on
:mod:`medrefine.data.heart_sdf` phantoms at 64^3 / 1.5 mm (see docs/phantoms.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medrefine.errors import InputError, did_you_mean

__all__ = [
    "NOISE_MODELS",
    "SEVERITY_LEVELS",
    "Annotator",
    "annotate",
    "cut_distal_branches",
    "draw_annotator",
    "geodesic_depth",
    "model_errors",
    "slicewise_contours",
]

#: Noise models :func:`annotate` accepts.
NOISE_MODELS = ("slicewise", "model", "mixed")

#: Named severities -> float in [0, 1].
SEVERITY_LEVELS: dict[str, float] = {"mild": 0.3, "moderate": 0.5, "severe": 0.75}

#: Tree-like classes of the cardiac table and the class their root touches (coronaries -> aorta,
#: pulmonary veins -> left atrium).
CARDIAC_TREES: dict[int, int] = {9: 6, 10: 2}

#: Class pairs sharing a border that a model confuses (cardiac table).
CARDIAC_SWAP_PAIRS: tuple[tuple[int, int], ...] = ((2, 8), (4, 5), (3, 6), (5, 7), (2, 10), (1, 3))

_CAP_MM = 6.0


def _severity(severity: str | float) -> float:
    if isinstance(severity, str):
        if severity not in SEVERITY_LEVELS:
            raise InputError(f"`severity` must be one of {list(SEVERITY_LEVELS)} or a float in [0, 1], got "
                             f"{severity!r}.{did_you_mean(severity, SEVERITY_LEVELS)}")
        return SEVERITY_LEVELS[severity]
    if isinstance(severity, bool) or not isinstance(severity, (int, float, np.integer, np.floating)):
        raise InputError(f"`severity` must be a name {list(SEVERITY_LEVELS)} or a float in [0, 1], got "
                         f"{type(severity).__name__}")
    if not 0.0 <= float(severity) <= 1.0:
        raise InputError(f"`severity` must be in [0, 1], got {float(severity)}")
    return float(severity)


def _spacing(spacing) -> tuple[float, float, float]:
    values = (1.0, 1.0, 1.0) if spacing is None else (
        (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(s) for s in spacing))
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"`spacing` must be one or 3 positive values in mm, got {spacing!r}")
    return values  # type: ignore[return-value]


def _check_label(label) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 3 or not np.issubdtype(label.dtype, np.integer):
        raise InputError(f"`label` must be a 3D integer array, got shape {label.shape} and dtype {label.dtype}")
    return label


# --------------------------------------------------------------------------------------------
# slice-wise contouring
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Annotator:
    """One annotator's habits for :func:`slicewise_contours`.

    Attributes:
        slice_step: contour every ``slice_step``-th slice (1: every slice).
        bias_mm: boundary drawn this far outside (> 0, dilation) or inside (< 0) the true one.
        jitter_mm: peak in-plane contour jitter (a smooth random displacement of the boundary).
        inconsistency_mm: standard deviation of an extra offset drawn per slice and class (the
            boundary is not placed the same way on every slice).
        offset: index of the first drawn slice, in ``[0, slice_step)``.
    """

    slice_step: int
    bias_mm: float
    jitter_mm: float = 0.0
    inconsistency_mm: float = 0.0
    offset: int = 0


def draw_annotator(severity: str | float = "moderate", *, seed: int | np.random.Generator = 0) -> Annotator:
    """Draw an annotator: slice step, boundary bias and jitter grow with ``severity``.

    Slice step ``floor(1.5 + 2 s) .. floor(2.5 + 3 s)``, bias ``+-(1 .. 3) s`` mm (sign drawn: a
    generous or a tight annotator), jitter ``6 s`` mm, per-slice inconsistency ``2 s`` mm; at
    ``"moderate"`` (0.5): step 2-4, bias +-0.5..1.5 mm, jitter 3 mm, inconsistency 1 mm.
    """
    s = _severity(severity)
    rng = np.random.default_rng(seed)
    lo = max(1, int(np.floor(1.5 + 2 * s)))
    step = int(rng.integers(lo, max(lo, int(np.floor(2.5 + 3 * s))) + 1)) if s > 0 else 1
    bias = float(rng.choice([-1.0, 1.0]) * rng.uniform(1.0, 3.0) * s)
    return Annotator(slice_step=step, bias_mm=bias, jitter_mm=6.0 * s, inconsistency_mm=2.0 * s,
                     offset=int(rng.integers(0, step)))


def _jitter_field(rng: np.random.Generator, shape, spacing, wavelength_mm: float = 20.0) -> np.ndarray:
    ys = [(np.arange(n) * s) for n, s in zip(shape, spacing)]
    field = np.zeros(shape, np.float32)
    for _ in range(6):
        kx, ky = rng.normal(0, 2 * np.pi / wavelength_mm, 2)
        field += np.cos(kx * ys[0][:, None] + ky * ys[1][None, :] + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    return field / np.float32(max(float(np.abs(field).max()), 1e-6))


def slicewise_contours(
    label: np.ndarray,
    annotator: Annotator,
    *,
    spacing: float | Sequence[float] | None = None,
    axis: int = 2,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """Re-draw a label as an annotator contouring every k-th slice and interpolating between.

    On a drawn slice each class is the set where its in-plane signed distance (mm, negative
    inside) minus the bias, plus the jitter, is negative (the most negative class wins); between
    drawn slices the per-class distances are interpolated linearly; before the first and after
    the last drawn slice nothing is drawn. With ``jitter_mm = 0`` a drawn slice equals the true
    slice dilated (or eroded) by ``bias_mm`` in-plane.

    Args:
        label: integer label ``(X, Y, Z)``.
        annotator: the :class:`Annotator`.
        spacing: voxel size (mm); default 1 mm.
        axis: the slice axis (2: axial for RAS arrays).
        seed: seed or generator of the jitter.

    Returns:
        The drawn label (same shape and dtype).
    """
    from scipy import ndimage

    label = _check_label(label)
    spacing = _spacing(spacing)
    if axis not in (0, 1, 2):
        raise InputError(f"`axis` must be 0, 1 or 2, got {axis!r}")
    if int(annotator.slice_step) < 1 or not 0 <= int(annotator.offset) < int(annotator.slice_step):
        raise InputError(f"`annotator` needs slice_step >= 1 and 0 <= offset < slice_step, got {annotator}")
    rng = np.random.default_rng(seed)
    vol = np.moveaxis(label, axis, 2)
    sp = tuple(spacing[a] for a in range(3) if a != axis)
    classes = [int(c) for c in np.unique(vol) if c != 0]
    n = vol.shape[2]
    drawn = list(range(int(annotator.offset), n, int(annotator.slice_step)))
    cap = np.float32(_CAP_MM + abs(annotator.bias_mm))
    # per-class bias: erosion of a thin class is limited to a fraction of its thickness
    depth = {c: float(ndimage.distance_transform_edt(vol == c, sampling=sp + (spacing[axis],)).max()) for c in classes}
    dist = np.full((len(classes), len(drawn)) + vol.shape[:2], cap, np.float32)
    for j, k in enumerate(drawn):
        jitter = annotator.jitter_mm * _jitter_field(rng, vol.shape[:2], sp) if annotator.jitter_mm else 0.0
        for i, c in enumerate(classes):
            mask = vol[:, :, k] == c
            if not mask.any():
                continue
            bias = annotator.bias_mm
            if bias < 0:
                bias *= min(1.0, max(0.25, depth[c] / 5.0))
            # signed distance to the boundary half-way between pixel centres (negative inside)
            d = np.where(mask, 0.5 * min(sp) - ndimage.distance_transform_edt(mask, sampling=sp),
                         ndimage.distance_transform_edt(~mask, sampling=sp) - 0.5 * min(sp))
            if annotator.inconsistency_mm:
                bias = bias + float(rng.normal(0.0, annotator.inconsistency_mm))
            d = (d - bias + jitter).astype(np.float32)
            parts, count = ndimage.label(mask)
            lows = ndimage.minimum(d, parts, range(1, count + 1))
            for part, low in zip(range(1, count + 1), np.atleast_1d(lows)):
                if low >= 0:  # the habit would erase this piece: keep its deepest pixel
                    pos = ndimage.minimum_position(d, parts, part)
                    d[pos] = -0.1
            dist[i, j] = np.minimum(d, cap)
    out = np.zeros_like(vol)
    if classes and drawn:
        for z in range(drawn[0], drawn[-1] + 1):
            j = min(np.searchsorted(drawn, z, side="right") - 1, len(drawn) - 1)
            if drawn[j] == z or j + 1 >= len(drawn):
                d = dist[:, j]
            else:
                w = np.float32((z - drawn[j]) / (drawn[j + 1] - drawn[j]))
                d = (1 - w) * dist[:, j] + w * dist[:, j + 1]
            best = d.argmin(0)
            out[:, :, z] = np.where(d.min(0) < 0, np.asarray(classes, label.dtype)[best], 0)
    return np.moveaxis(out, 2, axis)


# --------------------------------------------------------------------------------------------
# model-style errors
# --------------------------------------------------------------------------------------------


def geodesic_depth(mask: np.ndarray, root: np.ndarray, *, spacing: float | Sequence[float] | None = None) -> np.ndarray:
    """Path length (mm, 26-connected steps) from ``root`` to every voxel of ``mask``; inf elsewhere.

    Computed by a Dijkstra-like wave: repeated constrained dilations, each step adding the
    length of the step taken (axis, face diagonal or space diagonal). Exact for a chain of
    voxels; on thick regions it is the 26-connected chamfer distance.
    """
    mask = np.asarray(mask, bool)
    spacing = _spacing(spacing)
    depth = np.full(mask.shape, np.inf, np.float32)
    depth[root & mask] = 0.0
    offsets = [np.array(o) - 1 for o in np.ndindex(3, 3, 3) if o != (1, 1, 1)]
    steps = [float(np.sqrt(((o * spacing) ** 2).sum())) for o in offsets]
    changed = True
    while changed:
        changed = False
        padded = np.pad(depth, 1, constant_values=np.inf)
        best = depth.copy()
        for o, step in zip(offsets, steps):
            shifted = padded[1 + o[0]:1 + o[0] + mask.shape[0], 1 + o[1]:1 + o[1] + mask.shape[1],
                             1 + o[2]:1 + o[2] + mask.shape[2]]
            np.minimum(best, shifted + np.float32(step), out=best)
        best[~mask] = np.inf
        if (best < depth).any():
            depth, changed = best, True
    return depth


def _crop(mask: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo, hi = np.maximum(idx.min(0) - margin, 0), np.minimum(idx.max(0) + margin + 1, mask.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def cut_distal_branches(
    label: np.ndarray,
    *,
    trees: Mapping[int, int] | None = None,
    keep_fraction: float | tuple[float, float] = 0.7,
    spacing: float | Sequence[float] | None = None,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """Cut each tree-like structure beyond a random geodesic depth from its root (to background).

    Each 26-connected piece of a tree class is rooted at its voxel nearest to the parent class
    (``trees[class] = parent``); voxels deeper than ``keep_fraction`` times the piece's largest
    depth are removed. Only distal voxels of tree classes change.

    Args:
        label: integer label ``(X, Y, Z)``.
        trees: ``{tree class: parent class}``; default :data:`CARDIAC_TREES`.
        keep_fraction: fraction of the depth kept, or a range to draw it from per piece.
        spacing: voxel size (mm).
        seed: seed or generator.

    Returns:
        The label with distal branches removed.
    """
    from scipy import ndimage

    label = _check_label(label)
    spacing = _spacing(spacing)
    rng = np.random.default_rng(seed)
    out = label.copy()
    for cls, parent in (CARDIAC_TREES if trees is None else trees).items():
        pieces, count = ndimage.label(label == cls, np.ones((3, 3, 3)))
        if count == 0:
            continue
        parent_mask = label == parent
        near = ndimage.distance_transform_edt(~parent_mask, sampling=spacing) if parent_mask.any() else None
        for k in range(1, count + 1):
            box = _crop(pieces == k)
            piece = pieces[box] == k
            if near is None:
                root = np.zeros_like(piece)
                root[tuple(np.argwhere(piece)[0])] = True
            else:
                dist = np.where(piece, near[box], np.inf)
                root = dist <= dist.min() + 1e-3
            depth = geodesic_depth(piece, root, spacing=spacing)
            frac = keep_fraction if np.isscalar(keep_fraction) else rng.uniform(*keep_fraction)
            limit = float(frac) * float(depth[piece].max())
            region = out[box]
            region[piece & (depth > limit)] = 0
    return out


def model_errors(
    label: np.ndarray,
    image: np.ndarray | None = None,
    *,
    severity: str | float = "moderate",
    spacing: float | Sequence[float] | None = None,
    seed: int | np.random.Generator = 0,
    trees: Mapping[int, int] | None = None,
    swap_pairs: Sequence[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Errors of an automatic segmentation: leaks, missed distal branches, islands, swaps.

    Steps (sizes in mm, all growing with severity ``s``):

    1. missed distal branches: :func:`cut_distal_branches` keeps ``1 - 0.9 s .. 1 - 0.5 s`` of
       each tree's depth;
    2. leaks (``round(12 s)``): from a random border voxel of a class, grow into the connected
       voxels within ``5 + 14 s`` mm whose (smoothed) intensity is within a tolerance of the
       class's median (needs ``image``; without it any neighbouring voxel may be taken);
    3. label swaps (``round(10 s)``): a pair of ``swap_pairs`` (default
       :data:`CARDIAC_SWAP_PAIRS`) trades the band of ``3 + 8 s`` mm along their shared border
       within ``8 + 16 s`` mm of a random border point;
    4. false-positive islands (``round(16 s)``): balls of ``1.5 .. 2 + 5 s`` mm painted into
       background voxels near the heart whose intensity looks like the class.

    Args:
        label: integer label ``(X, Y, Z)``.
        image: intensities on the same grid (optional, for leaks and islands).
        severity: name of :data:`SEVERITY_LEVELS` or a float in [0, 1].
        spacing: voxel size (mm).
        seed: seed or generator.
        trees: tree classes and their parents (default :data:`CARDIAC_TREES`).
        swap_pairs: class pairs to swap (default :data:`CARDIAC_SWAP_PAIRS`).

    Returns:
        The corrupted label (same shape and dtype).
    """
    from scipy import ndimage

    label = _check_label(label)
    s = _severity(severity)
    spacing = _spacing(spacing)
    if image is not None and np.shape(image) != label.shape:
        raise InputError(f"`image` must have the label's shape {label.shape}, got {np.shape(image)}")
    rng = np.random.default_rng(seed)
    if s == 0:
        return label.copy()
    out = cut_distal_branches(label, trees=trees, keep_fraction=(1 - 0.9 * s, 1 - 0.5 * s), spacing=spacing,
                              seed=rng)
    classes = [int(c) for c in np.unique(label) if c != 0]
    smooth = None if image is None else ndimage.gaussian_filter(np.asarray(image, np.float32), 1.0)
    grid = np.indices(label.shape, dtype=np.float32)
    sp = np.asarray(spacing, np.float32).reshape(3, 1, 1, 1)

    def ball(centre, radius_mm):
        return (((grid - np.asarray(centre, np.float32).reshape(3, 1, 1, 1)) * sp) ** 2).sum(0) <= radius_mm**2

    def border(mask):
        return mask & ~ndimage.binary_erosion(mask)

    big = [c for c in classes if (label == c).sum() * np.prod(spacing) > 5000.0] or classes
    for _ in range(int(round(12 * s))):  # leaks
        c = int(rng.choice(big))
        mask = out == c
        if smooth is None:
            similar = ~mask
        else:
            level = float(np.median(smooth[mask]))
            similar = (np.abs(smooth - level) < max(60.0, 0.2 * abs(level))) & ~mask
        candidates = np.argwhere(border(mask) & ndimage.binary_dilation(similar))
        if len(candidates) == 0:
            continue
        centre = candidates[rng.integers(len(candidates))]
        region = similar & ball(centre, 5.0 + 14.0 * s)
        grown = ndimage.binary_propagation(ndimage.binary_dilation(mask) & region, mask=region)
        out[grown] = c
    pairs = [p for p in (CARDIAC_SWAP_PAIRS if swap_pairs is None else swap_pairs)
             if p[0] in classes and p[1] in classes]
    for _ in range(int(round(10 * s)) if pairs else 0):  # swaps along shared borders
        a, b = pairs[int(rng.integers(len(pairs)))]
        if rng.random() < 0.5:
            a, b = b, a
        band = (out == b) & (ndimage.distance_transform_edt(out != a, sampling=spacing) <= 3.0 + 8.0 * s)
        contact = np.argwhere(band & ndimage.binary_dilation(out == a))
        if len(contact) == 0:
            continue
        out[band & ball(contact[rng.integers(len(contact))], 8.0 + 16.0 * s)] = a
    near_heart = (ndimage.distance_transform_edt(label == 0, sampling=spacing) <= 15.0) & (out == 0)
    for _ in range(int(round(16 * s))):  # false-positive islands
        c = int(rng.choice(classes))
        pool = near_heart
        if smooth is not None:
            level = float(np.median(smooth[label == c]))
            pool = pool & (np.abs(smooth - level) < max(60.0, 0.2 * abs(level)))
        spots = np.argwhere(pool)
        if len(spots) == 0:
            continue
        out[ball(spots[rng.integers(len(spots))], rng.uniform(1.5, 2.0 + 5.0 * s)) & (out == 0)] = c
    return out


def annotate(
    label: np.ndarray,
    *,
    model: str = "mixed",
    severity: str | float = "moderate",
    image: np.ndarray | None = None,
    spacing: float | Sequence[float] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Noisy label from one of :data:`NOISE_MODELS` at a severity.

    ``"slicewise"`` draws an annotator with :func:`draw_annotator` (at 1.3 times the severity)
    and contours axially (array axis 2); ``"model"`` applies :func:`model_errors` (at 1.5 times
    the severity); ``"mixed"`` does both, each at 0.6 of that. The factors make a named level
    give about the same mean foreground Dice with every model. Severity 0 returns an exact copy.

    Args:
        label: integer label ``(X, Y, Z)`` (not modified).
        model: ``"slicewise"``, ``"model"`` or ``"mixed"``. Default ``"mixed"``.
        severity: ``"mild"``, ``"moderate"``, ``"severe"`` or a float in [0, 1].
        image: intensities on the label's grid (model-style leaks and islands follow it).
        spacing: voxel size in mm (default 1 mm).
        seed: seed of the draws.

    Returns:
        The noisy label (same shape and dtype).

    Raises:
        InputError: unknown ``model`` or ``severity`` (with a did-you-mean), bad ``label``,
            ``image`` or ``spacing``.

    Example:
        >>> noisy = annotate(label, model="slicewise", severity="mild", spacing=1.5)  # doctest: +SKIP
    """
    if model not in NOISE_MODELS:
        raise InputError(
            f"`model` must be one of {list(NOISE_MODELS)}, got {model!r}.{did_you_mean(model, NOISE_MODELS)}")
    label = _check_label(label)
    s = _severity(severity)
    if s == 0:
        return label.copy()
    seeds = np.random.SeedSequence(seed).spawn(3)
    if model == "mixed":
        s = 0.6 * s
    # step sizes per model at this severity, calibrated so that a named level gives about the
    # same mean foreground Dice with every model (docs/phantoms.md)
    s_slice, s_model = 1.3 * s, 1.5 * s
    out = label
    if model in ("slicewise", "mixed"):
        annotator = draw_annotator(min(1.0, s_slice), seed=np.random.default_rng(seeds[0]))
        out = slicewise_contours(out, annotator, spacing=spacing, seed=np.random.default_rng(seeds[1]))
    if model in ("model", "mixed"):
        out = model_errors(out, image, severity=min(1.0, s_model), spacing=spacing,
                           seed=np.random.default_rng(seeds[2]))
    return out

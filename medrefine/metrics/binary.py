"""Overlap and surface-distance metrics of one binary structure, spacing-aware.

All five metrics of a structure come from one pass: the voxel counts give Dice and IoU, the
surfaces (mask XOR its erosion) and two exact Euclidean distance transforms in millimetres
(:func:`scipy.ndimage.distance_transform_edt` with ``sampling=spacing``) give HD95, ASSD and the
normalised surface Dice. The definitions are MONAI's (``monai.metrics``), and the test suite checks
equality with :func:`monai.metrics.compute_hausdorff_distance` (``percentile=95``),
:func:`monai.metrics.compute_average_surface_distance` (``symmetric=True``) and
:func:`monai.metrics.compute_surface_dice`:

- surface of a mask: the voxels of the mask that have a face neighbour outside it (scipy's
  ``binary_erosion`` with the 6-connected cross, voxels outside the grid count as outside);
- ``d(P->R)``: for each surface voxel of P, the distance in mm from its centre to the nearest
  surface-voxel centre of R (and ``d(R->P)`` the other way);
- HD95 = ``max(percentile95(d(P->R)), percentile95(d(R->P)))`` (linear interpolation, as
  ``torch.quantile``);
- ASSD = mean of the concatenation of ``d(P->R)`` and ``d(R->P)``;
- NSD at tolerance ``tau`` mm = ``(#{d(P->R) <= tau} + #{d(R->P) <= tau}) / (#surf P + #surf R)``
  (Nikolov et al., "Clinically applicable segmentation of head and neck anatomy for radiotherapy",
  2021, counted per surface voxel as MONAI does with ``use_subvoxels=False``).

Why not call MONAI's functions directly: they take one-hot ``(B, C, *spatial)`` tensors (41
channels of the full volume for a TotalSegmentator CT), and each of them extracts the surfaces and
distances again, so three calls do the same work three times; they also return ``inf`` for a
structure missing from one side. Here one crop, one surface extraction and two distance transforms
serve all five metrics, and structures missing from one side follow the documented rule below.

Absent-structure rule (``status`` of a result):

======================  ===========  ===========  ==========================  =========
status                  dice, iou    nsd          hd95, assd                  in means
======================  ===========  ===========  ==========================  =========
``present`` (both)      computed     computed     computed                    yes
``absent_pred`` (FN)    0.0          0.0          ``missing_distance_mm``     yes
``absent_ref`` (FP)     0.0          0.0          ``missing_distance_mm``     yes
``absent_both`` (TN)    NaN          NaN          NaN                         no
======================  ===========  ===========  ==========================  =========

``missing_distance_mm`` defaults to the length of the image diagonal in mm (the largest distance
the grid can hold), a finite penalty instead of MONAI's ``inf``; pass ``float("nan")`` to leave
such distances out of the means instead. A structure in neither volume has nothing to measure:
its rows are NaN (MONAI's ``ignore_empty=True``, nnU-Net's convention) so it neither inflates nor
deflates the per-class means, and summaries count it separately.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "METRICS",
    "DISTANCE_METRICS",
    "STATUSES",
    "check_spacing",
    "check_metrics",
    "mask_surface",
    "surface_distances",
    "binary_metrics",
    "status_of",
]

#: Metric names, in output order.
METRICS: tuple[str, ...] = ("dice", "iou", "hd95", "assd", "nsd")
#: Metrics that need surfaces and distance transforms.
DISTANCE_METRICS: frozenset[str] = frozenset({"hd95", "assd", "nsd"})
#: Values of the ``status`` column (see the module docstring).
STATUSES: tuple[str, ...] = ("present", "absent_pred", "absent_ref", "absent_both")


def check_spacing(spacing: Sequence[float] | float, ndim: int) -> tuple[float, ...]:
    """Validate a voxel spacing and return it as a tuple of ``ndim`` floats (mm).

    Args:
        spacing: one positive number (isotropic) or ``ndim`` positive numbers.
        ndim: number of spatial dimensions of the array.

    Raises:
        ValueError: wrong length, or a value that is not finite and positive.
    """
    values = (float(spacing),) * ndim if np.isscalar(spacing) else tuple(float(s) for s in spacing)  # type: ignore[arg-type]
    if len(values) != ndim or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"`spacing` must have {ndim} positive values (mm), got {spacing!r}")
    return values


def check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    """Validate metric names and return them in :data:`METRICS` order.

    Raises:
        ValueError: an unknown name (with a did-you-mean) or an empty selection.
    """
    from medrefine.errors import did_you_mean

    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; expected some of {list(METRICS)}.{did_you_mean(name, METRICS)}")
    if not names:
        raise ValueError(f"`metrics` must name at least one of {list(METRICS)}, got none")
    return tuple(m for m in METRICS if m in names)


def mask_surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a binary mask: ``mask XOR erosion(mask)`` with the face-connected cross.

    Voxels on the border of the array count as surface (outside the grid is background), as in
    :func:`monai.metrics.utils.get_mask_edges`.

    Args:
        mask: boolean array ``(*spatial)``.

    Returns:
        Boolean array of the same shape.
    """
    from scipy.ndimage import binary_erosion

    mask = np.asarray(mask, dtype=bool)
    return mask & ~binary_erosion(mask, border_value=0)


def surface_distances(
    pred: np.ndarray, ref: np.ndarray, *, spacing: Sequence[float] | float
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm between two non-empty binary masks on the same grid.

    Args:
        pred: boolean mask ``(*spatial)``; must hold at least one voxel.
        ref: boolean mask, same shape; must hold at least one voxel.
        spacing: voxel size in mm along each axis (or one number).

    Returns:
        ``(d_pred_to_ref, d_ref_to_pred)``: for every surface voxel of ``pred`` the distance to the
        nearest surface voxel of ``ref``, and the other way round (float64, mm).

    Raises:
        ValueError: shapes differ, bad spacing, or a mask is empty.

    Example:
        >>> a = np.zeros((9, 9, 9), bool); a[2:5, 2:5, 2:5] = True
        >>> d_ab, d_ba = surface_distances(a, np.roll(a, 2, axis=0), spacing=(1.0, 1.0, 2.5))
        >>> float(d_ab.max())
        2.0
    """
    from scipy.ndimage import distance_transform_edt

    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"`pred` and `ref` must have the same shape, got {pred.shape} and {ref.shape}")
    sampling = check_spacing(spacing, pred.ndim)
    if not pred.any() or not ref.any():
        raise ValueError(
            f"`pred` and `ref` must both hold voxels to measure surface distances, got {int(pred.sum())} "
            f"and {int(ref.sum())} voxels"
        )
    surf_pred, surf_ref = mask_surface(pred), mask_surface(ref)
    d_pred_to_ref = distance_transform_edt(~surf_ref, sampling=sampling)[surf_pred]
    d_ref_to_pred = distance_transform_edt(~surf_pred, sampling=sampling)[surf_ref]
    return d_pred_to_ref, d_ref_to_pred


def status_of(pred_voxels: int, ref_voxels: int) -> str:
    """``"present"``, ``"absent_pred"``, ``"absent_ref"`` or ``"absent_both"`` from voxel counts."""
    if pred_voxels and ref_voxels:
        return "present"
    if ref_voxels:
        return "absent_pred"
    if pred_voxels:
        return "absent_ref"
    return "absent_both"


def binary_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    spacing: Sequence[float] | float,
    metrics: Sequence[str] = METRICS,
    nsd_tolerance_mm: float = 1.0,
    missing_distance_mm: float | None = None,
) -> tuple[dict[str, float], str]:
    """All requested metrics of one structure, given as two binary masks on the same grid.

    For speed, crop the masks to the union of their bounding boxes plus one voxel first
    (:func:`medrefine.metrics.compute_case_metrics` does); the values do not change as long as the
    crop keeps that one-voxel margin wherever it is not the array border.

    Args:
        pred: predicted mask ``(*spatial)``, bool (or 0/1).
        ref: reference mask, same shape.
        spacing: voxel size in mm along each axis (or one number).
        metrics: names among :data:`METRICS`.
        nsd_tolerance_mm: tolerance of the normalised surface Dice, mm (>= 0).
        missing_distance_mm: HD95/ASSD when the structure is in only one of the masks; ``None``
            uses the diagonal of the array in mm (see the module docstring).

    Returns:
        ``(values, status)``: metric name -> value, and the status (see :data:`STATUSES`).

    Raises:
        ValueError: shapes differ, bad spacing, unknown metric, negative tolerance.

    Example:
        >>> a = np.zeros((8, 8, 8), bool); a[2:6, 2:6, 2:6] = True
        >>> values, status = binary_metrics(a, a, spacing=1.0)
        >>> values["dice"], values["hd95"], status
        (1.0, 0.0, 'present')
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"`pred` and `ref` must have the same shape, got {pred.shape} and {ref.shape}")
    sampling = check_spacing(spacing, pred.ndim)
    names = check_metrics(metrics)
    if not (np.isfinite(nsd_tolerance_mm) and nsd_tolerance_mm >= 0):
        raise ValueError(f"`nsd_tolerance_mm` must be a finite number >= 0, got {nsd_tolerance_mm!r}")
    if missing_distance_mm is None:
        missing_distance_mm = float(np.linalg.norm(np.asarray(pred.shape) * np.asarray(sampling)))
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    status = status_of(n_pred, n_ref)
    if status == "absent_both":
        return {m: float("nan") for m in names}, status
    if status != "present":
        missing = {"dice": 0.0, "iou": 0.0, "nsd": 0.0, "hd95": float(missing_distance_mm), "assd": float(missing_distance_mm)}
        return {m: missing[m] for m in names}, status

    values: dict[str, float] = {}
    inter = int(np.count_nonzero(pred & ref))
    if "dice" in names:
        values["dice"] = 2.0 * inter / (n_pred + n_ref)
    if "iou" in names:
        values["iou"] = inter / (n_pred + n_ref - inter)
    if DISTANCE_METRICS.intersection(names):
        d_pr, d_rp = surface_distances(pred, ref, spacing=sampling)
        if "hd95" in names:
            values["hd95"] = float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))
        if "assd" in names:
            values["assd"] = float((d_pr.sum() + d_rp.sum()) / (d_pr.size + d_rp.size))
        if "nsd" in names:
            tol = float(nsd_tolerance_mm)
            close = np.count_nonzero(d_pr <= tol) + np.count_nonzero(d_rp <= tol)
            values["nsd"] = float(close / (d_pr.size + d_rp.size))
    return {m: values[m] for m in names}, status

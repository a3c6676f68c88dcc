"""Tests of medrefine.metrics.binary: hand-computed values, analytic shapes, MONAI agreement."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from medrefine.metrics import METRICS, binary_metrics, mask_surface, surface_distances

ANISO = (1.0, 1.0, 2.5)


def box(shape, lo, hi) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return mask


def sphere(shape, center_mm, radius_mm, spacing) -> np.ndarray:
    grids = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grids, center_mm)) <= radius_mm**2


def random_blobs(shape, num_classes, seed) -> np.ndarray:
    """Smooth random label map with ``num_classes`` foreground classes."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.standard_normal((num_classes + 1, *shape)), sigma=(0, 2.5, 2.5, 1.5))
    return field.argmax(0).astype(np.uint8)


# --- hand-computed values -----------------------------------------------------------------------


def test_overlapping_boxes_dice_iou():
    a = box((12, 12, 12), (2, 2, 2), (6, 6, 6))  # 64 voxels
    b = box((12, 12, 12), (4, 2, 2), (8, 6, 6))  # 64 voxels, 32 shared
    values, status = binary_metrics(a, b, spacing=ANISO, metrics=("dice", "iou"))
    assert status == "present"
    assert values["dice"] == pytest.approx(2 * 32 / 128)
    assert values["iou"] == pytest.approx(32 / 96)


def test_nested_boxes_dice_iou():
    outer = box((10, 10, 10), (1, 1, 1), (7, 7, 7))  # 216
    inner = box((10, 10, 10), (2, 2, 2), (5, 5, 5))  # 27
    values, _ = binary_metrics(inner, outer, spacing=1.0, metrics=("dice", "iou"))
    assert values["dice"] == pytest.approx(54 / 243)
    assert values["iou"] == pytest.approx(27 / 216)


def test_identical_masks():
    a = sphere((20, 20, 12), (10, 10, 15), 6, ANISO)
    values, status = binary_metrics(a, a, spacing=ANISO)
    assert status == "present"
    assert values == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0, "nsd": 1.0}
    assert list(values) == list(METRICS)


def test_single_voxels_exact_distance_with_anisotropic_spacing():
    a = np.zeros((8, 8, 8), bool)
    b = np.zeros((8, 8, 8), bool)
    a[1, 1, 1] = True
    b[4, 5, 3] = True  # offset (3, 4, 2) voxels = (3, 4, 5) mm
    values, _ = binary_metrics(a, b, spacing=ANISO, nsd_tolerance_mm=7.0)
    assert values["hd95"] == pytest.approx(np.sqrt(50))
    assert values["assd"] == pytest.approx(np.sqrt(50))
    assert values["nsd"] == 0.0
    values, _ = binary_metrics(a, b, spacing=ANISO, nsd_tolerance_mm=np.sqrt(50))
    assert values["nsd"] == 1.0  # tolerance inclusive, as MONAI's `<=`


def test_boxes_shifted_by_one_voxel_surface_distances():
    """A 6x6x4 box shifted by one voxel along x (1 mm; z slices are 2.5 mm): counted by hand.

    Its surface has 144 - 4*4*2 = 112 voxels. At distance 1 mm from the shifted box's surface: the
    whole leading x-cap (6*4 = 24) and the interior of the trailing cap (4*2 = 8), 32 in all; every
    other surface voxel lies on the other box's surface (distance 0). Same the other way round.
    """
    a = box((10, 10, 8), (2, 2, 2), (8, 8, 6))
    b = box((10, 10, 8), (3, 2, 2), (9, 8, 6))
    d_ab, d_ba = surface_distances(a, b, spacing=ANISO)
    for d in (d_ab, d_ba):
        assert d.size == 112
        assert np.count_nonzero(d == 1.0) == 32 and np.count_nonzero(d == 0.0) == 80
    values, _ = binary_metrics(a, b, spacing=ANISO, nsd_tolerance_mm=0.5)
    assert values["dice"] == pytest.approx(2 * 5 * 6 * 4 / (2 * 144))
    assert values["nsd"] == pytest.approx(80 / 112)
    assert values["assd"] == pytest.approx(32 / 112)
    assert values["hd95"] == pytest.approx(1.0)


def test_mask_surface_is_mask_minus_erosion_with_border_as_outside():
    full = np.ones((4, 4, 4), bool)
    surface = mask_surface(full)
    assert surface.sum() == 64 - 8  # everything but the 2x2x2 core
    assert not surface[1:3, 1:3, 1:3].any()


@pytest.mark.parametrize("axis,offset_vox", [(2, 2), (0, 5)])
def test_offset_spheres_match_analytic_distances(axis, offset_vox):
    """Two spheres of radius R offset by d: surface distance of a point at angle t is |sqrt(R^2+d^2-2Rd cos t) - R|."""
    spacing = ANISO
    shape = (40, 40, 18)
    radius = 10.0
    offset_mm = offset_vox * spacing[axis]  # 5 mm either way: along z (2 slices of 2.5) or x (5 voxels)
    center = np.array([19.0, 19.0, 20.0])
    shifted = center.copy()
    shifted[axis] += offset_mm
    a = sphere(shape, center, radius, spacing)
    b = sphere(shape, shifted, radius, spacing)
    values, _ = binary_metrics(a, b, spacing=spacing, nsd_tolerance_mm=2.0)

    # analytic: cos t uniform on [-1, 1] over the sphere's area
    u = np.linspace(-1, 1, 200001)
    d = np.abs(np.sqrt(radius**2 + offset_mm**2 - 2 * radius * offset_mm * u) - radius)
    voxel = max(spacing)
    lens = np.pi * (4 * radius + offset_mm) * (2 * radius - offset_mm) ** 2 / 12  # overlap of the balls
    assert values["dice"] == pytest.approx(lens / (4 / 3 * np.pi * radius**3), abs=0.03)
    assert values["hd95"] == pytest.approx(np.percentile(d, 95), abs=voxel)
    assert values["assd"] == pytest.approx(d.mean(), abs=voxel / 2)
    assert values["hd95"] <= offset_mm + voxel  # the Hausdorff distance of the spheres is d
    # ignoring the spacing (voxel units) would give distances off by the factor 2.5 along z
    assert 3.0 < values["hd95"] < 6.5


# --- absent-structure rule ------------------------------------------------------------------------


def test_absent_rules():
    a = box((6, 8, 10), (1, 1, 1), (3, 3, 3))
    empty = np.zeros_like(a)
    diagonal = float(np.linalg.norm(np.array([6, 8, 10]) * np.array(ANISO)))

    values, status = binary_metrics(empty, a, spacing=ANISO)
    assert status == "absent_pred"
    assert values == {"dice": 0.0, "iou": 0.0, "hd95": pytest.approx(diagonal), "assd": pytest.approx(diagonal), "nsd": 0.0}

    values, status = binary_metrics(a, empty, spacing=ANISO, missing_distance_mm=float("nan"))
    assert status == "absent_ref"
    assert values["dice"] == 0.0 and np.isnan(values["hd95"]) and np.isnan(values["assd"])

    values, status = binary_metrics(empty, empty, spacing=ANISO)
    assert status == "absent_both"
    assert all(np.isnan(v) for v in values.values())


# --- errors ---------------------------------------------------------------------------------------


def test_errors():
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(ValueError, match=r"same shape, got \(4, 4, 4\) and \(4, 4, 5\)"):
        binary_metrics(a, np.zeros((4, 4, 5), bool), spacing=1.0)
    with pytest.raises(ValueError, match=r"`spacing` must have 3 positive values"):
        binary_metrics(a, a, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match=r"`spacing` must have 3 positive values"):
        binary_metrics(a, a, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"unknown metric 'hd59'.*Did you mean 'hd95'"):
        binary_metrics(a, a, spacing=1.0, metrics=("dice", "hd59"))
    with pytest.raises(ValueError, match=r"`nsd_tolerance_mm` must be a finite number >= 0, got -1"):
        binary_metrics(a, a, spacing=1.0, nsd_tolerance_mm=-1)
    with pytest.raises(ValueError, match=r"must both hold voxels"):
        surface_distances(a, a, spacing=1.0)


# --- properties -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_symmetric_in_pred_and_ref(seed):
    pred = random_blobs((20, 18, 12), 2, seed) == 1
    ref = random_blobs((20, 18, 12), 2, seed + 10) == 1
    forward, _ = binary_metrics(pred, ref, spacing=ANISO, nsd_tolerance_mm=2.0)
    backward, _ = binary_metrics(ref, pred, spacing=ANISO, nsd_tolerance_mm=2.0)
    assert forward == pytest.approx(backward)
    assert 0 <= forward["dice"] <= 1 and forward["iou"] <= forward["dice"]


def test_2d_masks():
    a = box((10, 10), (2, 2), (6, 6))
    values, _ = binary_metrics(a, np.roll(a, 1, axis=0), spacing=(0.5, 2.0))
    assert values["hd95"] == pytest.approx(0.5)


# --- agreement with MONAI -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spacing,tolerance,seed",
    [((1.0, 1.0, 2.5), 1.5, 0), ((0.7, 1.3, 2.0), 2.0, 1), ((1.0, 1.0, 1.0), 1.0, 2)],
)
def test_agrees_with_monai_metric_classes(spacing, tolerance, seed):
    torch = pytest.importorskip("torch")
    from monai.metrics import (
        DiceMetric,
        HausdorffDistanceMetric,
        MeanIoU,
        SurfaceDiceMetric,
        SurfaceDistanceMetric,
    )

    num_classes = 3
    shape = (24, 20, 14)
    pred = random_blobs(shape, num_classes, seed)
    ref = random_blobs(shape, num_classes, seed + 100)

    def onehot(a):
        t = torch.nn.functional.one_hot(torch.as_tensor(a, dtype=torch.long), num_classes + 1)
        return t.permute(3, 0, 1, 2)[None].float()

    y_pred, y = onehot(pred), onehot(ref)
    kwargs = {"include_background": False, "reduction": "none"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            "dice": DiceMetric(**kwargs)(y_pred, y),
            "iou": MeanIoU(**kwargs)(y_pred, y),
            "hd95": HausdorffDistanceMetric(percentile=95, **kwargs)(y_pred, y, spacing=spacing),
            "assd": SurfaceDistanceMetric(symmetric=True, **kwargs)(y_pred, y, spacing=spacing),
            "nsd": SurfaceDiceMetric([tolerance] * num_classes, **kwargs)(y_pred, y, spacing=spacing),
        }
    for c in range(1, num_classes + 1):
        values, status = binary_metrics(pred == c, ref == c, spacing=spacing, nsd_tolerance_mm=tolerance)
        assert status == "present"
        for name in METRICS:
            assert values[name] == pytest.approx(float(expected[name][0, c - 1]), rel=1e-5, abs=1e-5), (name, c)


def test_agrees_with_monai_functions_on_cropped_input():
    """Cropping to the union box plus one voxel does not change MONAI's values either."""
    pytest.importorskip("torch")
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    pred = np.zeros((30, 30, 16), bool)
    ref = np.zeros((30, 30, 16), bool)
    pred[5:15, 6:18, 3:9] = True
    ref[7:16, 5:17, 4:11] = True
    ref[0:3, 0:3, 0:2] = True  # a second piece touching the array border
    spacing = (0.8, 1.1, 2.5)
    t_pred = torch.as_tensor(pred[None, None]).float()
    t_ref = torch.as_tensor(ref[None, None]).float()
    values, _ = binary_metrics(pred, ref, spacing=spacing, nsd_tolerance_mm=1.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's own deprecation notice inside get_mask_edges
        hd = compute_hausdorff_distance(t_pred, t_ref, include_background=True, percentile=95, spacing=spacing)
        asd = compute_average_surface_distance(t_pred, t_ref, include_background=True, symmetric=True, spacing=spacing)
        nsd = compute_surface_dice(t_pred, t_ref, [1.2], include_background=True, spacing=spacing)
    assert values["hd95"] == pytest.approx(float(hd), rel=1e-5)
    assert values["assd"] == pytest.approx(float(asd), rel=1e-5)
    assert values["nsd"] == pytest.approx(float(nsd), rel=1e-5)

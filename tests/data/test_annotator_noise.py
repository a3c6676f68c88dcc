"""Tests of medrefine.data.annotator_noise: slice-wise contouring and model-style errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medrefine.data.annotator_noise import (
    NOISE_MODELS,
    Annotator,
    annotate,
    cut_distal_branches,
    draw_annotator,
    geodesic_depth,
    model_errors,
    slicewise_contours,
)
from medrefine.data.heart_sdf import make_heart_sdf_phantom
from medrefine.errors import InputError

SPACING = (1.5, 1.5, 1.5)


@pytest.fixture(scope="module")
def case64():
    image, label, _ = make_heart_sdf_phantom(64, seed=0, supersample=1)
    return image, label


def dice(a, b):
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def cylinder(radius_vox=5.0, n=24):
    x, y = np.meshgrid(np.arange(n) - n / 2 + 0.5, np.arange(n) - n / 2 + 0.5, indexing="ij")
    disk = (x**2 + y**2) <= radius_vox**2
    label = np.zeros((n, n, n), np.uint8)
    label[:, :, 2:-2] = disk[:, :, None]
    return label


def test_drawn_slices_carry_the_bias_only():
    label = cylinder()
    annotator = Annotator(slice_step=3, bias_mm=1.5, jitter_mm=0.0, offset=1)
    noisy = slicewise_contours(label, annotator, spacing=1.0)
    for k in range(1, 24, 3):
        outside = ndimage.distance_transform_edt(label[:, :, k] == 0)
        expected = (label[:, :, k] == 1) | (outside - 0.5 < 1.5)  # boundary half-way between pixels, + bias
        if not label[:, :, k].any():
            expected[:] = False
        np.testing.assert_array_equal(noisy[:, :, k] == 1, expected)
    # slices between two drawn slices of the same disk interpolate to the same disk
    np.testing.assert_array_equal(noisy[:, :, 8], noisy[:, :, 7])
    assert not noisy[:, :, 0].any()  # before the first drawn slice nothing is drawn


def test_erosion_never_erases_a_drawn_piece():
    label = np.zeros((16, 16, 3), np.uint8)
    label[7:9, 7:9, :] = 9  # a 2x2 vessel cross-section
    noisy = slicewise_contours(label, Annotator(slice_step=1, bias_mm=-3.0), spacing=1.0)
    assert (noisy == 9).sum(axis=(0, 1)).min() >= 1


def test_slicewise_on_phantom_changes_only_near_boundaries(case64):
    _, label = case64
    annotator = Annotator(slice_step=2, bias_mm=-1.0, jitter_mm=0.0, offset=0)
    noisy = slicewise_contours(label, annotator, spacing=SPACING)
    boundary = np.zeros(label.shape, np.float32)
    for k in range(0, 64, 2):  # in-plane distance of every pixel to a class border
        edges = ndimage.morphological_gradient(label[:, :, k], size=3) > 0
        boundary[:, :, k] = ndimage.distance_transform_edt(~edges, sampling=SPACING[:2])
    changed = (noisy != label)[:, :, ::2]
    assert changed.any()
    assert boundary[:, :, ::2][changed].max() <= 1.0 + 1.5


def test_geodesic_depth_of_a_voxel_chain():
    mask = np.zeros((10, 3, 3), bool)
    mask[:, 1, 1] = True
    root = np.zeros_like(mask)
    root[0, 1, 1] = True
    depth = geodesic_depth(mask, root, spacing=(1.5, 1.0, 1.0))
    np.testing.assert_allclose(depth[:, 1, 1], 1.5 * np.arange(10))
    assert np.isinf(depth[0, 0, 0])


def test_missed_branches_remove_only_distal_coronary_voxels(case64):
    _, label = case64
    noisy = cut_distal_branches(label, trees={9: 6}, keep_fraction=0.6, spacing=SPACING)
    removed = (label != noisy)
    assert removed.any()
    assert (label[removed] == 9).all() and (noisy[removed] == 0).all()
    pieces, count = ndimage.label(label == 9, np.ones((3, 3, 3)))
    near_aorta = ndimage.distance_transform_edt(label != 6, sampling=SPACING)
    for k in range(1, count + 1):
        piece = pieces == k
        dist = np.where(piece, near_aorta, np.inf)
        depth = geodesic_depth(piece, dist <= dist.min() + 1e-3, spacing=SPACING)
        kept = piece & ~removed
        assert depth[kept].max() <= 0.6 * depth[piece].max() + 1e-3 < depth[piece & removed].min()
    assert dice(label == 9, noisy == 9) > 0.3  # mostly present


@pytest.mark.parametrize("model", NOISE_MODELS)
def test_moderate_dice_in_range_and_thin_classes_damaged(case64, model):
    image, label = case64
    noisy = annotate(label, model=model, severity="moderate", image=image, spacing=SPACING, seed=3)
    scores = np.array([dice(label == c, noisy == c) for c in range(1, 11)])
    assert 0.65 <= scores.mean() <= 0.85, scores
    assert scores[8] < 0.8 and (noisy == 9).sum() > 0.3 * (label == 9).sum()  # coronaries damaged, present
    assert scores[9] < 0.9  # pulmonary veins
    mild = annotate(label, model=model, severity="mild", image=image, spacing=SPACING, seed=3)
    assert np.mean([dice(label == c, mild == c) for c in range(1, 11)]) > scores.mean()


def test_model_errors_leak_into_similar_intensity():
    label = np.zeros((20, 20, 20), np.uint8)
    label[2:10] = 1
    image = np.zeros(label.shape, np.float32)
    image[2:10] = 300.0
    image[10:14] = 290.0  # a neighbour that looks the same
    noisy = model_errors(label, image, severity=1.0, spacing=1.0, seed=0, trees={}, swap_pairs=())
    grown = (noisy == 1) & (label == 0)
    assert grown[10:14].any()  # leaked into the look-alike slab
    assert not grown[16:].any()  # but not into the dark one beyond (islands need a look-alike too)


def test_severity_zero_and_reproducible(case64):
    image, label = case64
    np.testing.assert_array_equal(annotate(label, severity=0.0, spacing=SPACING), label)
    a = annotate(label, model="mixed", image=image, spacing=SPACING, seed=1)
    b = annotate(label, model="mixed", image=image, spacing=SPACING, seed=1)
    c = annotate(label, model="mixed", image=image, spacing=SPACING, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_draw_annotator_ranges():
    for seed in range(20):
        a = draw_annotator("moderate", seed=seed)
        assert 2 <= a.slice_step <= 4 and 0.5 <= abs(a.bias_mm) <= 1.5 and 0 <= a.offset < a.slice_step


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"model": "slicewize"}, "Did you mean 'slicewise'"),
    ({"severity": "moderat"}, "Did you mean 'moderate'"),
    ({"severity": 1.5}, r"must be in \[0, 1\]"),
    ({"spacing": (1.0, 0.0, 1.0)}, "`spacing` must be one or 3 positive"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        annotate(np.zeros((8, 8, 8), np.uint8), **{"spacing": 1.0, **kwargs})


def test_bad_label_and_image():
    with pytest.raises(InputError, match="`label` must be a 3D integer array"):
        annotate(np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match="`image` must have the label's shape"):
        model_errors(np.zeros((8, 8, 8), np.uint8), np.zeros((4, 4, 4)))

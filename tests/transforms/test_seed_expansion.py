"""Tests of medrefine.transforms.seed_expansion: PA-Seg's geodesic seed expansion."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from medrefine.errors import GeometryError, InputError
from medrefine.losses.partial import UNLABELED
from medrefine.transforms import (
    SeedExpansion,
    SeedExpansiond,
    expand_point_set,
    expand_seeds,
)

SHAPE = (24, 24, 24)
CENTRE = np.array([12, 12, 12])
RADIUS = 7


def _sphere():
    grid = np.indices(SHAPE).transpose(1, 2, 3, 0)
    mask = ((grid - CENTRE) ** 2).sum(-1) <= RADIUS**2
    image = np.where(mask, 1.0, 0.0).astype(np.float32)
    points = np.zeros(SHAPE, np.uint8)
    points[tuple(CENTRE)] = 2
    for axis in range(3):
        for side in (-1, 1):
            voxel = CENTRE.copy()
            voxel[axis] += side * (RADIUS + 2)
            points[tuple(voxel)] = 1
    return image, mask, points


def test_sphere_expansion_precise_with_unlabeled_between():
    image, mask, points = _sphere()
    label = expand_seeds(image, points, spacing=(1.0, 1.0, 1.0))
    assert label.dtype == np.uint8 and label.shape == SHAPE
    assert set(np.unique(label).tolist()) == {0, 1, UNLABELED}
    fg = label == 1
    precision = (fg & mask).sum() / fg.sum()
    assert precision == 1.0 and fg.sum() > 20
    # the box of the points is 3..21 on every axis: unlabeled inside, background outside
    box = (slice(3, 22),) * 3
    outside = np.ones(SHAPE, bool)
    outside[box] = False
    assert (label[outside] == 0).all()
    assert (label[box] != 0).sum() == 19**3 - 6  # all of the box but the six background points
    assert (label[mask & ~fg] == UNLABELED).all()
    for v in np.argwhere(points == 1):
        assert label[tuple(v)] == 0


def test_euclidean_threshold_is_a_ball():
    image, _, points = _sphere()
    label = expand_seeds(image, points, spacing=1.0, lambda_geodesic=0.0, threshold=0.2)
    # box 3..21, centre 12: largest chamfer distance = corner, 9 * sqrt(3); foreground within 0.2 of it
    limit = 0.2 * 9 * np.sqrt(3)
    fg = np.argwhere(label == 1)
    assert np.sqrt(((fg - CENTRE) ** 2).sum(1)).max() <= limit + 1e-6
    assert label[12, 12, 12 + int(limit)] == 1 and label[12, 12, 12 + int(limit) + 1] == UNLABELED


def test_edge_stops_the_geodesic_expansion():
    image, mask, points = _sphere()
    geodesic = expand_seeds(image * 20.0, points, spacing=1.0, lambda_geodesic=0.9, threshold=0.5)
    euclid = expand_seeds(image * 20.0, points, spacing=1.0, lambda_geodesic=0.0, threshold=0.5)
    assert ((euclid == 1) & ~mask).sum() > 0  # the ball leaks out of the sphere
    assert ((geodesic == 1) & ~mask).sum() == 0  # the edge holds the geodesic expansion


def test_background_threshold_labels_the_far_side_of_an_edge():
    image, mask, points = _sphere()
    pa_seg = expand_seeds(image, points, spacing=1.0, lambda_geodesic=0.9)
    label = expand_seeds(image, points, spacing=1.0, lambda_geodesic=0.9, background_threshold=0.5)
    box = np.zeros(SHAPE, bool)
    box[(slice(3, 22),) * 3] = True
    # foreground unchanged; the box beyond the sphere's edge (normalised distance ~0.76) is background,
    # the sphere (at most ~0.2 from its centre) stays foreground or unlabeled
    assert ((label == 1) == (pa_seg == 1)).all()
    assert (label[box & ~mask] == 0).all()
    assert (label[mask] != 0).all() and (label[mask & (pa_seg == UNLABELED)] == UNLABELED).all()
    # a larger threshold labels a subset of it; the dictionary transform passes it on
    farther = expand_seeds(image, points, spacing=1.0, lambda_geodesic=0.9, background_threshold=0.95)
    assert 0 < (box & (farther == 0)).sum() < (box & (label == 0)).sum() and (label[farther == 0] == 0).all()
    d = SeedExpansiond("points", lambda_geodesic=0.9, background_threshold=0.5)({"image": image[None], "points": points[None]})
    assert (d["points"][0] == label).all()


def test_smoothing_keeps_noise_from_leaking_the_expansion():
    image, mask, points = _sphere()
    noisy = image + np.random.default_rng(0).normal(0.0, 0.3, SHAPE).astype(np.float32)
    raw = expand_seeds(noisy, points, spacing=1.0, lambda_geodesic=0.99, threshold=0.3)
    smoothed = expand_seeds(noisy, points, spacing=1.0, lambda_geodesic=0.99, threshold=0.3, smooth_mm=1.0)
    assert ((raw == 1) & ~mask).sum() > 10  # noise makes the edge look like texture: the expansion leaks
    assert ((smoothed == 1) & ~mask).sum() == 0 and (smoothed == 1).sum() > 0.5 * mask.sum()
    assert (expand_seeds(noisy, points, spacing=1.0, lambda_geodesic=0.99, threshold=0.3, smooth_mm=0.0) == raw).all()
    with pytest.raises(ValueError, match=r"`smooth_mm` must be a finite number >= 0, got -1"):
        expand_seeds(image, points, spacing=1.0, smooth_mm=-1)


def test_margin_and_torch_io():
    image, _, points = _sphere()
    label = expand_seeds(torch.from_numpy(image)[None], torch.from_numpy(points)[None], spacing=(1, 1, 2), margin_mm=2.5)
    assert isinstance(label, torch.Tensor) and label.shape == (1, *SHAPE) and label.dtype == torch.uint8
    # margin 2.5 mm -> 3, 3, 2 voxels per side
    assert label[0, 0, 12, 12] == 255 and label[0, 12, 12, 1] == 255 and label[0, 12, 12, 0] == 0


def test_multiclass_map():
    image, _, points = _sphere()
    points[6, 12, 12] = 3  # a class-2 point left of the centre
    label = expand_seeds(image, points, spacing=1.0)
    assert label[12, 12, 12] == 1 and label[6, 12, 12] == 2
    assert set(np.unique(label).tolist()) == {0, 1, 2, UNLABELED}


def test_errors():
    image, _, points = _sphere()
    with pytest.raises(ValueError, match=r"case.nii.gz: expected at least one foreground point .* found values \[0, 1\]"):
        expand_seeds(image, np.minimum(points, 1), spacing=1.0, source="case.nii.gz")
    with pytest.raises(ValueError, match=r"`image` must have shape \(24, 24, 24\)"):
        expand_seeds(image[:-1], points, spacing=1.0)
    with pytest.raises(ValueError, match=r"`threshold` must be in \(0, 1\], got 0"):
        expand_seeds(image, points, spacing=1.0, threshold=0)
    with pytest.raises(ValueError, match=r"`background_threshold` must be None or in \(threshold, 1\] = \(0.2, 1\], got 0.2"):
        expand_seeds(image, points, spacing=1.0, background_threshold=0.2)
    with pytest.raises(ValueError, match="`spacing` must have 3 positive finite values"):
        expand_seeds(image, points, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(TypeError, match="`image` must be a numpy array or torch tensor, got list"):
        expand_seeds([0.0], points, spacing=1.0)


def _meta(array, affine, name):
    from monai.data import MetaTensor

    return MetaTensor(torch.as_tensor(array)[None], affine=torch.as_tensor(affine), meta={"filename_or_obj": name})


def test_array_transform_uses_metatensor_spacing_and_checks_grid():
    image, _, points = _sphere()
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    xform = SeedExpansion()
    out = xform(_meta(image, affine, "img.nii.gz"), _meta(points, affine, "pts.nii.gz"))
    assert out.shape == (1, *SHAPE) and hasattr(out, "affine")
    np.testing.assert_array_equal(out[0].numpy(), expand_seeds(image, points, spacing=1.0))
    moved = affine.copy()
    moved[0, 3] = 5.0
    with pytest.raises(GeometryError, match="img.nii.gz and pts.nii.gz are expected to share one voxel grid"):
        xform(_meta(image, affine, "img.nii.gz"), _meta(points, moved, "pts.nii.gz"))
    with pytest.raises(InputError, match="empty.nii.gz: expected at least one foreground point"):
        xform(_meta(image, affine, "img.nii.gz"), _meta(np.minimum(points, 1), affine, "empty.nii.gz"))


def test_dictionary_transform_matches_array_transform():
    image, _, points = _sphere()
    data = {"image": image[None], "label": points[None], "other": 1}
    out = SeedExpansiond(keys="label", image_key="image", spacing=1.0)(data)
    np.testing.assert_array_equal(out["label"], SeedExpansion(spacing=1.0)(image[None], points[None]))
    assert out["other"] == 1 and data["label"].max() == 2  # the input dict is left unchanged
    assert SeedExpansiond(keys=["label", "missing"], allow_missing_keys=True, spacing=1.0)(data)["label"].max() == 255
    with pytest.raises(KeyError):
        SeedExpansiond(keys=["label", "missing"], spacing=1.0)(data)


def test_point_set_single_class_equals_map():
    from medrefine.points import map_to_points

    image, _, points = _sphere()
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    point_set = map_to_points(points, affine)
    np.testing.assert_array_equal(
        expand_point_set(image, point_set, affine), expand_seeds(image, points, spacing=(1.0, 1.0, 2.0))
    )


def test_point_set_boxes_per_class():
    from medrefine.points import PointSet

    image = np.zeros((32, 16, 16), np.float32)
    voxels, foreground, classes = [], [], []
    for cls, centre in ((1, (6, 8, 8)), (2, (25, 8, 8))):
        voxels.append(centre)
        foreground.append(True)
        classes.append(cls)
        for axis in range(3):
            for side in (-1, 1):
                v = list(centre)
                v[axis] += 3 * side
                voxels.append(v)
                foreground.append(False)
                classes.append(cls)
    points = PointSet.from_voxel(voxels, np.eye(4), foreground, classes)
    label = expand_point_set(image, points, np.eye(4))
    assert label[6, 8, 8] == 1 and label[25, 8, 8] == 2
    assert (label[10:22] == 0).all()  # between the two boxes: background, not unlabeled
    assert (label[3:10, 5:12, 5:12] != 0).sum() == 7**3 - 6 and (label[22:29, 5:12, 5:12] != 0).sum() == 7**3 - 6
    # the same points as a map (background points of any class): one box over both, nothing background between
    from medrefine.points import points_to_map

    merged = expand_seeds(image, points_to_map(points, image.shape, np.eye(4)), spacing=1.0)
    assert (merged[10:22, 5:12, 5:12] != 0).all() and UNLABELED in merged[10:22]


def test_point_set_errors():
    from medrefine.points import PointSet

    image = np.zeros((8, 8, 8), np.float32)
    with pytest.raises(InputError, match="case.json: expected at least one foreground point, found 1 background"):
        expand_point_set(image, PointSet([[1, 1, 1]], [False], source="case.json"), np.eye(4))
    with pytest.raises(InputError, match=r"case.json: expected .*point 0 \(foreground, class 1\) .* lies outside img.nii.gz"):
        expand_point_set(image, PointSet([[1, 1, 9]], [True], source="case.json"), np.eye(4), image_name="img.nii.gz")


@pytest.mark.parametrize("lambda_geodesic", [0.0, 0.5])
def test_foreground_grows_with_threshold(lambda_geodesic):
    image, _, points = _sphere()
    labels = [expand_seeds(image, points, spacing=1.0, threshold=t, lambda_geodesic=lambda_geodesic) for t in (0.1, 0.2, 0.4)]
    for small, large in itertools.pairwise(labels):
        assert ((small == 1) <= (large == 1)).all() and (large == 1).sum() > (small == 1).sum()
        np.testing.assert_array_equal(small == 0, large == 0)  # the background does not depend on the threshold


def test_module():
    """``SeedExpansion(**kw)(image, points, spacing=s)`` is ``expand_seeds(image, points, spacing=s, **kw)``.

    The defaults of the shared arguments agree; the function has no default spacing (it must be
    given), the transform takes it from the inputs' affine, its argument, or its constructor.
    """
    import inspect

    function = inspect.signature(expand_seeds).parameters
    module = inspect.signature(SeedExpansion).parameters
    shared = [k for k in module if k in function and k != "spacing"]
    assert shared and {k: module[k].default for k in shared} == {k: function[k].default for k in shared}
    image, _, points = _sphere()
    spacing = (1.0, 1.5, 2.0)
    np.testing.assert_array_equal(SeedExpansion()(image[None], points[None], spacing=spacing)[0],
                                  expand_seeds(image, points, spacing=spacing))
    np.testing.assert_array_equal(SeedExpansion(spacing=spacing)(image[None], points[None])[0],
                                  expand_seeds(image, points, spacing=spacing))
    kwargs = dict(threshold=0.3, margin_mm=2.0, lambda_geodesic=0.9, num_passes=2, background_threshold=0.6, smooth_mm=1.0)
    np.testing.assert_array_equal(SeedExpansion(**kwargs)(image[None], points[None], spacing=spacing)[0],
                                  expand_seeds(image, points, spacing=spacing, **kwargs))

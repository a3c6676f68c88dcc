"""Tests of medrefine.data.heart_sdf (SDF heart phantoms) and medrefine.data.sdf."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medrefine.data.heart_sdf import (
    CORONARY_RADIUS_MM,
    draw_heart_anatomy,
    make_heart_sdf_phantom,
)
from medrefine.data.sdf import Ellipsoid, Pose, SampleBlock, Tube, smooth_min
from medrefine.data.phantoms import phantom_affine
from medrefine.errors import InputError

FULL = np.ones((3, 3, 3), bool)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def phantoms64():
    """Two 64^3 / 1.5 mm phantoms (centre samples only: the label does not depend on it)."""
    return {seed: make_heart_sdf_phantom(64, seed=seed, supersample=1) for seed in SEEDS}


def test_sdf_primitives_exact_values():
    block = SampleBlock([np.array([0.0, 3.0, 10.0])] * 3, Pose())
    sphere = Ellipsoid([0, 0, 0], [5.0, 5.0, 5.0]).render(block)
    assert sphere[0, 0, 0] == pytest.approx(-5.0)
    assert sphere[1, 0, 0] == pytest.approx(-2.0)
    assert sphere[2, 0, 0] == pytest.approx(5.0)
    capsule = Tube([[0, 0, -10.0], [0, 0, 10.0]], 2.0).render(block)
    assert capsule[1, 0, 0] == pytest.approx(1.0)  # 3 mm from the axis, radius 2
    assert capsule[0, 1, 2] == pytest.approx(1.0)
    assert float(smooth_min(np.float32(1.0), np.float32(5.0), 2.0)) == 1.0  # beyond the fillet: plain min
    scaled = Ellipsoid([0, 0, 0], [5.0, 5.0, 5.0]).render(SampleBlock([np.array([0.0, 12.0])] * 3, Pose(scale=2.0)))
    assert scaled[1, 0, 0] == pytest.approx(2.0)  # radius 10 mm after the pose's scale


def test_shapes_dtypes_affine_and_supersampling():
    image1, label1, spacing = make_heart_sdf_phantom(24, seed=3, spacing_mm=4.0, supersample=1)
    image3, label3, _ = make_heart_sdf_phantom(24, seed=3, spacing_mm=4.0, supersample=3)
    assert image1.shape == label1.shape == (24, 24, 24)
    assert image1.dtype == np.float32 and label1.dtype == np.uint8 and spacing == (4.0, 4.0, 4.0)
    np.testing.assert_array_equal(label1, label3)  # the label is each voxel's centre sample
    assert not np.allclose(image1, image3)  # partial volume changes the image
    affine = phantom_affine((64, 64, 64), (1.5, 1.5, 1.5))
    np.testing.assert_allclose(affine @ [31.5, 31.5, 31.5, 1.0], [0, 0, 0, 1])
    assert affine[0, 0] == 1.5


def test_seeds_reproducible_and_differing():
    a = make_heart_sdf_phantom(24, seed=5, spacing_mm=4.0, supersample=1)
    b = make_heart_sdf_phantom(24, seed=5, spacing_mm=4.0, supersample=1)
    c = make_heart_sdf_phantom(24, seed=6, spacing_mm=4.0, supersample=1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1]) and not np.allclose(a[0], c[0])
    angles = [draw_heart_anatomy(np.random.default_rng(s)).params["coronary_branch_angles_deg"] for s in (1, 2)]
    assert angles[0] != angles[1]
    assert all(20.0 <= a <= 80.0 for a in angles[0] + angles[1])


@pytest.mark.parametrize("seed", SEEDS)
def test_every_class_present_with_plausible_volume(phantoms64, seed):
    _, label, _ = phantoms64[seed]
    ml = np.bincount(label.ravel(), minlength=11) * 1.5**3 / 1000
    assert (ml[1:] > 0).all(), ml
    assert 25 < ml[1] < 80  # myocardium
    assert 1.5 < ml[8] < 8  # LAA
    assert 2 < ml[9] < 7  # coronaries
    assert set(np.argsort(ml[1:])[:2] + 1) == {8, 9}  # LAA and coronaries: the two smallest classes


@pytest.mark.parametrize("seed", SEEDS)
def test_coronary_trees_connected_with_real_radii(phantoms64, seed):
    _, label, _ = phantoms64[seed]
    anatomy = draw_heart_anatomy(np.random.default_rng(seed))
    cor = label == 9
    pieces, count = ndimage.label(cor, FULL)
    assert count == len(anatomy.coronary_trees) == 2  # left and right tree, one piece each
    edt = ndimage.distance_transform_edt(cor, sampling=1.5)
    for tubes in anatomy.coronary_trees.values():
        world = np.concatenate([anatomy.pose.to_world(t.points) for t in tubes])
        ijk = np.rint(world / 1.5 + 31.5).astype(int)
        ijk = ijk[np.all((ijk >= 0) & (ijk < 64), axis=1)]
        on_line = cor[tuple(ijk.T)]
        assert on_line.mean() > 0.95  # the centrelines are labelled coronary (bar the ostium)
        assert len(set(pieces[tuple(ijk[on_line].T)].tolist())) == 1  # one tree, one piece
        # radius read at the centreline: EDT from a centre voxel = r rounded up to a voxel step
        assert 1.5 <= np.median(edt[tuple(ijk[on_line].T)]) <= 3.1
        for tube in tubes:
            radii = tube.radii * anatomy.pose.scale
            assert CORONARY_RADIUS_MM[0] - 1e-6 <= radii.min() and radii.max() <= CORONARY_RADIUS_MM[1] + 1e-6
            assert radii[0] >= radii[-1]  # tapering
    length = sum(t.length() * anatomy.pose.scale for ts in anatomy.coronary_trees.values() for t in ts)
    radius = np.sqrt(cor.sum() * 1.5**3 / (np.pi * length))  # volume = pi r^2 L
    assert 1.3 < radius < 2.8


@pytest.mark.parametrize("seed", SEEDS)
def test_laa_and_veins_hang_off_the_la_by_a_narrow_neck(phantoms64, seed):
    _, label, _ = phantoms64[seed]
    near_la = ndimage.distance_transform_edt(label != 2, sampling=1.5) <= 4.5
    for cls, expected in ((8, 1), (10, 4)):
        pieces, count = ndimage.label(label == cls, FULL)
        assert count == expected
        for k in range(1, count + 1):
            piece = pieces == k
            assert (ndimage.binary_dilation(piece) & (label == 2)).any()  # attached to the LA
            depth = ndimage.distance_transform_edt(piece, sampling=1.5)
            neck, body = depth[piece & near_la].max(), depth[piece & ~near_la].max()
            assert neck < body, (cls, k, neck, body)


def test_image_model_blood_myocardium_and_background(phantoms64):
    image, label, _ = phantoms64[0]
    blood = image[label == 3].mean()
    myo = image[label == 1].mean()
    assert blood > myo + 40  # every contrast phase keeps blood above myocardium
    assert image[label == 0].min() < -600  # lungs in the field
    # noise correlated in-plane only: x-neighbours correlate, z-neighbours (almost) do not
    pool = ndimage.binary_erosion(label == 3, iterations=2)
    residual = np.where(pool, image - ndimage.median_filter(image, 5), np.nan)
    corr_x = np.nanmean(residual[1:] * residual[:-1]) / np.nanvar(residual)
    corr_z = np.nanmean(residual[..., 1:] * residual[..., :-1]) / np.nanvar(residual)
    assert corr_x > corr_z + 0.2


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"size": 4}, "at least 8"),
    ({"size": (8, 8)}, "`size` must be an int or 3 ints"),
    ({"spacing_mm": 0.0}, "`spacing_mm` must be one or 3 positive"),
    ({"supersample": 2}, "`supersample` must be an odd"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        make_heart_sdf_phantom(**{"size": 16, **kwargs})

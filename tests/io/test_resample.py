"""Tests for medrefine.io.resample.resample_to."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.errors import InputError
from medrefine.io import Volume, resample_to
from medrefine.io.resample import _nearest


def _labels(shape=(6, 7, 8), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 5, size=shape).astype(np.uint8)


def test_same_grid_returns_copy():
    vol = Volume(_labels(), np.diag([2.0, 2.0, 2.0, 1.0]))
    out = resample_to(vol, vol)
    np.testing.assert_array_equal(out.array, vol.array)
    assert out.array is not vol.array and out.path is None


def test_flipped_grid_same_extent_is_exact_flip():
    """A y-flipped grid covering the same world box: resampling is exactly array[:, ::-1]."""
    arr = _labels()
    ref_affine = np.diag([1.0, 2.0, 3.0, 1.0])
    mov_affine = np.diag([1.0, -2.0, 3.0, 1.0])
    mov_affine[1, 3] = 2.0 * (arr.shape[1] - 1)
    out = resample_to(Volume(arr, mov_affine), Volume(np.zeros(arr.shape), ref_affine))
    np.testing.assert_array_equal(out.array, arr[:, ::-1, :])
    assert out.array.dtype == np.uint8
    np.testing.assert_allclose(out.affine, ref_affine)


def test_permuted_axes_and_shift_fill_outside():
    arr = _labels((4, 5, 6))
    # moving axes (i, j, k) point along world (y, z, x); its origin is 1 voxel further along world x
    mov_affine = np.array([[0, 0, 1, 1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
    reference = Volume(np.zeros((6, 4, 5)), np.eye(4))
    out = resample_to(Volume(arr, mov_affine), reference, fill_value=9)
    expected = np.full((6, 4, 5), 9, np.uint8)
    expected[1:, :, :] = np.transpose(arr, (2, 0, 1))[:5]
    np.testing.assert_array_equal(out.array, expected)


def test_nearest_downsampling_hand_computed():
    """1 mm reference on a 2 mm moving grid: reference voxel i takes moving voxel round(i / 2)."""
    moving = Volume(np.arange(4, dtype=np.int16).reshape(4, 1, 1), np.diag([2.0, 1.0, 1.0, 1.0]))
    reference = Volume(np.zeros((7, 1, 1)), np.eye(4))
    out = resample_to(moving, reference)
    # i / 2 = 0, .5, 1, 1.5, 2, 2.5, 3 -> numpy rounds half to even
    np.testing.assert_array_equal(out.array[:, 0, 0], [0, 0, 1, 2, 2, 2, 3])
    assert out.array.dtype == np.int16


def test_linear_is_exact_on_a_ramp():
    ramp = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 3, 3), np.float32)
    moving = Volume(ramp, np.eye(4))
    ref_affine = np.diag([0.5, 1.0, 1.0, 1.0])
    out = resample_to(moving, Volume(np.zeros((9, 3, 3)), ref_affine), order=1)
    np.testing.assert_allclose(out.array[:, 1, 1], np.arange(9) * 0.5, atol=1e-6)
    assert out.array.dtype == np.float32


def test_oblique_grid_matches_world_geometry():
    """An off-centre disk sampled onto a grid rotated by 30 degrees lands where geometry says it must.

    Reference voxels whose world position is clearly inside (outside) the disk must be labelled 1 (0);
    only a one-voxel band at the border may go either way under nearest neighbour.
    """
    centre, radius = np.array([8.0, 14.0]), 4.5
    ii, jj = np.meshgrid(np.arange(24), np.arange(24), indexing="ij")
    disk = (np.hypot(ii - centre[0], jj - centre[1]) < radius).astype(np.uint8)
    moving = Volume(np.repeat(disk[:, :, None], 3, axis=2), np.diag([1.0, 1.0, 2.0, 1.0]))

    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    ref_affine = np.eye(4)
    ref_affine[:2, :2] = [[c, -s], [s, c]]
    ref_affine[:3, 3] = [12.0, -2.0, 0.0]
    ref_affine[2, 2] = 2.0
    out = resample_to(moving, Volume(np.zeros((24, 24, 3)), ref_affine))

    world = ref_affine[:2, :2] @ np.stack([ii.ravel(), jj.ravel()]) + ref_affine[:2, 3:4]
    dist = np.hypot(world[0] - centre[0], world[1] - centre[1]).reshape(24, 24)
    got = out.array[:, :, 1]
    assert (got[dist < radius - 0.9] == 1).all()
    assert (got[dist > radius + 0.9] == 0).all()
    assert (dist < radius - 0.9).sum() > 20  # the disk is inside the rotated field of view


def test_nearest_helper_matches_fast_path_on_flip():
    arr = _labels((5, 6, 7))
    matrix = np.diag([-1.0, 1.0, 1.0, 1.0])
    matrix[0, 3] = 4
    np.testing.assert_array_equal(_nearest(arr, matrix, arr.shape, 0), arr[::-1])


def test_channels_are_resampled_separately():
    arr = np.stack([_labels(seed=1), _labels(seed=2)], axis=-1)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = arr.shape[0] - 1
    out = resample_to(Volume(arr, flip), Volume(np.zeros(arr.shape[:3]), np.eye(4)))
    np.testing.assert_array_equal(out.array, arr[::-1])


@pytest.mark.parametrize("order", [-1, 6, 1.5, True])
def test_bad_order_raises(order):
    vol = Volume(np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match=r"`order` must be an integer in 0\.\.5"):
        resample_to(vol, vol, order=order)

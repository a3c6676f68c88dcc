"""Tests of medrefine.points.pointset: world <-> voxel and the PointSet container."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.errors import InputError
from medrefine.points import PointSet, voxel_to_world, world_to_voxel

# anisotropic, non-RAS: axis 0 runs towards Left (-x), axis 1 is superior (z), axis 2 posterior (-y)
LPS_LIKE = np.array(
    [
        [-0.8, 0.0, 0.0, 50.0],
        [0.0, 0.0, -2.5, 20.0],
        [0.0, 1.2, 0.0, -30.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def test_voxel_to_world_hand_value():
    world = voxel_to_world([[1, 2, 3]], LPS_LIKE)
    # x = -0.8 * 1 + 50, y = -2.5 * 3 + 20, z = 1.2 * 2 - 30
    np.testing.assert_allclose(world, [[49.2, 12.5, -27.6]])


def test_world_to_voxel_hand_value():
    np.testing.assert_allclose(world_to_voxel([49.2, 12.5, -27.6], LPS_LIKE), [[1.0, 2.0, 3.0]], atol=1e-12)


@pytest.mark.parametrize("affine", [np.eye(4), LPS_LIKE])
def test_round_trip(affine):
    rng = np.random.default_rng(0)
    voxels = rng.uniform(-5, 40, size=(20, 3))
    np.testing.assert_allclose(world_to_voxel(voxel_to_world(voxels, affine), affine), voxels, atol=1e-9)


def test_round_trip_with_rotation():
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 1.1, 3.0])
    affine[:3, 3] = [-10, 4, 7]
    voxels = np.array([[0.0, 0.0, 0.0], [3.5, 2.0, 9.0]])
    np.testing.assert_allclose(world_to_voxel(voxel_to_world(voxels, affine), affine), voxels, atol=1e-9)


def test_bad_shapes_and_affine():
    with pytest.raises(ValueError, match=r"`world` must have shape \(N, 3\)"):
        world_to_voxel([[1.0, 2.0]], np.eye(4))
    with pytest.raises(ValueError, match="`affine` must be a 4x4 matrix"):
        voxel_to_world([[1, 2, 3]], np.eye(3))
    with pytest.raises(ValueError, match="invertible"):
        world_to_voxel([[1, 2, 3]], np.zeros((4, 4)))


def test_pointset_defaults_and_checks():
    points = PointSet(world=[[0, 0, 0], [1, 1, 1]], foreground=[True, False])
    assert points.classes.tolist() == [1, 0]
    assert points.labels() == ["foreground", "background"]
    assert points.foreground_classes == [1]
    with pytest.raises(ValueError, match="foreground points need a class >= 1"):
        PointSet(world=[[0, 0, 0]], foreground=[True], classes=[0])
    with pytest.raises(ValueError, match="one entry per point"):
        PointSet(world=[[0, 0, 0]], foreground=[True, False])


def test_voxel_indices_rounds_and_rejects_outside():
    points = PointSet.from_voxel([[1.4, 2.6, 0.0], [9.6, 0, 0]], np.eye(4), [True, False], source="a/pts.json")
    assert points.voxel_indices((11, 10, 10), np.eye(4), image_name="img").tolist() == [[1, 3, 0], [10, 0, 0]]
    with pytest.raises(InputError, match=r"a/pts.json: expected .*point 1 \(background, class 0\) at world \(9.60, 0.00, 0.00\) mm lies outside img"):
        points.voxel_indices((10, 10, 10), np.eye(4), image_name="img")

"""Tests of medrefine.geodesic.reference (the Dijkstra reference used to check the raster scan)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medrefine.geodesic import dijkstra_geodesic_distance


def test_hand_computed_values():
    seeds = np.zeros((6, 6))
    seeds[0, 0] = 1
    distance = dijkstra_geodesic_distance(np.zeros((6, 6)), seeds, spacing=(2.0, 1.0), lambda_geodesic=0.0)
    assert distance[0, 0] == 0.0
    assert distance[0, 5] == pytest.approx(5.0)
    assert distance[2, 2] == pytest.approx(2 * math.sqrt(5.0))
    image = np.zeros((3, 4, 4))
    image[:, :, 2:] = 2.0
    seeds3 = np.zeros((3, 4, 4))
    seeds3[1, 1, 0] = 1
    distance3 = dijkstra_geodesic_distance(image, seeds3, lambda_geodesic=1.0)
    assert distance3[..., :2].max() == 0.0
    np.testing.assert_allclose(distance3[..., 2:], 2.0)


def test_radius_two_knight_move():
    seeds = np.zeros((5, 5))
    seeds[0, 0] = 1
    r1 = dijkstra_geodesic_distance(np.zeros((5, 5)), seeds, lambda_geodesic=0.0)
    r2 = dijkstra_geodesic_distance(np.zeros((5, 5)), seeds, lambda_geodesic=0.0, neighbourhood_radius=2)
    assert r1[1, 2] == pytest.approx(1 + math.sqrt(2))
    assert r2[1, 2] == pytest.approx(math.sqrt(5))


def test_multichannel_uses_l1_of_channel_differences():
    image = np.zeros((2, 1, 3))
    image[0, 0, 1:] = 1.0
    image[1, 0, 1:] = 2.0
    seeds = np.zeros((1, 3))
    seeds[0, 0] = 1
    distance = dijkstra_geodesic_distance(image, seeds, lambda_geodesic=1.0)
    np.testing.assert_allclose(distance[0], [0.0, 3.0, 3.0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image": np.zeros((4, 4)), "seeds": np.zeros((4, 4))}, r"`seeds` must mark at least one voxel"),
        ({"image": np.zeros((4, 5)), "seeds": np.ones((4, 4))}, r"`image` must have shape \(4, 4\)"),
        ({"image": np.zeros(4), "seeds": np.ones(4)}, r"`seeds` must be 2D or 3D, got shape \(4,\)"),
        ({"image": np.zeros((4, 4)), "seeds": np.ones((4, 4)), "lambda_geodesic": 2.0}, r"`lambda_geodesic` must be in \[0, 1\], got 2.0"),
        ({"image": np.zeros((4, 4)), "seeds": np.ones((4, 4)), "spacing": (1.0, 0.0)}, r"`spacing` must have 2 positive values"),
        ({"image": np.zeros((4, 4)), "seeds": np.ones((4, 4)), "neighbourhood_radius": 0}, r"`neighbourhood_radius` must be a positive integer, got 0"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dijkstra_geodesic_distance(kwargs.pop("image"), kwargs.pop("seeds"), **kwargs)

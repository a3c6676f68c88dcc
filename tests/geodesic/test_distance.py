"""Tests of medrefine.geodesic.distance: shapes, exact values, Euclidean and Dijkstra references, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medrefine.geodesic import (
    GeodesicDistance,
    dijkstra_geodesic_distance,
    generalised_geodesic_distance,
    geodesic_distance_2d,
    geodesic_distance_3d,
)

scipy_ndimage = pytest.importorskip("scipy.ndimage")


def smooth_image(shape: tuple[int, ...], seed: int = 0, contrast: float = 4.0) -> torch.Tensor:
    """Smoothed uniform noise in [0, contrast], float64."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 1, *shape, generator=generator, dtype=torch.float64)
    pool = F.avg_pool2d if len(shape) == 2 else F.avg_pool3d
    return pool(noise, 3, 1, 1)[0, 0] * contrast


def point_seeds(shape: tuple[int, ...], points: list[tuple[int, ...]]) -> torch.Tensor:
    seeds = torch.zeros(shape, dtype=torch.bool)
    for point in points:
        seeds[point] = True
    return seeds


def max_mean_relative(values: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    mask = reference > 0
    rel = np.abs(values[mask] - reference[mask]) / reference[mask]
    return float(rel.max()), float(rel.mean())


CASE_2D = ((32, 32), (1.0, 0.7), [(3, 4), (20, 25)])
CASE_3D = ((12, 20, 20), (2.0, 1.0, 0.8), [(2, 3, 4), (8, 15, 12)])


# ------------------------------------------------------------------------------------------------
# smoke: shapes, dtypes, devices
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image_shape, seeds_shape, out_shape",
    [
        ((16, 20), (16, 20), (16, 20)),
        ((6, 16, 20), (6, 16, 20), (6, 16, 20)),
        ((2, 1, 16, 20), (2, 1, 16, 20), (2, 1, 16, 20)),
        ((2, 3, 16, 20), (16, 20), (2, 1, 16, 20)),
        ((2, 1, 6, 16, 20), (2, 1, 6, 16, 20), (2, 1, 6, 16, 20)),
        ((1, 2, 6, 16, 20), (6, 16, 20), (1, 1, 6, 16, 20)),
    ],
)
def test_shapes(image_shape, seeds_shape, out_shape):
    image = torch.rand(image_shape)
    seeds = torch.zeros(seeds_shape)
    seeds.view(-1)[::97] = 1
    distance = generalised_geodesic_distance(image, seeds, lambda_geodesic=0.5)
    assert distance.shape == out_shape
    assert distance.dtype == torch.float32
    assert torch.isfinite(distance).all()
    assert (distance >= 0).all()


@pytest.mark.parametrize("dtype, expected", [(torch.float32, torch.float32), (torch.float64, torch.float64),
                                             (torch.int16, torch.float32), (torch.float16, torch.float32)])
def test_dtypes(dtype, expected):
    image = (torch.rand(8, 10, 12) * 100).to(dtype)
    seeds = point_seeds((8, 10, 12), [(0, 0, 0)])
    assert generalised_geodesic_distance(image, seeds).dtype == expected


@pytest.mark.parametrize("shape", [(24, 30), (8, 12, 14)])
@pytest.mark.parametrize("lambda_geodesic", [0.0, 0.5, 1.0])
def test_seeds_are_zero_and_others_positive(shape, lambda_geodesic):
    image = smooth_image(shape, contrast=1.0) + 0.01 * torch.arange(math.prod(shape)).reshape(shape)
    seeds = torch.rand(shape, generator=torch.Generator().manual_seed(1)) > 0.97
    distance = generalised_geodesic_distance(image, seeds, lambda_geodesic=lambda_geodesic)
    assert (distance[seeds] == 0).all()
    assert (distance[~seeds] > 0).all()


def test_batch_items_are_independent():
    image = torch.rand(3, 1, 6, 14, 16)
    seeds = torch.zeros(3, 1, 6, 14, 16)
    seeds[0, 0, 0, 0, 0] = seeds[1, 0, 3, 7, 8] = seeds[2, 0, 5, 13, 15] = 1
    batched = generalised_geodesic_distance(image, seeds, spacing=(2.0, 1.0, 1.0))
    for b in range(3):
        single = generalised_geodesic_distance(image[b, 0], seeds[b, 0], spacing=(2.0, 1.0, 1.0))
        torch.testing.assert_close(batched[b, 0], single)


def test_multichannel_is_sum_of_channel_differences():
    # two identical channels double the intensity term: equals one channel with doubled values
    image = smooth_image((10, 12, 14)).float()
    seeds = point_seeds((10, 12, 14), [(5, 6, 7)])
    two = generalised_geodesic_distance(torch.stack([image, image])[None], seeds, lambda_geodesic=0.5)
    one = generalised_geodesic_distance(2 * image, seeds, lambda_geodesic=0.5)
    torch.testing.assert_close(two[0, 0], one)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu():
    image = smooth_image((10, 16, 18)).float()
    seeds = point_seeds((10, 16, 18), [(1, 2, 3)])
    cpu = generalised_geodesic_distance(image, seeds, lambda_geodesic=0.7)
    gpu = generalised_geodesic_distance(image.cuda(), seeds.cuda(), lambda_geodesic=0.7)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu)


# ------------------------------------------------------------------------------------------------
# exact values
# ------------------------------------------------------------------------------------------------


def test_hand_computed_euclidean_steps():
    image = torch.zeros(6, 8)
    seeds = point_seeds((6, 8), [(0, 0)])
    distance = geodesic_distance_2d(image, seeds, spacing=(2.0, 0.5), lambda_geodesic=0.0)
    assert distance[0, 7].item() == pytest.approx(7 * 0.5)
    assert distance[5, 0].item() == pytest.approx(5 * 2.0)
    assert distance[3, 3].item() == pytest.approx(3 * math.hypot(2.0, 0.5))
    assert distance[1, 5].item() == pytest.approx(math.hypot(2.0, 0.5) + 4 * 0.5)

    volume = torch.zeros(5, 5, 5)
    seeds3 = point_seeds((5, 5, 5), [(0, 0, 0)])
    distance3 = geodesic_distance_3d(volume, seeds3, spacing=(3.0, 1.0, 1.0), lambda_geodesic=0.0)
    assert distance3[4, 4, 4].item() == pytest.approx(4 * math.sqrt(11.0))
    assert distance3[0, 2, 4].item() == pytest.approx(2 * math.sqrt(2.0) + 2.0)


def test_hand_computed_intensity_edge():
    # a step edge of height 3 between columns 3 and 4; lambda=1 counts only intensity jumps
    image = torch.zeros(8, 8)
    image[:, 4:] = 3.0
    seeds = point_seeds((8, 8), [(0, 0)])
    distance = geodesic_distance_2d(image, seeds, lambda_geodesic=1.0)
    assert distance[:, :4].abs().max().item() == 0.0
    torch.testing.assert_close(distance[:, 4:], torch.full((8, 4), 3.0))
    mixed = geodesic_distance_2d(image, seeds, lambda_geodesic=0.25)
    # cheapest: 4 steps right (one across the edge): 0.75 * 4 + 0.25 * 3
    assert mixed[0, 4].item() == pytest.approx(0.75 * 4 + 0.25 * 3)


def test_constant_image_lambda_one_is_zero():
    distance = generalised_geodesic_distance(torch.full((6, 9, 7), 5.0), point_seeds((6, 9, 7), [(3, 4, 3)]))
    assert distance.abs().max().item() == 0.0


@pytest.mark.parametrize("passes", [1, 2, 4])
def test_matches_fastgeodis_when_installed(passes):
    fastgeodis = pytest.importorskip("FastGeodis")
    image = smooth_image((10, 16, 18)).float()[None, None]
    seeds = point_seeds((10, 16, 18), [(1, 2, 3), (7, 10, 12)]).float()[None, None]
    image2d, seeds2d = image[:, :, 4], seeds[:, :, 7]
    for lam in (0.0, 0.5, 1.0):
        ours = generalised_geodesic_distance(
            image, seeds, spacing=(2.0, 1.0, 0.8), lambda_geodesic=lam, num_passes=passes
        )
        theirs = fastgeodis.generalised_geodesic3d(image, 1 - seeds, [2.0, 1.0, 0.8], 1e10, lam, passes)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
        # FastGeodis' 2D version has no spacing argument (unit pixels)
        ours2d = generalised_geodesic_distance(image2d, seeds2d, lambda_geodesic=lam, num_passes=passes)
        theirs2d = fastgeodis.generalised_geodesic2d(image2d, 1 - seeds2d, 1e10, lam, passes)
        torch.testing.assert_close(ours2d, theirs2d, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# lambda = 0: the exact Euclidean distance transform, within the chamfer error of the neighbourhood
# ------------------------------------------------------------------------------------------------

# Measured maximum / mean relative deviation from scipy's exact EDT (+ margin). The raster scan with
# neighbourhood_radius=1 is the chamfer distance with exact local steps 1, sqrt(2), sqrt(3): it
# over-estimates by up to 8.2 % in 2D and 12.8 % in 3D for isotropic voxels, and more for strongly
# anisotropic voxels (a path can only turn at voxel centres). Radius 2 and 3 shrink the error.
EDT_CASES = [
    # shape, spacing, radius, max_rel, mean_rel
    ((48, 48), (1.0, 1.0), 1, 0.083, 0.06),
    ((48, 48), (2.0, 0.7), 1, 0.23, 0.14),
    ((48, 48), (1.0, 1.0), 2, 0.028, 0.016),
    ((20, 28, 28), (1.0, 1.0, 1.0), 1, 0.13, 0.09),
    ((16, 28, 28), (2.5, 0.8, 1.0), 1, 0.27, 0.17),
    ((20, 28, 28), (1.0, 1.0, 1.0), 2, 0.05, 0.026),
    ((16, 28, 28), (2.5, 0.8, 1.0), 3, 0.10, 0.04),
]


@pytest.mark.parametrize("shape, spacing, radius, max_rel, mean_rel", EDT_CASES)
def test_lambda_zero_matches_euclidean_distance_transform(shape, spacing, radius, max_rel, mean_rel):
    rng = np.random.default_rng(0)
    seeds = np.zeros(shape, dtype=bool)
    seeds[tuple(rng.integers(0, n, 4) for n in shape)] = True
    exact = scipy_ndimage.distance_transform_edt(~seeds, sampling=spacing)
    image = torch.from_numpy(rng.random(shape))  # ignored when lambda_geodesic == 0
    distance = generalised_geodesic_distance(
        image, torch.from_numpy(seeds), spacing=spacing, lambda_geodesic=0.0, neighbourhood_radius=radius
    ).numpy()
    worst, mean = max_mean_relative(distance, exact)
    assert worst <= max_rel
    assert mean <= mean_rel
    # a chamfer distance follows real paths: it never under-estimates the Euclidean distance
    assert (distance >= exact * (1 - 1e-12)).all()


def test_lambda_zero_is_exact_along_axes_and_diagonals():
    shape = (9, 11, 13)
    seeds = point_seeds(shape, [(4, 5, 6)])
    spacing = (2.0, 1.5, 0.5)
    distance = generalised_geodesic_distance(torch.zeros(shape), seeds, spacing=spacing, lambda_geodesic=0.0)
    exact = scipy_ndimage.distance_transform_edt(~seeds.numpy(), sampling=spacing)
    lines = [distance[:, 5, 6], distance[4, :, 6], distance[4, 5, :],
             torch.stack([distance[4 + t, 5 + t, 6 + t] for t in range(-4, 5)])]
    expected = [exact[:, 5, 6], exact[4, :, 6], exact[4, 5, :], np.array([exact[4 + t, 5 + t, 6 + t] for t in range(-4, 5)])]
    for got, want in zip(lines, expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# agreement with the exact shortest path (Dijkstra) on the same graph and local cost
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [CASE_2D, CASE_3D], ids=["2d", "3d"])
@pytest.mark.parametrize("lambda_geodesic", [0.5, 1.0])
@pytest.mark.parametrize("radius, passes", [(1, 4), (2, 8)])
def test_agrees_with_dijkstra(case, lambda_geodesic, radius, passes):
    shape, spacing, points = case
    image = smooth_image(shape)
    seeds = point_seeds(shape, points)
    reference = dijkstra_geodesic_distance(
        image.numpy(), seeds.numpy(), spacing=spacing, lambda_geodesic=lambda_geodesic, neighbourhood_radius=radius
    )
    distance = generalised_geodesic_distance(
        image, seeds, spacing=spacing, lambda_geodesic=lambda_geodesic, num_passes=passes, neighbourhood_radius=radius
    )
    assert distance.dtype == torch.float64
    worst, _ = max_mean_relative(distance.numpy(), reference)
    assert worst <= 0.02


@pytest.mark.parametrize("case", [CASE_2D, CASE_3D], ids=["2d", "3d"])
def test_more_passes_never_increase_and_never_undershoot_dijkstra(case):
    shape, spacing, points = case
    image = smooth_image(shape)
    seeds = point_seeds(shape, points)
    reference = dijkstra_geodesic_distance(image.numpy(), seeds.numpy(), spacing=spacing, lambda_geodesic=1.0)
    previous = None
    for passes in (1, 2, 3):
        distance = generalised_geodesic_distance(image, seeds, spacing=spacing, num_passes=passes).numpy()
        assert (distance >= reference - 1e-9).all()  # every value is the length of a real path
        if previous is not None:
            assert (distance <= previous + 1e-12).all()
        previous = distance


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------


def test_more_seeds_never_increase_distance():
    image = smooth_image((10, 14, 16))
    few = point_seeds((10, 14, 16), [(2, 3, 4)])
    many = point_seeds((10, 14, 16), [(2, 3, 4), (8, 10, 12), (0, 13, 0)])
    d_few = generalised_geodesic_distance(image, few, lambda_geodesic=0.6, num_passes=3)
    d_many = generalised_geodesic_distance(image, many, lambda_geodesic=0.6, num_passes=3)
    assert (d_many <= d_few + 1e-12).all()


def test_invariant_to_intensity_offset_and_scales_with_spacing():
    image = smooth_image((8, 12, 14))
    seeds = point_seeds((8, 12, 14), [(4, 6, 7)])
    base = generalised_geodesic_distance(image, seeds, lambda_geodesic=0.5)
    torch.testing.assert_close(generalised_geodesic_distance(image + 100.0, seeds, lambda_geodesic=0.5), base)
    euclid = generalised_geodesic_distance(image, seeds, spacing=(2.0, 1.0, 0.5), lambda_geodesic=0.0)
    scaled = generalised_geodesic_distance(image, seeds, spacing=(6.0, 3.0, 1.5), lambda_geodesic=0.0)
    torch.testing.assert_close(scaled, 3 * euclid)


def test_distance_is_not_monotonic_in_lambda():
    # cost = (1 - lambda) * step + lambda * |dI|: where intensity steps are smaller than spatial
    # steps a larger lambda gives a smaller distance, elsewhere a larger one -- so no monotonic law
    image = torch.zeros(5, 40)
    image[:, 20:] = 50.0
    seeds = point_seeds((5, 40), [(2, 0)])
    low = geodesic_distance_2d(image, seeds, lambda_geodesic=0.2)
    high = geodesic_distance_2d(image, seeds, lambda_geodesic=0.8)
    assert high[2, 10] < low[2, 10]  # flat region: only the spatial term, weighted less
    assert high[2, 25] > low[2, 25]  # across the edge: the intensity jump dominates


# ------------------------------------------------------------------------------------------------
# function vs module, float64
# ------------------------------------------------------------------------------------------------


def test_module_matches_function():
    image = torch.rand(2, 1, 6, 10, 12)
    seeds = torch.zeros(6, 10, 12)
    seeds[3, 5, 6] = 1
    module = GeodesicDistance(spacing=(2.0, 1.0, 1.0), lambda_geodesic=0.3, num_passes=3, spatial_dims=3)
    assert list(module.parameters()) == []
    assert "lambda_geodesic=0.3" in repr(module)
    expected = generalised_geodesic_distance(image, seeds, spacing=(2.0, 1.0, 1.0), lambda_geodesic=0.3, num_passes=3)
    torch.testing.assert_close(module(image, seeds), expected)


def test_float64_path_is_exact():
    shape, spacing, points = CASE_3D
    image = smooth_image(shape)
    seeds = point_seeds(shape, points)
    reference = dijkstra_geodesic_distance(image.numpy(), seeds.numpy(), spacing=spacing, lambda_geodesic=0.5)
    distance = geodesic_distance_3d(image, seeds, spacing=spacing, lambda_geodesic=0.5, num_passes=2)
    assert distance.dtype == torch.float64
    np.testing.assert_allclose(distance.numpy(), reference, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------


def _seeds(shape):
    seeds = torch.zeros(shape)
    seeds.view(-1)[0] = 1
    return seeds


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"image": torch.rand(10), "seeds": _seeds((10,))}, ValueError, r"`image` must have shape .* got \(10,\)"),
        ({"image": torch.rand(1, 1, 1, 4, 4, 4), "seeds": _seeds((4, 4, 4))}, ValueError, r"`image` must have shape"),
        ({"image": torch.rand(6, 8), "seeds": _seeds((6, 9))}, ValueError, r"`seeds` must have shape \(6, 8\).*got \(6, 9\)"),
        ({"image": torch.rand(2, 1, 6, 8), "seeds": _seeds((3, 1, 6, 8))}, ValueError, r"`seeds` must have shape .*got \(3, 1, 6, 8\)"),
        ({"image": torch.rand(6, 8), "seeds": torch.zeros(6, 8)}, ValueError, r"`seeds` must mark at least one voxel.*\[0\]"),
        ({"image": torch.rand(6, 8), "seeds": _seeds((6, 8)), "lambda_geodesic": 1.5}, ValueError, r"`lambda_geodesic` must be in \[0, 1\], got 1.5"),
        ({"image": torch.rand(6, 8), "seeds": _seeds((6, 8)), "lambda_geodesic": -0.1}, ValueError, r"`lambda_geodesic` .* got -0.1"),
        ({"image": torch.rand(6, 8), "seeds": _seeds((6, 8)), "lambda_geodesic": "high"}, TypeError, r"`lambda_geodesic` must be a number"),
        ({"image": torch.rand(6, 8), "seeds": _seeds((6, 8)), "spacing": (1.0, 0.0)}, ValueError, r"`spacing` must have 2 positive finite values, got \(1.0, 0.0\)"),
        ({"image": torch.rand(4, 6, 8), "seeds": _seeds((4, 6, 8)), "spacing": (1.0, 1.0)}, ValueError, r"`spacing` must have 3 positive .* got \(1.0, 1.0\)"),
        ({"image": torch.rand(6, 8), "seeds": _seeds((6, 8)), "spacing": -1.0}, ValueError, r"`spacing` .* got -1.0"),
        ({"image": torch.rand(6, 8), "seeds": _seeds((6, 8)), "spacing": "x"}, ValueError, r"`spacing` must be a number"),
        ({"image": torch.rand(6, 8), "seeds": _seeds((6, 8)), "num_passes": 0}, ValueError, r"`num_passes` must be a positive integer, got 0"),
        ({"image": torch.rand(6, 8), "seeds": _seeds((6, 8)), "neighbourhood_radius": 0}, ValueError, r"`neighbourhood_radius` must be 1, 2 or 3, got 0"),
        ({"image": torch.rand(6, 8), "seeds": _seeds((6, 8)), "spatial_dims": 3}, ValueError, r"`image` must be 3D"),
        ({"image": np.zeros((6, 8)), "seeds": _seeds((6, 8))}, TypeError, r"`image` must be a torch.Tensor, got ndarray"),
        ({"image": torch.rand(6, 8), "seeds": [[1]]}, TypeError, r"`seeds` must be a torch.Tensor, got list"),
    ],
)
def test_errors(kwargs, error, match):
    image = kwargs.pop("image")
    seeds = kwargs.pop("seeds")
    with pytest.raises(error, match=match):
        generalised_geodesic_distance(image, seeds, **kwargs)


def test_dimension_specific_functions_reject_other_dims():
    with pytest.raises(ValueError, match=r"`image` must be 2D"):
        geodesic_distance_2d(torch.rand(4, 6, 8), _seeds((4, 6, 8)))
    with pytest.raises(ValueError, match=r"`image` must be 3D"):
        geodesic_distance_3d(torch.rand(6, 8), _seeds((6, 8)))


def test_module_validates_arguments():
    with pytest.raises(ValueError, match=r"`lambda_geodesic` must be in \[0, 1\], got 2"):
        GeodesicDistance(lambda_geodesic=2)
    with pytest.raises(ValueError, match=r"`spacing` must have 3 positive finite values"):
        GeodesicDistance(spacing=(1.0, 1.0), spatial_dims=3)
    with pytest.raises(ValueError, match=r"`spatial_dims` must be 2, 3 or None, got 4"):
        GeodesicDistance(spatial_dims=4)


def test_module():
    """``GeodesicDistance()(image, seeds)`` is ``generalised_geodesic_distance(image, seeds)``: same defaults."""
    import inspect

    function = inspect.signature(generalised_geodesic_distance).parameters
    module = inspect.signature(GeodesicDistance).parameters
    assert {k: p.default for k, p in module.items()} == {k: function[k].default for k in module}
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, 6, 9, 10, generator=gen, dtype=torch.float64)
    seeds = torch.zeros(2, 1, 6, 9, 10)
    seeds[0, 0, 3, 4, 5] = seeds[1, 0, 0, 0, 0] = 1
    torch.testing.assert_close(GeodesicDistance()(image, seeds), generalised_geodesic_distance(image, seeds), rtol=0, atol=0)
    kwargs = dict(spacing=(3.0, 1.0, 0.5), lambda_geodesic=0.7, num_passes=3, neighbourhood_radius=2, spatial_dims=3)
    torch.testing.assert_close(GeodesicDistance(**kwargs)(image, seeds),
                               generalised_geodesic_distance(image, seeds, **kwargs), rtol=0, atol=0)
    image_2d, seeds_2d = image[:, :, 0], seeds[:, :, 3].clone()
    seeds_2d[1, 0, 8, 9] = 1
    kwargs_2d = dict(spacing=(2.0, 1.0), lambda_geodesic=0.0, neighbourhood_radius=3)
    torch.testing.assert_close(GeodesicDistance(**kwargs_2d)(image_2d, seeds_2d),
                               generalised_geodesic_distance(image_2d, seeds_2d, **kwargs_2d), rtol=0, atol=0)

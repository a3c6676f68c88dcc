"""Generalised geodesic distance on 2D and 3D images by parallel raster scans, in pure torch.

Implements the generalised geodesic distance of Criminisi, Sharp and Blake, "GeoS: Geodesic Image
Segmentation", ECCV 2008, computed with the plane-parallel raster scan of Criminisi, Sharp, Rother
and Pérez, "Geodesic Image and Video Editing", ACM TOG 2010, as FastGeodis does it (Asad, Dorent
and Vercauteren, "FastGeodis: Fast Generalised Geodesic Distance Transform", JOSS 2022).

The local cost of a step from voxel ``p`` to a neighbour ``q`` (one of the 8 neighbours in 2D, 26 in
3D) is FastGeodis' (release 1.0.5)::

    c(p, q) = (1 - lambda_geodesic) * ||(p - q) * spacing||_2 + lambda_geodesic * sum_c |I_c(p) - I_c(q)|

so ``lambda_geodesic=0`` gives the chamfer distance with the exact local step lengths
(1, sqrt(2), sqrt(3) times the spacing) and ``lambda_geodesic=1`` a purely intensity-based distance.
The distance of a voxel is the smallest sum of local costs along any path of neighbour steps from a
seed, i.e. the shortest-path distance on the 8/26-connected voxel graph;
:func:`medrefine.geodesic.reference.dijkstra_geodesic_distance` computes it exactly, and
the raster scan converges to it as ``num_passes`` grows: with ``lambda_geodesic <= 0.5`` two passes
reached it to float rounding in our measurements, purely intensity-based distances
(``lambda_geodesic=1``) on textured images wind more and needed four (docs/geodesic.md).

How the scan works (and why it is fast in torch): one *pass* visits every spatial axis in turn and
sweeps it forwards then backwards. Along a sweep, the whole plane (row in 2D) ``z`` is updated from
plane ``z - 1`` in three tensor operations: the 3x3 (3 in 2D) neighbourhood of plane ``z - 1`` is a
strided view of the inf-padded distance; adding the precomputed step costs and taking the minimum
over the 9 neighbours gives the candidate, and ``torch.minimum`` keeps the better value in place.
The step costs do not depend on the distance, so they are computed once per axis and direction with
a handful of large vectorised operations and reused by every pass. Only the loop over planes runs in
Python. MONAI has no geodesic distance; FastGeodis needs a C++/CUDA build, which is why this exists.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "GeodesicDistance",
    "generalised_geodesic_distance",
    "geodesic_distance_2d",
    "geodesic_distance_3d",
]

logger = logging.getLogger(__name__)

# Step-cost tensors of all axes are kept across passes when they fit in this many bytes; above it they
# are recomputed per axis and pass (slower, but the memory stays at two axes' worth).
_CACHE_BYTES = 1 << 30


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------


def _check_lambda(lambda_geodesic: float) -> float:
    try:
        value = float(lambda_geodesic)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`lambda_geodesic` must be a number in [0, 1], got {lambda_geodesic!r}") from exc
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`lambda_geodesic` must be in [0, 1], got {lambda_geodesic!r}")
    return value


def _check_num_passes(num_passes: int) -> int:
    if isinstance(num_passes, bool) or not isinstance(num_passes, int) or num_passes < 1:
        raise ValueError(f"`num_passes` must be a positive integer, got {num_passes!r}")
    return num_passes


def _check_radius(neighbourhood_radius: int) -> int:
    if (
        isinstance(neighbourhood_radius, bool)
        or not isinstance(neighbourhood_radius, int)
        or not 1 <= neighbourhood_radius <= 3
    ):
        raise ValueError(f"`neighbourhood_radius` must be 1, 2 or 3, got {neighbourhood_radius!r}")
    return neighbourhood_radius


def _check_spacing(spacing: float | Sequence[float] | None, spatial_dims: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * spatial_dims
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        values: tuple[float, ...] = (float(spacing),) * spatial_dims
    else:
        try:
            values = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"`spacing` must be a number or {spatial_dims} positive numbers, got {spacing!r}"
            ) from exc
    if len(values) != spatial_dims or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"`spacing` must have {spatial_dims} positive finite values, got {spacing!r}")
    return values


def _prepare_inputs(
    image: torch.Tensor, seeds: torch.Tensor, spatial_dims: int | None
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Return image ``(B, C, *spatial)`` float, seeds ``(B, *spatial)`` bool, and whether batched."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"`image` must be a torch.Tensor, got {type(image).__name__}")
    if not isinstance(seeds, torch.Tensor):
        raise TypeError(f"`seeds` must be a torch.Tensor, got {type(seeds).__name__}")
    if image.ndim in (2, 3):
        batched = False
        ndim = image.ndim
        image = image[None, None]
    elif image.ndim in (4, 5):
        batched = True
        ndim = image.ndim - 2
    else:
        raise ValueError(
            "`image` must have shape (H, W), (D, H, W), (B, C, H, W) or (B, C, D, H, W), "
            f"got {tuple(image.shape)}"
        )
    if spatial_dims is not None and ndim != spatial_dims:
        raise ValueError(
            f"`image` must be {spatial_dims}D (shape (*spatial) or (B, C, *spatial) with {spatial_dims} spatial "
            f"dims), got shape {tuple(image.shape)}"
        )
    spatial = tuple(image.shape[2:])
    if min(spatial) < 1 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"`image` must not be empty, got shape {tuple(image.shape)}")
    batch = image.shape[0]
    if tuple(seeds.shape) == spatial:
        seeds = seeds.reshape(1, *spatial).expand(batch, *spatial)
    elif batched and tuple(seeds.shape) == (batch, 1, *spatial):
        seeds = seeds[:, 0]
    else:
        expected = f"{spatial} or {(batch, 1, *spatial)}" if batched else f"{spatial}"
        raise ValueError(f"`seeds` must have shape {expected} to match `image`, got {tuple(seeds.shape)}")
    if image.is_complex():
        raise TypeError(f"`image` must be real-valued, got dtype {image.dtype}")
    if image.dtype not in (torch.float32, torch.float64):
        image = image.float()  # integers, float16 and bfloat16 run in float32
    seeds = seeds.to(device=image.device) > 0
    has_seed = seeds.reshape(batch, -1).any(dim=1)
    if not bool(has_seed.all()):
        missing = torch.nonzero(~has_seed).flatten().tolist()
        raise ValueError(f"`seeds` must mark at least one voxel (> 0) per image, got none in batch item(s) {missing}")
    return image, seeds, batched


# ----------------------------------------------------------------------------------------------
# the raster scan
# ----------------------------------------------------------------------------------------------


def _axis_order(axis: int, spatial_dims: int) -> list[int]:
    """Permutation of ``(B, *spatial)`` that puts spatial ``axis`` first, then batch, then the others."""
    others = [1 + d for d in range(spatial_dims) if d != axis]
    return [1 + axis, 0, *others]


def _step_lengths(
    spacing_scan: float, spacing_plane: Sequence[float], radius: int, like: torch.Tensor
) -> torch.Tensor:
    """Euclidean length of the step to each of the ``(2 radius + 1)**k`` neighbours in the previous plane."""
    k = len(spacing_plane)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    grids = torch.meshgrid(*[offsets] * k, indexing="ij")
    sq = torch.full_like(grids[0], spacing_scan**2)
    for g, s in zip(grids, spacing_plane):
        sq = sq + (g * s) ** 2
    return sq.sqrt().to(device=like.device, dtype=like.dtype)


def _step_costs(
    image_axis: torch.Tensor, lengths: torch.Tensor, lambda_geodesic: float, direction: int, radius: int
) -> torch.Tensor:
    """Cost of the step into plane ``z`` from each neighbour in plane ``z - direction``.

    Args:
        image_axis: ``(L, B, C, *plane)`` image with the scan axis first, already multiplied by
            ``lambda_geodesic`` (``lambda |a - b| == |lambda a - lambda b|`` saves one pass).
        lengths: ``(*[size] * k)`` step lengths, ``size = 2 radius + 1``.
        lambda_geodesic: weight of the intensity term.
        direction: ``+1`` for the forward sweep, ``-1`` for the backward sweep.
        radius: in-plane half-width of the neighbourhood.

    Returns:
        ``(L, B, *[size] * k, *plane)``; entry ``z`` is unused for the first plane of the sweep.
        Steps that leave the grid get a finite cost: the distance they would read is ``inf``.
    """
    length, batch, channels = image_axis.shape[:3]
    plane = tuple(image_axis.shape[3:])
    k = len(plane)
    size = 2 * radius + 1
    out = torch.empty((length, batch, *([size] * k), *plane), dtype=image_axis.dtype, device=image_axis.device)
    if length < 2:
        return out
    padded = nn.functional.pad(
        image_axis.reshape(length * batch, channels, *plane), (radius, radius) * k
    ).reshape(length, batch, channels, *(p + 2 * radius for p in plane))
    if direction > 0:
        current, previous, target = image_axis[1:], padded[:-1], out[1:]
    else:
        current, previous, target = image_axis[:-1], padded[1:], out[:-1]
    # neighbourhood view of the previous planes: (L-1, B, C, *[size]*k, *plane)
    strides = previous.stride()
    window = previous.as_strided(
        (*previous.shape[:3], *([size] * k), *plane),
        (*strides[:3], *strides[3:], *strides[3:]),
        previous.storage_offset(),
    )
    current = current.reshape(*current.shape[:3], *([1] * k), *plane)
    if channels == 1:
        torch.sub(current[:, :, 0], window[:, :, 0], out=target)
        target.abs_()
    else:
        diff = (current - window).abs_()
        torch.sum(diff, dim=2, out=target)
        del diff
    if lambda_geodesic != 1.0:  # the image arrives scaled by lambda_geodesic: add the spatial term
        target.add_(lengths.reshape(*lengths.shape, *([1] * k)) * (1.0 - lambda_geodesic))
    return out


def _sweep(distance: torch.Tensor, costs: torch.Tensor, direction: int, radius: int) -> None:
    """Sweep the padded ``distance`` ``(L, B, *(plane + 2 radius))`` once along its first axis, in place.

    ``costs`` is ``(L, B, *[size] * k, *plane)`` (or broadcastable to one plane of it when the cost
    is the same everywhere, i.e. ``lambda_geodesic == 0``), ``size = 2 radius + 1``.
    """
    length = distance.shape[0]
    size = 2 * radius + 1
    plane = tuple(s - 2 * radius for s in distance.shape[2:])
    k = len(plane)
    batch = distance.shape[1]
    candidates = torch.empty((batch, *([size] * k), *plane), dtype=distance.dtype, device=distance.device)
    best = torch.empty((batch, *plane), dtype=distance.dtype, device=distance.device)
    targets = distance[(slice(None), slice(None), *([slice(radius, -radius)] * k))]  # (L, B, *plane) view
    reduce_dims = tuple(range(1, k + 1))
    constant = costs.ndim != distance.ndim + k
    # neighbourhood window of plane z: (B, *[size]*k, *plane), a strided view into the padded plane
    strides = distance.stride()
    window_shape = (batch, *([size] * k), *plane)
    window_strides = (strides[1], *strides[2:], *strides[2:])
    offset = distance.storage_offset()
    if direction > 0:
        order = range(1, length)
    else:
        order = range(length - 2, -1, -1)
    for z in order:
        window = distance.as_strided(window_shape, window_strides, offset + (z - direction) * strides[0])
        torch.add(window, costs if constant else costs[z], out=candidates)
        torch.amin(candidates, dim=reduce_dims, out=best)
        target = targets[z]
        torch.minimum(target, best, out=target)


def _raster_scan(
    image: torch.Tensor,
    seeds: torch.Tensor,
    spacing: tuple[float, ...],
    lambda_geodesic: float,
    num_passes: int,
    radius: int,
) -> torch.Tensor:
    """Distance ``(B, *spatial)`` for image ``(B, C, *spatial)`` and bool seeds ``(B, *spatial)``."""
    spatial_dims = image.ndim - 2
    dtype = image.dtype
    distance = torch.full(seeds.shape, math.inf, dtype=dtype, device=image.device)
    distance.masked_fill_(seeds, 0.0)

    numel = image.shape[0] * math.prod(image.shape[2:])
    size = 2 * radius + 1
    cost_bytes = 2 * spatial_dims * size ** (spatial_dims - 1) * numel * dtype.itemsize
    cache_costs = num_passes > 1 and cost_bytes <= _CACHE_BYTES
    if num_passes > 1 and not cache_costs and lambda_geodesic != 0.0:
        logger.debug("step costs need %.0f MB (> %d MB): recomputed in every pass", cost_bytes / 2**20, _CACHE_BYTES >> 20)
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def costs_for(axis: int) -> tuple[torch.Tensor, torch.Tensor]:
        if axis in cache:
            return cache[axis]
        plane_spacing = [spacing[d] for d in range(spatial_dims) if d != axis]
        lengths = _step_lengths(spacing[axis], plane_spacing, radius, image)
        if lambda_geodesic == 0.0:
            const = lengths.reshape(1, *lengths.shape, *([1] * (spatial_dims - 1)))
            pair = (const, const)  # the Euclidean step cost is symmetric and the same everywhere
        else:
            # (B, C, *spatial) -> (L, B, C, *plane)
            order = [2 + axis, 0, 1, *[2 + d for d in range(spatial_dims) if d != axis]]
            scaled = image if lambda_geodesic == 1.0 else image * lambda_geodesic
            image_axis = scaled.permute(*order).contiguous()
            pair = (
                _step_costs(image_axis, lengths, lambda_geodesic, +1, radius),
                _step_costs(image_axis, lengths, lambda_geodesic, -1, radius),
            )
        if cache_costs or lambda_geodesic == 0.0:
            cache[axis] = pair
        return pair

    for _ in range(num_passes):
        for axis in range(spatial_dims):
            order = _axis_order(axis, spatial_dims)
            padded = nn.functional.pad(
                distance.permute(*order), (radius, radius) * (spatial_dims - 1), value=math.inf
            ).contiguous()
            forward_costs, backward_costs = costs_for(axis)
            _sweep(padded, forward_costs, +1, radius)
            _sweep(padded, backward_costs, -1, radius)
            inner = padded[(slice(None), slice(None), *([slice(radius, -radius)] * (spatial_dims - 1)))]
            inverse = [order.index(i) for i in range(spatial_dims + 1)]
            distance = inner.permute(*inverse).contiguous()
    return distance


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


def generalised_geodesic_distance(
    image: torch.Tensor,
    seeds: torch.Tensor,
    *,
    spacing: float | Sequence[float] | None = None,
    lambda_geodesic: float = 1.0,
    num_passes: int = 2,
    neighbourhood_radius: int = 1,
    spatial_dims: int | None = None,
) -> torch.Tensor:
    """Generalised geodesic distance from the seeds, on a 2D or 3D image (Criminisi et al., 2008).

    Raster-scan algorithm of Criminisi et al. (2010) as in FastGeodis; see the module docstring for
    the local cost. The result equals FastGeodis 1.0.5's
    ``generalised_geodesic3d(image, 1 - seeds, spacing, 1e10, lambda_geodesic, num_passes)`` (and
    ``generalised_geodesic2d`` with unit spacing) up to float rounding. The intensity term uses the
    raw image values: scale the image first (e.g. to [0, 1]) so that ``lambda_geodesic`` balances
    the two terms as intended. Not differentiable (computed under ``torch.no_grad()``).

    Args:
        image: ``(*spatial)`` or ``(B, C, *spatial)`` with 2 or 3 spatial dims; channels are combined
            by the L1 norm of the intensity difference. Integer images are cast to float32; float64
            stays float64.
        seeds: ``(*spatial)`` (shared by the batch) or ``(B, 1, *spatial)``; voxels ``> 0`` are
            seeds and get distance 0. Every batch item needs at least one seed.
        spacing: voxel size per spatial dim (or one number for all), in the order of the spatial
            dims. Defaults to 1.
        lambda_geodesic: weight of the intensity term in [0, 1]: 0 = Euclidean (chamfer) distance,
            1 = purely intensity-based geodesic distance. Defaults to 1.
        num_passes: number of raster-scan passes (each sweeps every axis forwards and backwards).
            More passes follow longer winding paths; defaults to 2.
        neighbourhood_radius: in-plane half-width of the neighbourhood each sweep step reads in the
            previous plane: 1 = 3x3 (the 8/26-neighbourhood of FastGeodis), 2 = 5x5, 3 = 7x7.
            Larger radii add longer steps, which bring ``lambda_geodesic=0`` closer to the exact
            Euclidean distance (max. error in 3D, isotropic voxels: 12.8 %, 4.9 %, 2.5 %) at about
            2.8x / 5.4x the cost in 3D. Defaults to 1.
        spatial_dims: 2 or 3 to insist on that many spatial dims; ``None`` infers it.

    Returns:
        Distance with the dtype of the (float) image on its device: ``(*spatial)`` for an
        unbatched image, ``(B, 1, *spatial)`` for a batched one.

    Raises:
        TypeError: ``image``/``seeds`` is not a tensor, or ``image`` is complex.
        ValueError: a shape is wrong, ``seeds`` does not match ``image`` or marks no voxel,
            ``lambda_geodesic`` is outside [0, 1], ``spacing`` has the wrong length or a value
            ``<= 0``, ``num_passes < 1``, or ``neighbourhood_radius`` is not 1, 2 or 3.

    Example:
        >>> image = torch.rand(32, 64, 64)
        >>> seeds = torch.zeros(32, 64, 64, dtype=torch.bool)
        >>> seeds[16, 32, 32] = True
        >>> distance = generalised_geodesic_distance(image, seeds, spacing=(2.0, 1.0, 1.0), lambda_geodesic=0.5)
        >>> distance.shape, float(distance[16, 32, 32])
        (torch.Size([32, 64, 64]), 0.0)
    """
    lambda_value = _check_lambda(lambda_geodesic)
    passes = _check_num_passes(num_passes)
    radius = _check_radius(neighbourhood_radius)
    if spatial_dims is not None and spatial_dims not in (2, 3):
        raise ValueError(f"`spatial_dims` must be 2, 3 or None, got {spatial_dims!r}")
    image_b, seeds_b, batched = _prepare_inputs(image, seeds, spatial_dims)
    ndim = image_b.ndim - 2
    spacing_values = _check_spacing(spacing, ndim)
    with torch.no_grad():
        distance = _raster_scan(image_b, seeds_b, spacing_values, lambda_value, passes, radius)
    if batched:
        return distance.unsqueeze(1)
    return distance[0]


def geodesic_distance_2d(
    image: torch.Tensor,
    seeds: torch.Tensor,
    *,
    spacing: float | Sequence[float] | None = None,
    lambda_geodesic: float = 1.0,
    num_passes: int = 2,
    neighbourhood_radius: int = 1,
) -> torch.Tensor:
    """2D generalised geodesic distance: :func:`generalised_geodesic_distance` with ``spatial_dims=2``.

    Args:
        image: ``(H, W)`` or ``(B, C, H, W)``.
        seeds: ``(H, W)`` or ``(B, 1, H, W)``; voxels ``> 0`` are seeds.
        spacing: pixel size ``(sy, sx)`` or one number; defaults to 1.
        lambda_geodesic: weight of the intensity term in [0, 1]; defaults to 1.
        num_passes: raster-scan passes; defaults to 2.
        neighbourhood_radius: 1, 2 or 3 (see :func:`generalised_geodesic_distance`); defaults to 1.

    Returns:
        ``(H, W)`` or ``(B, 1, H, W)`` distance.

    Raises:
        ValueError: as :func:`generalised_geodesic_distance`, and when the image is not 2D.

    Example:
        >>> d = geodesic_distance_2d(torch.rand(64, 64), torch.eye(64) > 0, lambda_geodesic=0.0)
    """
    return generalised_geodesic_distance(
        image,
        seeds,
        spacing=spacing,
        lambda_geodesic=lambda_geodesic,
        num_passes=num_passes,
        neighbourhood_radius=neighbourhood_radius,
        spatial_dims=2,
    )


def geodesic_distance_3d(
    image: torch.Tensor,
    seeds: torch.Tensor,
    *,
    spacing: float | Sequence[float] | None = None,
    lambda_geodesic: float = 1.0,
    num_passes: int = 2,
    neighbourhood_radius: int = 1,
) -> torch.Tensor:
    """3D generalised geodesic distance: :func:`generalised_geodesic_distance` with ``spatial_dims=3``.

    Args:
        image: ``(D, H, W)`` or ``(B, C, D, H, W)``.
        seeds: ``(D, H, W)`` or ``(B, 1, D, H, W)``; voxels ``> 0`` are seeds.
        spacing: voxel size ``(sd, sh, sw)`` or one number; defaults to 1.
        lambda_geodesic: weight of the intensity term in [0, 1]; defaults to 1.
        num_passes: raster-scan passes; defaults to 2.
        neighbourhood_radius: 1, 2 or 3 (see :func:`generalised_geodesic_distance`); defaults to 1.

    Returns:
        ``(D, H, W)`` or ``(B, 1, D, H, W)`` distance.

    Raises:
        ValueError: as :func:`generalised_geodesic_distance`, and when the image is not 3D.

    Example:
        >>> seeds = torch.zeros(16, 32, 32); seeds[8, 16, 16] = 1
        >>> d = geodesic_distance_3d(torch.rand(16, 32, 32), seeds, spacing=(3.0, 1.0, 1.0))
    """
    return generalised_geodesic_distance(
        image,
        seeds,
        spacing=spacing,
        lambda_geodesic=lambda_geodesic,
        num_passes=num_passes,
        neighbourhood_radius=neighbourhood_radius,
        spatial_dims=3,
    )


class GeodesicDistance(nn.Module):
    """Module form of :func:`generalised_geodesic_distance` (no parameters, no state).

    Args:
        spacing: voxel size per spatial dim, or one number; defaults to 1.
        lambda_geodesic: weight of the intensity term in [0, 1]; defaults to 1.
        num_passes: raster-scan passes; defaults to 2.
        neighbourhood_radius: 1, 2 or 3 (see :func:`generalised_geodesic_distance`); defaults to 1.
        spatial_dims: 2, 3, or ``None`` to infer from the input.

    Raises:
        ValueError: ``lambda_geodesic``, ``num_passes``, ``neighbourhood_radius``, ``spatial_dims``
            or ``spacing`` (when ``spatial_dims`` is given) is invalid.

    Example:
        >>> geodesic = GeodesicDistance(spacing=(2.0, 1.0, 1.0), lambda_geodesic=0.5)
        >>> seeds = torch.zeros(1, 1, 16, 32, 32); seeds[..., 8, 16, 16] = 1
        >>> geodesic(torch.rand(1, 1, 16, 32, 32), seeds).shape
        torch.Size([1, 1, 16, 32, 32])
    """

    def __init__(
        self,
        spacing: float | Sequence[float] | None = None,
        lambda_geodesic: float = 1.0,
        num_passes: int = 2,
        neighbourhood_radius: int = 1,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__()
        self.lambda_geodesic = _check_lambda(lambda_geodesic)
        self.num_passes = _check_num_passes(num_passes)
        self.neighbourhood_radius = _check_radius(neighbourhood_radius)
        if spatial_dims is not None and spatial_dims not in (2, 3):
            raise ValueError(f"`spatial_dims` must be 2, 3 or None, got {spatial_dims!r}")
        if spatial_dims is not None:
            _check_spacing(spacing, spatial_dims)
        self.spacing = spacing
        self.spatial_dims = spatial_dims

    def forward(self, image: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """Distance of every voxel of ``image`` to the nearest seed; see the function for shapes."""
        return generalised_geodesic_distance(
            image,
            seeds,
            spacing=self.spacing,
            lambda_geodesic=self.lambda_geodesic,
            num_passes=self.num_passes,
            neighbourhood_radius=self.neighbourhood_radius,
            spatial_dims=self.spatial_dims,
        )

    def extra_repr(self) -> str:
        return (
            f"spacing={self.spacing}, lambda_geodesic={self.lambda_geodesic}, num_passes={self.num_passes}, "
            f"neighbourhood_radius={self.neighbourhood_radius}"
        )

"""Query points of implicit networks: regular and jittered grids, and sampling volumes at points.

Convention: points are ``(B, N, 3)`` in ``[-1, 1]``, ordered ``(x, y, z)`` as
:func:`torch.nn.functional.grid_sample` expects, where ``x`` indexes the LAST array axis of a
``(B, C, D, H, W)`` volume; ``-1`` and ``1`` are the centres of the first and last voxels
(``align_corners=True``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "boundary_voxels",
    "grid_points",
    "interpolation_matrix",
    "jittered_grid_points",
    "sample_boundary_points",
    "sample_labels",
    "sample_volume",
]


def _positive_ints(name: str, values: Sequence[int], allow_empty: bool = False) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in values)
    except TypeError as exc:
        raise TypeError(f"`{name}` must be a sequence of positive integers, got {values!r}") from exc
    if (not out and not allow_empty) or any(v < 1 for v in out):
        raise ValueError(f"`{name}` must be a sequence of positive integers, got {values!r}")
    return out


def _axis(n: int, device: torch.device | str | None, dtype: torch.dtype) -> torch.Tensor:
    if n == 1:
        return torch.zeros(1, device=device, dtype=dtype)
    return torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)


def grid_points(
    shape: Sequence[int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Voxel centres of a ``(D, H, W)`` grid as query points in ``[-1, 1]`` (grid_sample order).

    Args:
        shape: spatial shape ``(D, H, W)`` of the grid.
        device: device of the result.
        dtype: floating dtype of the result.

    Returns:
        ``(D * H * W, 3)`` points ``(x, y, z)``; row ``n`` is voxel ``numpy.unravel_index(n, shape)``.

    Raises:
        ValueError: when ``shape`` is not three positive integers.

    Example:
        >>> grid_points((2, 2, 2))[1].tolist()  # voxel (0, 0, 1)
        [1.0, -1.0, -1.0]
    """
    dims = _positive_ints("shape", shape)
    if len(dims) != 3:
        raise ValueError(f"`shape` must have 3 positive values (D, H, W), got {tuple(shape)!r}")
    zi, yj, xk = (_axis(n, device, dtype) for n in dims)
    ii, jj, kk = torch.meshgrid(zi, yj, xk, indexing="ij")
    return torch.stack((kk, jj, ii), dim=-1).reshape(-1, 3)


def jittered_grid_points(
    batch_size: int,
    shape: Sequence[int],
    *,
    jitter: float = 0.5,
    num_points: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A training query grid per case: voxel centres moved by uniform random jitter.

    As NeAR trains at 64^3 on 128^3 volumes: each case gets the ``shape`` grid spread over the whole
    volume, every point shifted by ``U(-jitter, jitter)`` grid steps per axis (clamped to the volume),
    so successive epochs see different sub-voxel positions of the full-resolution data.

    Args:
        batch_size: number of cases ``B``.
        shape: query grid ``(D, H, W)``, e.g. ``(64, 64, 64)``.
        jitter: half-width of the uniform shift in units of the query grid step; 0 disables it.
        num_points: when given, draw this many random points of the grid per case (with
            replacement; cheaper steps).
        generator: CPU random generator (for replayable draws).
        device: device of the result.

    Returns:
        ``(B, N, 3)`` float32 points with ``N = D*H*W`` or ``num_points``.

    Raises:
        ValueError: for a negative ``jitter`` or a ``num_points`` outside ``[1, D*H*W]``.
    """
    if jitter < 0:
        raise ValueError(f"`jitter` must be >= 0, got {jitter}")
    base = grid_points(shape)
    total = base.shape[0]
    if num_points is not None:
        if not 1 <= int(num_points) <= total:
            raise ValueError(f"`num_points` must be in [1, {total}] for a {tuple(shape)} grid, got {num_points}")
        # drawn with replacement: a full permutation per case costs more than the step it feeds
        idx = torch.randint(0, total, (batch_size, int(num_points)), generator=generator)
        pts = base[idx]
    else:
        pts = base.unsqueeze(0).expand(batch_size, -1, -1).clone()
    if jitter > 0:
        # step of the query grid along x (W), y (H), z (D)
        step = torch.tensor([2.0 / max(n - 1, 1) for n in reversed(tuple(shape))])
        noise = torch.rand(pts.shape, generator=generator) * 2.0 - 1.0
        pts = (pts + noise * (jitter * step)).clamp_(-1.0, 1.0)
    return pts.to(device)


def sample_volume(volume: torch.Tensor, points: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """Sample a batch of volumes at query points (trilinear by default).

    Args:
        volume: ``(B, C, D, H, W)`` tensor.
        points: ``(B, N, 3)`` points in ``[-1, 1]`` (grid_sample order, ``align_corners=True``).
        mode: ``"bilinear"`` (trilinear in 3D) or ``"nearest"``.

    Returns:
        ``(B, N, C)`` sampled values (border padding outside the volume).

    Raises:
        ValueError: for mismatching shapes.
    """
    if volume.dim() != 5:
        raise ValueError(f"`volume` must be (B, C, D, H, W), got shape {tuple(volume.shape)}")
    if points.dim() != 3 or points.shape[-1] != 3 or points.shape[0] != volume.shape[0]:
        raise ValueError(
            f"`points` must be (B, N, 3) with B={volume.shape[0]} matching `volume`, got shape {tuple(points.shape)}"
        )
    b, n = points.shape[:2]
    out = F.grid_sample(
        volume,
        points.view(b, n, 1, 1, 3).to(volume.dtype),
        mode=mode,
        padding_mode="border",
        align_corners=True,
    )
    return out.view(b, volume.shape[1], n).transpose(1, 2)


def sample_labels(labels: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Nearest-voxel label lookup at query points, by index arithmetic (exact for integer labels).

    Args:
        labels: ``(B, D, H, W)`` integer tensor.
        points: ``(B, N, 3)`` points in ``[-1, 1]`` (grid_sample order, ``align_corners=True``).

    Returns:
        ``(B, N)`` int64 labels.

    Raises:
        ValueError: for mismatching shapes.
    """
    if labels.dim() != 4:
        raise ValueError(f"`labels` must be (B, D, H, W), got shape {tuple(labels.shape)}")
    if points.dim() != 3 or points.shape[-1] != 3 or points.shape[0] != labels.shape[0]:
        raise ValueError(
            f"`points` must be (B, N, 3) with B={labels.shape[0]} matching `labels`, got shape {tuple(points.shape)}"
        )
    b, d, h, w = labels.shape
    sizes = torch.tensor([w, h, d], device=points.device, dtype=points.dtype)
    idx = torch.round((points.clamp(-1.0, 1.0) + 1.0) * 0.5 * (sizes - 1)).long()
    flat = (idx[..., 2] * h + idx[..., 1]) * w + idx[..., 0]
    return labels.reshape(b, -1).gather(1, flat.to(labels.device)).long()


_DENSE_MAX_VOXELS = 64  # grids up to 4^3 are sampled by a dense interpolation matrix (see below)
_CORNERS = torch.tensor([[dx, dy, dz] for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)])


def interpolation_matrix(points: torch.Tensor, size: int) -> torch.Tensor:
    """Dense trilinear interpolation weights of points in a ``size^3`` grid.

    ``torch.bmm(grid.flatten(2), W.transpose(1, 2))`` equals ``F.grid_sample(grid, points,
    align_corners=True, padding_mode="border")`` (as ``(B, C, N)``), but its backward is a BLAS
    product instead of grid_sample's scatter loop: several times faster on CPU for the coarsest,
    widest feature grid. Memory is ``B * N * size^3`` floats, so it is used for tiny grids only.

    Args:
        points: ``(B, N, 3)`` points in ``[-1, 1]`` (grid_sample ``xyz`` order).
        size: grid edge ``S``.

    Returns:
        ``(B, N, S^3)`` weights (8 non-zeros per row, rows sum to 1), no gradient.
    """
    with torch.no_grad():
        b, n, _ = points.shape
        u = ((points + 1.0) * (0.5 * (size - 1))).clamp(0, size - 1)
        i0 = u.floor().clamp(max=max(size - 2, 0))
        t = (u - i0).unsqueeze(2)  # (B, N, 1, 3)
        corners = _CORNERS.to(points.device)
        idx = (i0.long().unsqueeze(2) + corners).clamp(max=size - 1)  # (B, N, 8, 3)
        flat = (idx[..., 2] * size + idx[..., 1]) * size + idx[..., 0]
        weights = torch.where(corners.bool(), t, 1.0 - t).prod(dim=-1)  # (B, N, 8)
        out = torch.zeros(b, n, size**3, device=points.device, dtype=points.dtype)
        return out.scatter_add_(2, flat, weights.to(out.dtype))


# ----------------------------------------------------------------------------------------------
# network
# ----------------------------------------------------------------------------------------------


def boundary_voxels(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices of the boundary voxels of each case: voxels with another class among their 26 neighbours.

    Thin structures are boundary through and through, so drawing part of the training points from
    this list (:func:`sample_boundary_points`) puts points on them and on every class border, where
    the decisions are, instead of in the bulk of large organs and background.

    Args:
        labels: ``(B, D, H, W)`` integer class labels.

    Returns:
        ``(indices, counts)``: ``indices (B, M)`` int64 flat indices into ``D*H*W`` (each row padded
        by repeating its first entry; ``M`` the largest count), ``counts (B,)`` the boundary voxels
        per case (a case with a single class has none).
    """
    if labels.dim() != 4:
        raise ValueError(f"`labels` must be (B, D, H, W), got shape {tuple(labels.shape)}")
    lab = labels.float().unsqueeze(1)
    hi = F.max_pool3d(lab, 3, stride=1, padding=1)
    lo = -F.max_pool3d(-lab, 3, stride=1, padding=1)
    edge = (hi != lo).flatten(1)  # (B, DHW)
    counts = edge.sum(1)
    rows = []
    width = max(int(counts.max()), 1)
    for row in edge:
        flat = torch.nonzero(row).flatten()
        if flat.numel() == 0:
            flat = torch.zeros(1, dtype=torch.long)
        rows.append(torch.cat([flat, flat[:1].expand(width - flat.numel())]))
    return torch.stack(rows).cpu(), counts.cpu()


def sample_boundary_points(
    indices: torch.Tensor,
    counts: torch.Tensor,
    case_idx: torch.Tensor,
    num_points: int,
    shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``num_points`` random points per case on its boundary voxels (see :func:`boundary_voxels`).

    Each point is a boundary voxel's centre shifted by ``U(-0.5, 0.5)`` voxels per axis, so the
    label looked up at it (:func:`sample_labels`, nearest voxel) is the voxel's own or a
    neighbour's. A case without boundary voxels gets uniform random points instead.

    Returns:
        ``(len(case_idx), num_points, 3)`` float32 points in ``[-1, 1]`` (grid_sample order).
    """
    d, h, w = (int(n) for n in shape)
    b = len(case_idx)
    if num_points <= 0:
        return torch.zeros(b, 0, 3)
    cnt = counts[case_idx].clamp(min=1).unsqueeze(1)
    pick = (torch.rand(b, int(num_points), generator=generator) * cnt).long().clamp(max=indices.shape[1] - 1)
    flat = indices[case_idx].gather(1, pick)
    ijk = torch.stack([flat % w, (flat // w) % h, flat // (h * w)], dim=-1).float()  # (x, y, z) voxel coords
    ijk = ijk + torch.rand(ijk.shape, generator=generator) - 0.5
    size = torch.tensor([w, h, d], dtype=torch.float32)
    pts = ijk / (size - 1).clamp(min=1) * 2.0 - 1.0
    empty = counts[case_idx] == 0
    if bool(empty.any()):
        pts[empty] = torch.rand(int(empty.sum()), int(num_points), 3, generator=generator) * 2.0 - 1.0
    return pts.clamp(-1.0, 1.0)

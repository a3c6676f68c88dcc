"""k-nearest neighbours and the Chamfer distance between point sets, in plain torch and in chunks.

NIMOSEF (Banus et al., MICCAI 2025) takes both from pytorch3d and holds its kNN graph in DGL, two
CUDA-pinned dependencies. Here the distances are computed block by block (``chunk_size`` query
points at a time, ``torch.cdist`` then ``topk``), so memory stays ``chunk_size x M`` and the same
code runs on CPU and CUDA, with gradients to both point sets.
"""

from __future__ import annotations

import torch

__all__ = ["chamfer_distance", "knn"]


def _check(points: torch.Tensor, name: str) -> torch.Tensor:
    if points.dim() == 2:
        points = points.unsqueeze(0)
    if points.dim() != 3:
        raise ValueError(f"`{name}` must be (N, D) or (B, N, D), got shape {tuple(points.shape)}")
    return points


def knn(query: torch.Tensor, reference: torch.Tensor, k: int = 1, *, chunk_size: int = 4096,
        exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest reference points of every query point.

    Args:
        query: ``(N, D)`` or ``(B, N, D)``.
        reference: ``(M, D)`` or ``(B, M, D)``.
        k: neighbours per query point (``<= M``, ``<= M - 1`` with ``exclude_self``).
        chunk_size: query points per block. Defaults to 4096.
        exclude_self: ``query`` is ``reference``: skip each point itself (a kNN graph).

    Returns:
        ``(squared distances, indices)``, each ``(B, N, k)`` (``(N, k)`` for 2D inputs), nearest first.

    Raises:
        ValueError: for bad shapes, mismatching batch or dimension, or ``k`` out of range.

    Example:
        >>> d2, idx = knn(torch.tensor([[0.0], [3.0]]), torch.tensor([[1.0], [2.5], [9.0]]), k=1)
        >>> idx.view(-1).tolist()
        [0, 1]
    """
    squeeze = query.dim() == 2
    q, r = _check(query, "query"), _check(reference, "reference")
    if q.shape[0] != r.shape[0] or q.shape[2] != r.shape[2]:
        raise ValueError(f"`query` {tuple(q.shape)} and `reference` {tuple(r.shape)} must share batch and dimension")
    limit = r.shape[1] - (1 if exclude_self else 0)
    if not 1 <= int(k) <= limit:
        raise ValueError(f"`k` must lie in [1, {limit}], got {k}")
    if exclude_self and q.shape[1] != r.shape[1]:
        raise ValueError("`exclude_self` needs `query` and `reference` to be the same points")
    dists, indices = [], []
    for start in range(0, q.shape[1], int(chunk_size)):
        block = q[:, start : start + int(chunk_size)]
        d2 = torch.cdist(block, r).pow(2)
        if exclude_self:
            rows = torch.arange(block.shape[1], device=q.device)
            d2 = d2.clone()
            d2[:, rows, rows + start] = float("inf")
        value, index = d2.topk(int(k), dim=-1, largest=False)
        dists.append(value)
        indices.append(index)
    d2, idx = torch.cat(dists, dim=1), torch.cat(indices, dim=1)
    return (d2[0], idx[0]) if squeeze else (d2, idx)


def chamfer_distance(a: torch.Tensor, b: torch.Tensor, *, bidirectional: bool = True, squared: bool = True,
                     chunk_size: int = 4096) -> torch.Tensor:
    """Mean nearest-neighbour distance from ``a`` to ``b`` (plus from ``b`` to ``a`` when ``bidirectional``).

    Args:
        a: ``(N, D)`` or ``(B, N, D)`` points (e.g. the ED boundary moved by the predicted displacement).
        b: ``(M, D)`` or ``(B, M, D)`` points (e.g. the boundary at ``t``).
        bidirectional: add the ``b -> a`` term (NIMOSEF's reference uses ``a -> b`` only). Defaults to True.
        squared: average squared distances (pytorch3d's convention) rather than distances. Defaults to True.
        chunk_size: points per block. Defaults to 4096.

    Returns:
        A scalar (mean over points and batch; the two directions summed).

    Example:
        >>> float(chamfer_distance(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]), squared=False))
        10.0
    """
    d_ab, _ = knn(a, b, 1, chunk_size=chunk_size)
    d_ab = d_ab if squared else d_ab.clamp_min(0).sqrt()
    loss = d_ab.mean()
    if bidirectional:
        d_ba, _ = knn(b, a, 1, chunk_size=chunk_size)
        loss = loss + (d_ba if squared else d_ba.clamp_min(0).sqrt()).mean()
    return loss

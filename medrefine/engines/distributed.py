"""Data parallelism for medrefine's own engines: process rank and gradient averaging.

The auto-decoder is not run through ``DistributedDataParallel``: its latent codes are looked up
outside ``forward`` (DDP only synchronises what ``forward`` touches), so each process takes its
share of a batch and the gradients are averaged after ``backward``, with one flat all-reduce, before
the optimiser step. Start several processes with ``torchrun`` (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["distributed_rank_world", "average_gradients", "broadcast_parameters", "rank_share", "per_process_batch"]

logger = logging.getLogger(__name__)


def distributed_rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the torch.distributed process group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def average_gradients(network: nn.Module, world: int) -> None:
    """All-reduce and average every gradient of ``network`` across ``world`` processes (no-op for 1)."""
    if world <= 1:
        return
    grads = [p.grad for p in network.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def broadcast_parameters(network: nn.Module, world: int) -> None:
    """Copy the first process's parameters and buffers into every process's ``network`` (no-op for 1)."""
    if world <= 1:
        return
    with torch.no_grad():
        for tensor in [*network.parameters(), *network.buffers()]:
            torch.distributed.broadcast(tensor.data, src=0)


def rank_share(size: int, rank: int, world: int) -> list[int]:
    """Positions ``0..size-1`` of a global batch that process ``rank`` of ``world`` takes.

    Every ``world``-th position from ``rank`` on, so equal shares when ``world`` divides ``size``;
    a batch smaller than ``world`` gives each process one position, repeated across processes.

    Example:
        >>> rank_share(4, 1, 2)
        [1, 3]
        >>> rank_share(1, 1, 2)
        [0]
    """
    if size < 1 or world < 1 or not 0 <= rank < world:
        raise ValueError(f"need size >= 1 and 0 <= rank < world, got size={size}, rank={rank}, world={world}")
    return list(range(size))[rank::world] or [rank % size]


def per_process_batch(batch_size: int, world: int | None = None) -> int:
    """The batch each of ``world`` processes loads so that together they make the global ``batch_size``.

    In every medrefine bundle ``batch_size`` is the global batch: one process takes all of it, N
    processes under torchrun take ``batch_size / N`` each (the DDP bundles through their
    ``DataLoader``, the NeAR and NIMOSEF engines through :func:`rank_share`), so a recipe keeps its
    meaning (and its learning rate) on any number of GPUs. When ``world`` does not divide
    ``batch_size`` each process takes ``ceil(batch_size / world)`` and the global batch grows to
    that times ``world``; the first process says so once. ``world`` defaults to the process
    group's size (1 without one).

    Example:
        >>> per_process_batch(8, 2), per_process_batch(8, 1), per_process_batch(1, 2)
        (4, 8, 1)
    """
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rank, found = distributed_rank_world()
    world = found if world is None else int(world)
    share = -(-batch_size // world)
    if share * world != batch_size and rank == 0:
        logger.warning("batch_size %d is not divisible by %d processes: each takes %d, a global batch of %d",
                       batch_size, world, share, share * world)
    return share

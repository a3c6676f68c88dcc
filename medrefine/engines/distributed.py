"""Data parallelism for medrefine's own engines: process rank and gradient averaging.

The auto-decoder is not run through ``DistributedDataParallel``: its latent codes are looked up
outside ``forward`` (DDP only synchronises what ``forward`` touches), so each process takes its
share of a batch and the gradients are averaged after ``backward``, with one flat all-reduce, before
the optimiser step. Start several processes with ``torchrun`` (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["distributed_rank_world", "average_gradients"]


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

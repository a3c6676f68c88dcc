"""Chunked decoding of a NIMOSEF implicit function on voxel grids, at any through-plane resolution.

The function is continuous in space and phase, so a subject can be decoded on its own grid or on a
grid with ``res_factor_z`` times more slices (through-plane super-resolution), one frame at a time
and ``chunk_size`` points per forward pass to bound memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["decode_frames", "upsampled_grid"]


def upsampled_grid(affine: np.ndarray, shape: Sequence[int], res_factor_z: float = 1.0) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of a grid with ``res_factor_z`` times more slices covering the same slab.

    Slice ``k'`` of the new grid sits at index ``(k' + 0.5) / f - 0.5`` of the old one, so the first
    and last slices keep the outer slice borders.

    Example:
        >>> a, s = upsampled_grid(np.eye(4), (4, 4, 3), 2)
        >>> s, float(a[2, 2]), float(a[2, 3])
        ((4, 4, 6), 0.5, -0.25)
    """
    factor = float(res_factor_z)
    if factor <= 0:
        raise ValueError(f"`res_factor_z` must be > 0, got {res_factor_z}")
    nz = max(1, int(round(int(shape[2]) * factor)))
    factor_eff = nz / int(shape[2])
    index = np.eye(4)
    index[2, 2] = 1.0 / factor_eff
    index[2, 3] = 0.5 / factor_eff - 0.5
    return np.asarray(affine, dtype=np.float64) @ index, (int(shape[0]), int(shape[1]), nz)


@torch.no_grad()
def decode_frames(network: nn.Module, latent: torch.Tensor, coords: torch.Tensor, phases: Sequence[float],
                  t_ed: float, *, chunk_size: int = 65536,
                  heads: tuple[str, ...] = ("seg", "intensity")) -> dict[str, torch.Tensor]:
    """Decode one subject at ``coords`` for each phase.

    Args:
        network: a :class:`~medrefine.networks.nimosef.NimosefNetwork`.
        latent: ``(1, latent_dim)`` code.
        coords: ``(V, 3)`` normalised local points (a flattened grid).
        phases: phases to decode (cycles).
        t_ed: end-diastolic phase.
        chunk_size: points per forward pass.
        heads: among ``seg`` (returned as class indices), ``intensity``, ``displacement``, ``probabilities``.

    Returns:
        ``{"seg": (F, V) int64, "intensity": (F, V), "displacement": (F, V, 3), "probabilities": (F, V, K)}``
        for the requested heads.
    """
    if int(chunk_size) < 1:
        raise ValueError(f"`chunk_size` must be >= 1, got {chunk_size}")
    wanted = tuple(h for h in heads if h != "probabilities") + (("seg",) if "probabilities" in heads else ())
    was_training = network.training
    network.eval()
    out: dict[str, list[torch.Tensor]] = {h: [] for h in heads}
    ted = torch.tensor([float(t_ed)], device=coords.device)
    try:
        for phase in phases:
            parts: dict[str, list[torch.Tensor]] = {h: [] for h in heads}
            for start in range(0, coords.shape[0], int(chunk_size)):
                pts = coords[start : start + int(chunk_size)].unsqueeze(0)
                t = torch.full(pts.shape[:2], float(phase), device=coords.device)
                res = network.decode(latent, pts, t, ted, heads=tuple(dict.fromkeys(wanted)))
                if "seg" in heads:
                    parts["seg"].append(res["seg"][0].argmax(-1))
                if "probabilities" in heads:
                    parts["probabilities"].append(torch.softmax(res["seg"][0], -1))
                for h in ("intensity", "displacement"):
                    if h in heads:
                        parts[h].append(res[h][0])
            if not coords.shape[0]:  # no points (e.g. the boundary of a prediction with no foreground)
                k = int(getattr(network, "num_classes", 1))
                empty = {"seg": (0,), "intensity": (0,), "displacement": (0, 3), "probabilities": (0, k)}
                parts = {h: [torch.zeros(empty[h], dtype=torch.int64 if h == "seg" else coords.dtype,
                                         device=coords.device)] for h in heads}
            for h in heads:
                out[h].append(torch.cat(parts[h]))
    finally:
        network.train(was_training)
    return {h: torch.stack(v) for h, v in out.items()}

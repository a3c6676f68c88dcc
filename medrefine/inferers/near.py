"""Chunked decoding of an implicit refiner onto a voxel grid, plus the reviewer's maps.

NeAR (Yang et al., MICCAI 2022, arXiv:2206.15328) decodes a refined label by querying the implicit
decoder at every voxel centre. MONAI's inferers (``SlidingWindowInferer``, ``SimpleInferer``) feed
image patches to a dense network; an implicit decoder instead takes a latent code and a list of
points, so here the points of the output grid are generated and decoded ``chunk_size`` at a time:
memory stays bounded at any output resolution, the latent's feature grids (and the appearance
encoder) are computed once per volume, and the result equals decoding all points at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["change_map", "decode_volume", "entropy"]


def _chunk_points(start: int, stop: int, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Query points of flat voxel indices ``[start, stop)`` of a ``(D, H, W)`` grid (xyz order)."""
    d, h, w = shape
    flat = torch.arange(start, stop, device=device)
    k = flat % w
    j = (flat // w) % h
    i = flat // (w * h)

    def norm(idx: torch.Tensor, n: int) -> torch.Tensor:
        if n == 1:
            return torch.zeros_like(idx, dtype=dtype)
        return idx.to(dtype) * (2.0 / (n - 1)) - 1.0

    return torch.stack((norm(k, w), norm(j, h), norm(i, d)), dim=-1)


def entropy(probs: torch.Tensor, *, dim: int = 1, normalize: bool = False, eps: float = 1e-12) -> torch.Tensor:
    """Shannon entropy ``-sum_k p_k log p_k`` of class probabilities (nats).

    Args:
        probs: probabilities, e.g. ``(B, K, *spatial)``.
        dim: class dimension. Defaults to 1.
        normalize: divide by ``log K`` so the result lies in ``[0, 1]``. Defaults to False.
        eps: floor inside the logarithm. Defaults to 1e-12.

    Returns:
        ``probs`` with ``dim`` removed.

    Example:
        >>> float(entropy(torch.tensor([[0.5, 0.5]]), normalize=True))
        1.0
    """
    ent = -(probs * torch.log(probs.clamp_min(eps))).sum(dim=dim)
    if normalize:
        k = probs.shape[dim]
        ent = ent / float(np.log(k)) if k > 1 else torch.zeros_like(ent)
    return ent


def change_map(
    noisy: np.ndarray | torch.Tensor, refined: np.ndarray | torch.Tensor, num_classes: int
) -> np.ndarray | torch.Tensor:
    """Per-class map of what the refinement changed.

    ``out[k] = +1`` where the voxel became class ``k`` (refined == k, noisy != k), ``-1`` where it
    stopped being class ``k`` (noisy == k, refined != k), 0 elsewhere. ``(out != 0).any(0)`` is the
    set of changed voxels; ``(out[k] > 0).sum()`` the voxels class ``k`` gained.

    Args:
        noisy: ``(*spatial)`` integer label before refinement (numpy array or torch tensor).
        refined: ``(*spatial)`` integer label after refinement, same shape.
        num_classes: number of classes ``K`` (background included).

    Returns:
        int8 ``(K, *spatial)``, numpy when ``noisy`` is numpy, else a torch tensor.

    Raises:
        ValueError: for different shapes, ``num_classes < 1`` or labels outside ``[0, K)``.

    Example:
        >>> change_map(np.array([0, 1, 1]), np.array([1, 1, 0]), 2).tolist()
        [[-1, 0, 1], [1, 0, -1]]
    """
    as_numpy = isinstance(noisy, np.ndarray)
    a = torch.as_tensor(np.asarray(noisy)) if as_numpy else torch.as_tensor(noisy)
    b = torch.as_tensor(np.asarray(refined)) if isinstance(refined, np.ndarray) else torch.as_tensor(refined)
    if a.shape != b.shape:
        raise ValueError(f"`noisy` and `refined` must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if int(num_classes) < 1:
        raise ValueError(f"`num_classes` must be >= 1, got {num_classes}")
    b = b.to(a.device)
    for name, arr in (("noisy", a), ("refined", b)):
        if arr.numel() and (int(arr.min()) < 0 or int(arr.max()) >= num_classes):
            raise ValueError(
                f"`{name}` must lie in [0, {num_classes}), got values in [{int(arr.min())}, {int(arr.max())}]"
            )
    classes = torch.arange(int(num_classes), device=a.device).view(-1, *([1] * a.dim()))
    out = (b.unsqueeze(0) == classes).to(torch.int8) - (a.unsqueeze(0) == classes).to(torch.int8)
    return out.cpu().numpy() if as_numpy else out


@torch.no_grad()
def decode_volume(
    network: nn.Module,
    latent_or_case_idx: int | Sequence[int] | torch.Tensor,
    appearance: torch.Tensor | None,
    out_shape: Sequence[int] | None = None,
    *,
    chunk_size: int = 2**16,
    return_probabilities: bool = True,
    normalize_entropy: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Decode an :class:`~medrefine.networks.ImplicitRefiner` at every voxel centre of a grid.

    Args:
        network: the implicit refiner (anything with ``latent_grids``, ``appearance_features``,
            ``decode_points``, ``latents`` and ``latent_dim``).
        latent_or_case_idx: a training case index (int, or ``(B,)`` integer tensor/sequence:
            transductive mode), or float codes ``(B, latent_dim)`` / ``(latent_dim,)`` (inductive
            mode, e.g. from :func:`medrefine.engines.fit_latent`).
        appearance: image ``(B, C_a, D, H, W)`` or ``(C_a, D, H, W)`` in the same ``[-1, 1]`` frame;
            None for a shape-only network.
        out_shape: output grid ``(D, H, W)``; defaults to the appearance's spatial shape.
        chunk_size: query points decoded per forward pass (bounds memory). Defaults to 65536.
        return_probabilities: return ``(B, K, *out_shape)`` softmax probabilities; when False return
            ``(label, entropy)`` computed chunk by chunk (no ``K``-channel volume is ever held).
        normalize_entropy: entropy divided by ``log K`` (only with ``return_probabilities=False``).
        device: where to decode; defaults to the network's device.

    Returns:
        Probabilities ``(B, K, *out_shape)`` float32, or a tuple ``(label (B, *out_shape) int64,
        entropy (B, *out_shape) float32)``, on the decoding device.

    Raises:
        ValueError: for a missing ``out_shape`` without appearance, a bad ``chunk_size`` or codes
            of the wrong size.

    Example:
        >>> probs = decode_volume(net, 0, image[None], chunk_size=4096)  # doctest: +SKIP
    """
    if int(chunk_size) < 1:
        raise ValueError(f"`chunk_size` must be >= 1, got {chunk_size}")
    param = next(network.parameters())
    device = torch.device(device) if device is not None else param.device
    dtype = param.dtype

    z = torch.as_tensor(latent_or_case_idx, device=device)
    if z.is_floating_point():
        if z.dim() == 1:
            z = z.unsqueeze(0)
        if z.dim() != 2 or z.shape[1] != network.latent_dim:
            raise ValueError(
                f"`latent_or_case_idx` as codes must be (B, {network.latent_dim}), got shape {tuple(z.shape)}"
            )
        z = z.to(dtype)
    else:
        idx = z.long().view(-1)
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= network.num_cases:
            raise ValueError(
                f"`latent_or_case_idx` as case indices must lie in [0, {network.num_cases}), got {idx.tolist()}"
            )
        z = network.latents(idx)
    b = z.shape[0]

    if appearance is not None:
        appearance = torch.as_tensor(appearance, device=device, dtype=dtype)
        if appearance.dim() == 4:
            appearance = appearance.unsqueeze(0)
        if appearance.dim() != 5:
            raise ValueError(f"`appearance` must be (B, C_a, D, H, W) or (C_a, D, H, W), got {tuple(appearance.shape)}")
        if appearance.shape[0] == 1 and b > 1:
            appearance = appearance.expand(b, -1, -1, -1, -1)
        if appearance.shape[0] != b:
            raise ValueError(f"`appearance` batch {appearance.shape[0]} does not match {b} latent code(s)")
    if out_shape is None:
        if appearance is None:
            raise ValueError("`out_shape` is required when `appearance` is None")
        out_shape = tuple(appearance.shape[2:])
    shape = tuple(int(s) for s in out_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"`out_shape` must have 3 positive values (D, H, W), got {tuple(out_shape)}")

    was_training = network.training
    network.eval()
    try:
        grids = network.latent_grids(z)
        feats = network.appearance_features(appearance)
        total = shape[0] * shape[1] * shape[2]
        k = network.out_channels
        if return_probabilities:
            probs = torch.empty(b, k, total, device=device, dtype=torch.float32)
        else:
            label = torch.empty(b, total, device=device, dtype=torch.int64)
            ent = torch.empty(b, total, device=device, dtype=torch.float32)
        for start in range(0, total, int(chunk_size)):
            stop = min(start + int(chunk_size), total)
            pts = _chunk_points(start, stop, shape, device, dtype).unsqueeze(0).expand(b, -1, -1)
            p = torch.softmax(network.decode_points(grids, pts, feats).float(), dim=-1)  # (B, n, K)
            if return_probabilities:
                probs[:, :, start:stop] = p.transpose(1, 2)
            else:
                label[:, start:stop] = p.argmax(dim=-1)
                ent[:, start:stop] = entropy(p, dim=-1, normalize=normalize_entropy)
    finally:
        network.train(was_training)
    if return_probabilities:
        return probs.view(b, k, *shape)
    return label.view(b, *shape), ent.view(b, *shape)

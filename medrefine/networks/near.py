"""Implicit auto-decoder for annotation refinement (NeAR / MultiNeAR).

Implements the decoder of Yang et al., "Neural Annotation Refinement: Development of a New 3D
Dataset for Adrenal Gland Analysis", MICCAI 2022 (arXiv:2206.15328), extended to K classes as in
MultiNeAR: one learnable latent code per training case is upsampled by transposed 3D convolutions
into a pyramid of small feature grids; every query point samples each grid trilinearly, appends its
coordinates and the image appearance at that point, and a point-wise MLP maps the result to K class
logits.

Written for speed on CPU (``benchmarks/near_step.py`` times it against the seed's design): query
points travel as ``(B, N, 3)`` tensors; each grid is sampled once per level and batch (the coarsest
grids through a dense interpolation matrix and a BLAS product, whose backward is several times faster
than ``grid_sample``'s scatter loop; the others with :func:`torch.nn.functional.grid_sample`); the
point MLP runs channels-first as batched matrix products with the ``nn.Linear`` weights, without
GroupNorm, instead of 1x1x1 3D convolutions with GroupNorm over 5D tensors; the latent is upsampled
by matrix products (:class:`LatentUpsample`) rather than CPU transposed convolutions.

Coordinate convention (everywhere in medrefine's implicit code): a volume tensor ``(B, C, D, H, W)``
is indexed ``[b, c, i, j, k]``; a query point is ``(x, y, z)`` in ``[-1, 1]`` in
:func:`~torch.nn.functional.grid_sample` order, so ``x`` runs along ``k`` (W), ``y`` along ``j`` (H)
and ``z`` along ``i`` (D), with ``align_corners=True`` (``-1`` and ``1`` are the centres of the first
and last voxel). :func:`grid_points` lists the voxel centres of a grid in C order, so decoded values
reshape straight to ``(D, H, W)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medrefine.errors import did_you_mean
from medrefine.networks.describe import record_init_args
from medrefine.networks.query_points import (
    _DENSE_MAX_VOXELS,
    _positive_ints,
    grid_points,
    interpolation_matrix,
    jittered_grid_points,
    sample_labels,
    sample_volume,
)

__all__ = [
    "ImplicitRefiner",
    "LatentUpsample",
    "grid_points",
    "interpolation_matrix",
    "jittered_grid_points",
    "sample_labels",
    "sample_volume",
]

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leakyrelu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "gelu": lambda: nn.GELU(),
    "silu": lambda: nn.SiLU(inplace=True),
}
_NORMS = ("none", "layer")


def _make_activation(name: str) -> nn.Module:
    key = str(name).lower()
    if key not in _ACTIVATIONS:
        raise ValueError(
            f"`act` must be one of {sorted(_ACTIVATIONS)}, got {name!r}.{did_you_mean(key, _ACTIVATIONS)}"
        )
    return _ACTIVATIONS[key]()


# ----------------------------------------------------------------------------------------------
# query points
# ----------------------------------------------------------------------------------------------


class LatentUpsample(nn.Module):
    """Transposed 3D convolution with ``kernel_size == stride == factor``, as one matrix product.

    Equal to ``nn.ConvTranspose3d(in_channels, out_channels, factor, stride=factor)`` (non-overlapping
    kernels), but computed as ``(B*S^3, C_in) @ (C_in, C_out*f^3)`` followed by a voxel shuffle: on
    CPU the convolution routines are slow and erratic for the tiny grids of an auto-decoder, a
    matrix product is not. A ``(B, C_in, 1, 1, 1)`` input (the latent code) becomes ``f^3`` voxels.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        factor: upsampling factor per axis.
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.factor = int(in_channels), int(out_channels), int(factor)
        f3 = self.factor**3
        self.weight = nn.Parameter(torch.empty(self.in_channels, self.out_channels * f3))
        self.bias = nn.Parameter(torch.empty(self.out_channels))
        bound = 1.0 / math.sqrt(self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, d, h, w = x.shape
        f, o = self.factor, self.out_channels
        y = x.permute(0, 2, 3, 4, 1).reshape(b * d * h * w, c) @ self.weight
        y = y.view(b, d, h, w, o, f, f, f).permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, o, d * f, h * f, w * f)
        return y + self.bias.view(1, o, 1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, factor={self.factor}"


class ImplicitRefiner(nn.Module):
    """NeAR auto-decoder: per-case latent code -> feature-grid pyramid -> point MLP -> K logits.

    Implements the EmbeddingDecoder of Yang et al., MICCAI 2022 (arXiv:2206.15328) for any number of
    classes. Each training case ``c`` owns a code ``z_c`` (``nn.Embedding``). ``z`` is upsampled by
    transposed 3D convolutions (:class:`LatentUpsample`, optionally followed by a 3x3x3 conv) to grids of ``grid_sizes[l]^3`` voxels with ``grid_channels[l]``
    channels. A query point ``p`` gathers, in one ``grid_sample`` call per level, the trilinear
    feature of every grid, concatenates ``p`` itself (``use_coordinates``) and the image appearance at
    ``p`` (intensity; plus ``encoder_channels`` features of a small conv encoder over the image when
    > 0), and an MLP of ``nn.Linear`` layers maps that vector to ``out_channels`` logits.

    MONAI has no such piece: its networks map dense image tensors to dense outputs, while this model
    is queried at arbitrary continuous points and is conditioned on a learnt per-case embedding
    (auto-decoding, no encoder of the label). The module is not TorchScript-exportable (it branches
    on input ranks and optional parts); use it from Python.

    Args:
        num_cases: number of training cases (rows of the latent table); >= 1.
        out_channels: number of classes ``K`` (background included); >= 2.
        latent_dim: size of each case's code. Defaults to 256.
        grid_channels: channels of each grid level, coarse to fine. Defaults to ``(64, 32, 16)``.
        grid_sizes: edge length of each grid level; the first is made from the ``1^3`` code by a
            transposed conv of that kernel size, each next one must be an integer multiple of the
            previous. Defaults to ``(4, 8, 16)``.
        appearance_channels: image channels ``C_a`` sampled at each point (0 = shape only).
            Defaults to 1.
        encoder_channels: channels of a two-layer 3x3x3 conv encoder over the image whose output is
            also sampled (0 = intensity only). Defaults to 0.
        hidden_channels: widths of the point MLP's hidden layers. Defaults to ``(128, 128, 64)``.
        act: activation, one of ``"relu"``, ``"leakyrelu"``, ``"gelu"``, ``"silu"``. Defaults to
            ``"leakyrelu"``.
        norm: ``"none"`` or ``"layer"`` (LayerNorm after each hidden Linear). Defaults to ``"none"``.
        grid_refine: add a 3x3x3 convolution after each upsampling. Defaults to True.
        use_coordinates: append the point coordinates to the MLP input. Defaults to True.
        latent_init_std: std of the normal initialisation of the codes. Defaults to 0.01.

    Raises:
        ValueError: for non-positive sizes, mismatching ``grid_channels``/``grid_sizes``, grid sizes
            that are not integer multiples, or unknown ``act``/``norm``.

    Example:
        >>> net = ImplicitRefiner(num_cases=4, out_channels=3, latent_dim=32)
        >>> pts = torch.rand(2, 100, 3) * 2 - 1
        >>> net(torch.tensor([0, 3]), pts, torch.rand(2, 1, 16, 16, 16)).shape
        torch.Size([2, 100, 3])
    """

    def __init__(
        self,
        num_cases: int,
        out_channels: int,
        latent_dim: int = 256,
        grid_channels: Sequence[int] = (64, 32, 16),
        grid_sizes: Sequence[int] = (4, 8, 16),
        appearance_channels: int = 1,
        encoder_channels: int = 0,
        hidden_channels: Sequence[int] = (128, 128, 64),
        act: str = "leakyrelu",
        norm: str = "none",
        grid_refine: bool = True,
        use_coordinates: bool = True,
        latent_init_std: float = 0.01,
    ) -> None:
        super().__init__()
        if int(num_cases) < 1:
            raise ValueError(f"`num_cases` must be >= 1, got {num_cases}")
        if int(out_channels) < 2:
            raise ValueError(f"`out_channels` must be >= 2 (background + at least one class), got {out_channels}")
        if int(latent_dim) < 1:
            raise ValueError(f"`latent_dim` must be >= 1, got {latent_dim}")
        if int(appearance_channels) < 0 or int(encoder_channels) < 0:
            raise ValueError(
                "`appearance_channels` and `encoder_channels` must be >= 0, "
                f"got {appearance_channels} and {encoder_channels}"
            )
        if int(encoder_channels) > 0 and int(appearance_channels) == 0:
            raise ValueError("`encoder_channels` > 0 needs an image: `appearance_channels` must be >= 1, got 0")
        grid_channels = _positive_ints("grid_channels", grid_channels)
        grid_sizes = _positive_ints("grid_sizes", grid_sizes)
        hidden_channels = _positive_ints("hidden_channels", hidden_channels, allow_empty=True)
        if len(grid_channels) != len(grid_sizes):
            raise ValueError(
                f"`grid_channels` and `grid_sizes` must have the same length, got {grid_channels} and {grid_sizes}"
            )
        for prev, cur in itertools.pairwise(grid_sizes):
            if cur % prev:
                raise ValueError(f"each of `grid_sizes` must be an integer multiple of the previous, got {grid_sizes}")
        norm_key = str(norm).lower()
        if norm_key not in _NORMS:
            raise ValueError(f"`norm` must be one of {list(_NORMS)}, got {norm!r}.{did_you_mean(norm_key, _NORMS)}")
        _make_activation(act)  # validate early

        self.num_cases = int(num_cases)
        self.out_channels = int(out_channels)
        self.latent_dim = int(latent_dim)
        self.grid_channels = grid_channels
        self.grid_sizes = grid_sizes
        self.appearance_channels = int(appearance_channels)
        self.encoder_channels = int(encoder_channels)
        self.hidden_channels = hidden_channels
        self.use_coordinates = bool(use_coordinates)
        record_init_args(self, "medrefine.networks.ImplicitRefiner", {
            "num_cases": self.num_cases, "out_channels": self.out_channels, "latent_dim": self.latent_dim,
            "grid_channels": grid_channels, "grid_sizes": grid_sizes, "appearance_channels": self.appearance_channels,
            "encoder_channels": self.encoder_channels, "hidden_channels": hidden_channels, "act": act, "norm": norm_key,
            "grid_refine": grid_refine, "use_coordinates": self.use_coordinates, "latent_init_std": latent_init_std,
        })  # fmt: skip

        self.latents = nn.Embedding(self.num_cases, self.latent_dim)
        nn.init.normal_(self.latents.weight, std=float(latent_init_std))

        levels = []
        in_ch, prev_size = self.latent_dim, 1
        for ch, size in zip(grid_channels, grid_sizes):
            up = LatentUpsample(in_ch, ch, size // prev_size)
            block = [up, _make_activation(act)]
            if grid_refine:
                block += [nn.Conv3d(ch, ch, kernel_size=3, padding=1), _make_activation(act)]
            levels.append(nn.Sequential(*block))
            in_ch, prev_size = ch, size
        self.grid_levels = nn.ModuleList(levels)

        self.encoder: nn.Module | None = None
        if self.encoder_channels > 0:
            self.encoder = nn.Sequential(
                nn.Conv3d(self.appearance_channels, self.encoder_channels, 3, padding=1),
                _make_activation(act),
                nn.Conv3d(self.encoder_channels, self.encoder_channels, 3, padding=1),
                _make_activation(act),
            )

        feat = sum(grid_channels) + 3 * self.use_coordinates + self.appearance_channels + self.encoder_channels
        layers: list[nn.Module] = []
        for width in hidden_channels:
            layers.append(nn.Linear(feat, width))
            if norm_key == "layer":
                layers.append(nn.LayerNorm(width))
            layers.append(_make_activation(act))
            feat = width
        layers.append(nn.Linear(feat, self.out_channels))
        self.point_mlp = nn.Sequential(*layers)

    # -- pieces, usable on their own (chunked decoding reuses grids and encoder features) --------

    @property
    def point_feature_channels(self) -> int:
        """Channels of the appearance vector each point needs: ``appearance + encoder`` channels."""
        return self.appearance_channels + self.encoder_channels

    def latent_grids(self, latent: torch.Tensor) -> list[torch.Tensor]:
        """Upsample codes ``(B, latent_dim)`` to the pyramid ``[(B, C_l, S_l, S_l, S_l), ...]``."""
        if latent.dim() != 2 or latent.shape[1] != self.latent_dim:
            raise ValueError(f"`latent` must be (B, {self.latent_dim}), got shape {tuple(latent.shape)}")
        x = latent.view(latent.shape[0], self.latent_dim, 1, 1, 1)
        grids = []
        for level in self.grid_levels:
            x = level(x)
            grids.append(x)
        return grids

    def appearance_features(self, appearance: torch.Tensor | None) -> torch.Tensor | None:
        """Prepare the appearance input: a volume gets the encoder's features appended.

        Args:
            appearance: ``(B, C_a, D, H, W)`` image, ``(B, N, C_a + encoder_channels)`` values already
                sampled at the query points, or None when ``appearance_channels == 0``.

        Returns:
            ``(B, C_a + encoder_channels, D, H, W)`` volume, the pre-sampled tensor unchanged, or None.

        Raises:
            ValueError: when ``appearance`` is missing, has the wrong number of channels or rank.
        """
        if self.point_feature_channels == 0:
            return None
        if appearance is None:
            raise ValueError(f"`appearance` is required: the network expects {self.appearance_channels} image channel(s)")
        if appearance.dim() == 5:
            if appearance.shape[1] != self.appearance_channels:
                raise ValueError(
                    f"`appearance` must have {self.appearance_channels} channel(s) (B, C_a, D, H, W), "
                    f"got shape {tuple(appearance.shape)}"
                )
            if self.encoder is not None:
                appearance = torch.cat([appearance, self.encoder(appearance)], dim=1)
            return appearance
        if appearance.dim() == 3:
            if appearance.shape[-1] != self.point_feature_channels:
                hint = " (the conv encoder needs the image volume, not sampled values)" if self.encoder is not None else ""
                raise ValueError(
                    f"pre-sampled `appearance` must be (B, N, {self.point_feature_channels}){hint}, "
                    f"got shape {tuple(appearance.shape)}"
                )
            return appearance
        raise ValueError(
            f"`appearance` must be (B, C_a, D, H, W) or pre-sampled (B, N, C_a), got shape {tuple(appearance.shape)}"
        )

    def decode_points(
        self, grids: Sequence[torch.Tensor], points: torch.Tensor, appearance: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits at ``points`` from precomputed grids and appearance (see :meth:`appearance_features`).

        Args:
            grids: output of :meth:`latent_grids`, batch ``B``.
            points: ``(B, N, 3)`` query points in ``[-1, 1]``.
            appearance: output of :meth:`appearance_features` (volume or ``(B, N, C)``) or None.

        Returns:
            ``(B, N, out_channels)`` logits.

        Raises:
            ValueError: for mismatching shapes, or appearance missing/unexpected for this network.
        """
        b = grids[0].shape[0]
        if (appearance is None) != (self.point_feature_channels == 0):
            raise ValueError(
                f"`appearance` must be {'None' if self.point_feature_channels == 0 else 'given'} for a network "
                f"with {self.point_feature_channels} appearance channel(s)"
            )
        if points.dim() != 3 or points.shape[-1] != 3 or points.shape[0] != b:
            raise ValueError(f"`points` must be (B={b}, N, 3), got shape {tuple(points.shape)}")
        n = points.shape[1]
        # sample in float32 (float64 for a double network) even under autocast: coordinates in
        # half precision would be off by a fraction of a voxel; the grids are tiny to cast.
        dtype = torch.promote_types(grids[0].dtype, torch.float32)
        points = points.to(dtype)
        loc = points.view(b, n, 1, 1, 3)
        # channels-first (B, C, N) all the way: grid_sample returns it, and the MLP as batched
        # matrix products W @ x needs no transposed copies.
        feats = []
        for grid in grids:
            grid = grid.to(dtype)
            size = grid.shape[-1]
            if tuple(grid.shape[-3:]) == (size,) * 3 and size**3 <= _DENSE_MAX_VOXELS:
                weights = interpolation_matrix(points, size)
                feats.append(torch.bmm(grid.flatten(2), weights.transpose(1, 2)))
            else:
                s = F.grid_sample(grid, loc, mode="bilinear", padding_mode="border", align_corners=True)
                feats.append(s.view(b, grid.shape[1], n))
        if self.use_coordinates:
            feats.append(points.transpose(1, 2))
        if appearance is not None:
            if appearance.dim() == 5:
                feats.append(
                    F.grid_sample(appearance.to(dtype), loc, mode="bilinear", padding_mode="border", align_corners=True)
                    .view(b, appearance.shape[1], n)
                )
            elif appearance.shape[:2] != (b, n):
                raise ValueError(
                    f"pre-sampled `appearance` must be (B={b}, N={n}, C), got shape {tuple(appearance.shape)}"
                )
            else:
                feats.append(appearance.to(dtype).transpose(1, 2))
        x = torch.cat(feats, dim=1).to(self.point_mlp[0].weight.dtype)  # autocast casts per layer
        for layer in self.point_mlp:
            if isinstance(layer, nn.Linear):
                x = torch.baddbmm(layer.bias.view(1, -1, 1), layer.weight.expand(b, -1, -1), x)
            elif isinstance(layer, nn.LayerNorm):
                x = layer(x.transpose(1, 2)).transpose(1, 2)
            else:
                x = layer(x)
        return x.transpose(1, 2)  # (B, N, K) view of the channels-first result

    # -- public entry points --------------------------------------------------------------------

    def decode_latent(
        self, latent: torch.Tensor, points: torch.Tensor, appearance: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``(B, N, K)`` at ``points`` for explicit codes ``latent`` ``(B, latent_dim)``.

        Used for inductive refinement, where a new code is fitted with the decoder frozen.
        """
        grids = self.latent_grids(latent)
        return self.decode_points(grids, points, self.appearance_features(appearance))

    def forward(
        self, case_idx: torch.Tensor, points: torch.Tensor, appearance: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits for training cases.

        Args:
            case_idx: ``(B,)`` integer indices into the latent table.
            points: ``(B, N, 3)`` query points in ``[-1, 1]`` (grid_sample ``xyz`` order).
            appearance: ``(B, C_a, D, H, W)`` image or ``(B, N, C_a)`` pre-sampled values.

        Returns:
            ``(B, N, out_channels)`` logits.

        Raises:
            ValueError: for case indices outside ``[0, num_cases)`` or mismatching shapes.
        """
        case_idx = torch.as_tensor(case_idx, device=self.latents.weight.device).long().view(-1)
        if case_idx.numel() and (int(case_idx.min()) < 0 or int(case_idx.max()) >= self.num_cases):
            raise ValueError(f"`case_idx` must lie in [0, {self.num_cases}), got {case_idx.tolist()}")
        return self.decode_latent(self.latents(case_idx), points, appearance)

    @torch.no_grad()
    def mean_latent(self) -> torch.Tensor:
        """Mean of the trained codes, ``(1, latent_dim)``: a starting point for fitting a new case."""
        return self.latents.weight.mean(dim=0, keepdim=True).clone()

    def extra_repr(self) -> str:
        return (
            f"num_cases={self.num_cases}, out_channels={self.out_channels}, latent_dim={self.latent_dim}, "
            f"grid_sizes={self.grid_sizes}, appearance_channels={self.appearance_channels}, "
            f"encoder_channels={self.encoder_channels}"
        )

"""CRN: the correlation routing network for multi-modal, multi-target lesion classification.

Wang et al., "Correlation routing network for explainable lesion classification in
multi-parametric liver MRI", Medical Image Analysis 107:103790, 2025 (RRMediCa). The seed's
network is 2.5D with a hand-written list of which modalities feed which target; here it is 3D or
2.5D and the routing is a matrix, fixed or learned:

1. a stem per modality (MONAI ``Convolution`` blocks) sees that modality and the lesion mask;
   its features are multiplied by the modality's presence flag (0 for a missing sequence);
2. a modality x target routing matrix ``G`` (``(M, T)``) weighs what each target sees:
   ``gating="fixed"`` uses the given 0/1 matrix (the seed's lists), ``gating="learned"`` a
   sigmoid gate per entry (restricted to the given matrix), read back with
   :meth:`CorrelationRoutingNetwork.routing_weights`;
3. a branch per target (convolutions over the routed, concatenated modality features) pooled to
   one token per target, plus an embedding of the routed presence flags. ``pooling="lesion"``
   (the default) averages the branch features inside the lesion mask and over its surround
   separately, so a token reads the lesion against its background the way a radiologist reads
   hypo-/hyper-intensity; ``"global"`` averages over the whole crop (a small lesion then moves
   the mean by about its volume fraction);
4. self-attention over the target tokens. With fixed gating the attention is masked so that a
   target attends only to targets whose modalities it is routed to, so a target's head never
   depends on a modality outside its row of ``G`` (what :meth:`explain` shows stays true);
5. a linear head per target; optionally the last target ("disease") adds a head fed by the other
   targets' softmax probabilities.

The forward returns the targets' logits concatenated, ``(B, sum(num_classes))``.

MONAI's ``TransformerBlock`` takes only a key-padding mask ``(B, L)``, not the per-query mask
``(L, L)`` step 4 needs, so the attention block uses ``torch.nn.MultiheadAttention`` (with MONAI's
``MLPBlock``); MONAI has no multi-branch routed classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, MLPBlock
from torch import nn

__all__ = ["NORMS", "CorrelationRoutingNetwork", "TokenAttention", "lesion_means", "norm_layer", "to_slices"]

NORMS = ("batch", "group")


def norm_layer(norm: str, channels: Sequence[int]) -> str | tuple[str, dict[str, int]]:
    """MONAI's norm argument: ``"batch"``, or GroupNorm with the most groups (up to 8) dividing every
    one of ``channels`` (the layers it is used for).

    Example:
        >>> norm_layer("group", [16, 32]), norm_layer("group", [12]), norm_layer("batch", [16])
        (('group', {'num_groups': 8}), ('group', {'num_groups': 4}), 'batch')
    """
    if norm == "batch":
        return "batch"
    groups = next(g for g in (8, 4, 2, 1) if all(int(c) % g == 0 for c in channels))
    return ("group", {"num_groups": groups})


def to_slices(x: torch.Tensor, num_slices: int) -> torch.Tensor:
    """``(B, C, H, W, D)`` -> ``(B, C * num_slices, H, W)``: the ``num_slices`` central slices of the
    last axis as channels (the 2.5D input of the seed).

    Raises:
        ValueError: ``x`` is not 5D or has fewer than ``num_slices`` slices.
    """
    if x.ndim != 5 or x.shape[-1] < num_slices or num_slices < 1:
        raise ValueError(f"2.5D input must be (B, C, H, W, D) with D >= num_slices={num_slices}, got {tuple(x.shape)}")
    start = (x.shape[-1] - num_slices) // 2
    part = x[..., start : start + num_slices]
    return part.permute(0, 1, 4, 2, 3).reshape(x.shape[0], x.shape[1] * num_slices, x.shape[2], x.shape[3])


def lesion_means(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, C, *spatial)`` features -> ``(B, 2C)``: their means inside the lesion mask, then over the
    rest; ``mask (B, 1, *input spatial)`` is resampled to the feature grid by area averaging."""
    dims = tuple(range(2, features.ndim))
    pool = nn.functional.adaptive_avg_pool3d if features.ndim == 5 else nn.functional.adaptive_avg_pool2d
    weight = pool(mask.to(features.dtype), features.shape[2:]).clamp(0, 1)
    inside = (features * weight).sum(dims) / weight.sum(dims).clamp_min(1e-3)
    outside = (features * (1 - weight)).sum(dims) / (1 - weight).sum(dims).clamp_min(1e-3)
    return torch.cat([inside, outside], 1)


class TokenAttention(nn.Module):
    """Pre-norm transformer block over tokens with an optional ``(L, L)`` boolean mask (True = may attend)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout_rate: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size)
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout_rate, batch_first=True)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.mlp = MLPBlock(hidden_size, 2 * hidden_size, dropout_rate)

    def forward(self, tokens: torch.Tensor, allowed: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens (B, L, F)`` -> (tokens, attention weights ``(B, L, L)`` averaged over heads)."""
        mask = None if allowed is None else ~allowed
        h = self.norm1(tokens)
        out, weights = self.attention(h, h, h, attn_mask=mask, need_weights=True, average_attn_weights=True)
        tokens = tokens + out
        return tokens + self.mlp(self.norm2(tokens)), weights


class CorrelationRoutingNetwork(nn.Module):
    """The CRN (see the module docstring).

    Args:
        num_modalities: M, the modality channels of the input (the lesion mask is one more, last).
        num_classes: classes per target, T entries.
        routing: ``(M, T)`` 0/1 matrix: which modality feeds which target; default all ones.
        gating: ``"fixed"`` (the matrix as given) or ``"learned"`` (a sigmoid gate per routed entry).
        spatial_dims: 3, or 2 for 2.5D (``num_slices`` central slices as channels).
        num_slices: slices of the 2.5D input. Default 5.
        stem_channels: features per modality stem. Default 16.
        branch_channels: features of a target branch. Default 32.
        token_size: size of a target token. Default 64.
        num_heads: attention heads. Default 4.
        attention_layers: attention blocks over the target tokens (0: none). Default 1.
        disease_head: the last target also gets a head on the other targets' probabilities.
        dropout: dropout of the tokens and the attention. Default 0.
        pooling: ``"lesion"`` (inside and around the mask, separately) or ``"global"``.
        norm: ``"batch"`` (default) or ``"group"`` (GroupNorm: no batch statistics, so several
            processes with small shares of a batch, or batches of one, compute what one process would).

    Inputs: ``image (B, M + 1, *spatial)`` (modalities then the mask), ``presence (B, M)`` (default ones).

    Example:
        >>> net = CorrelationRoutingNetwork(4, [3, 2], routing=[[0, 0], [1, 0], [0, 1], [0, 1]])
        >>> net(torch.zeros(2, 5, 16, 16, 16)).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        num_modalities: int,
        num_classes: Sequence[int],
        routing: Sequence[Sequence[float]] | None = None,
        gating: str = "fixed",
        spatial_dims: int = 3,
        num_slices: int = 5,
        stem_channels: int = 16,
        branch_channels: int = 32,
        token_size: int = 64,
        num_heads: int = 4,
        attention_layers: int = 1,
        disease_head: bool = False,
        dropout: float = 0.0,
        pooling: str = "lesion",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        m, t = int(num_modalities), len(num_classes)
        if m < 1 or t < 1 or any(int(k) < 2 for k in num_classes):
            raise ValueError(f"`num_modalities` >= 1 and `num_classes` of targets with >= 2 classes each, got {num_modalities!r}, {list(num_classes)!r}")
        if gating not in ("fixed", "learned"):
            raise ValueError(f"`gating` must be 'fixed' or 'learned', got {gating!r}")
        if pooling not in ("lesion", "global"):
            raise ValueError(f"`pooling` must be 'lesion' or 'global', got {pooling!r}")
        if norm not in NORMS:
            raise ValueError(f"`norm` must be one of {list(NORMS)}, got {norm!r}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"`spatial_dims` must be 3 (3D) or 2 (2.5D), got {spatial_dims!r}")
        if disease_head and t < 2:
            raise ValueError("`disease_head` needs at least two targets (the others feed the last)")
        matrix = torch.ones(m, t) if routing is None else torch.as_tensor(routing, dtype=torch.float32)
        if matrix.shape != (m, t) or not torch.all((matrix == 0) | (matrix == 1)) or torch.any(matrix.sum(0) == 0):
            raise ValueError(f"`routing` must be an ({m}, {t}) 0/1 matrix routing at least one modality to every "
                             f"target, got {matrix.tolist()}")
        self.num_classes = [int(k) for k in num_classes]
        self.gating = gating
        self.spatial_dims = spatial_dims
        self.num_slices = int(num_slices)
        self.disease_head = bool(disease_head)
        self.pooling = pooling
        self.register_buffer("routing", matrix)
        self.gate_logits = nn.Parameter(torch.full((m, t), 2.0)) if gating == "learned" else None
        in_per_modality = 2 * (self.num_slices if spatial_dims == 2 else 1)
        self.stems = nn.ModuleList(
            nn.Sequential(
                Convolution(spatial_dims, in_per_modality, stem_channels, strides=1, kernel_size=3, norm=norm_layer(norm, [stem_channels])),
                Convolution(spatial_dims, stem_channels, stem_channels, strides=2, kernel_size=3, norm=norm_layer(norm, [stem_channels])),
            )
            for _ in range(m)
        )
        self.branches = nn.ModuleList(
            nn.Sequential(
                Convolution(spatial_dims, m * stem_channels, branch_channels, strides=2, kernel_size=3, norm=norm_layer(norm, [branch_channels])),
                Convolution(spatial_dims, branch_channels, branch_channels, strides=1, kernel_size=3, norm=norm_layer(norm, [branch_channels])),
            )
            for _ in range(t)
        )
        pooled = 2 * branch_channels if pooling == "lesion" else branch_channels
        self.tokenizers = nn.ModuleList(nn.Linear(pooled, token_size) for _ in range(t))
        self.presence_embedding = nn.ModuleList(nn.Linear(m, token_size) for _ in range(t))
        self.target_embedding = nn.Parameter(torch.zeros(t, token_size))
        self.attention = nn.ModuleList(TokenAttention(token_size, num_heads, dropout) for _ in range(attention_layers))
        self.token_dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList(nn.Linear(token_size, k) for k in self.num_classes)
        if self.disease_head:
            others = sum(self.num_classes[:-1])
            self.disease = nn.Sequential(nn.Linear(others, token_size), nn.ReLU(), nn.Linear(token_size, self.num_classes[-1]))

    def routing_weights(self) -> torch.Tensor:
        """The ``(M, T)`` weights each modality has for each target (fixed: the matrix; learned: gates)."""
        if self.gate_logits is None:
            return self.routing
        return torch.sigmoid(self.gate_logits) * self.routing

    def attention_allowed(self) -> torch.Tensor | None:
        """``(T, T)``: target t may attend to s (fixed gating: when s's modalities are all routed to t)."""
        if self.gating != "fixed":
            return None
        routed = self.routing.T > 0  # (T, M)
        return torch.all(~routed[None, :, :] | routed[:, None, :], dim=-1)  # [t, s]: routed(s) within routed(t)

    def _pool(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial)`` -> ``(B, C)`` (global) or ``(B, 2C)`` (:func:`lesion_means`)."""
        if self.pooling == "global":
            return features.mean(tuple(range(2, features.ndim)))
        return lesion_means(features, mask)

    def explain(self, image: torch.Tensor, presence: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Logits ``(B, sum K)``, routing weights ``(M, T)`` and attention ``(layers, B, T, T)``."""
        m = self.routing.shape[0]
        if image.ndim != 5 or image.shape[1] != m + 1:
            raise ValueError(f"`image` must be (B, {m} modalities + 1 mask, *spatial 3D), got {tuple(image.shape)}")
        batch = image.shape[0]
        presence = image.new_ones(batch, m) if presence is None else presence.to(image.dtype).reshape(batch, m)
        mask = image[:, m:]
        features = []
        for i, stem in enumerate(self.stems):
            x = torch.cat([image[:, i : i + 1], mask], 1)
            if self.spatial_dims == 2:
                x = to_slices(x, self.num_slices)
            f = stem(x)
            features.append(f * presence[:, i].reshape(batch, *([1] * (f.ndim - 1))))
        weights = self.routing_weights()
        if self.spatial_dims == 2:
            mask = to_slices(mask, self.num_slices)[:, self.num_slices // 2 : self.num_slices // 2 + 1]
        tokens = []
        for t, branch in enumerate(self.branches):
            w = weights[:, t]
            routed = torch.cat([f * w[i] for i, f in enumerate(features)], 1)
            pooled = self._pool(branch(routed), mask)
            tokens.append(self.tokenizers[t](pooled) + self.presence_embedding[t](presence * w))
        h = self.token_dropout(torch.stack(tokens, 1) + self.target_embedding)
        allowed = self.attention_allowed()
        maps = []
        for block in self.attention:
            h, att = block(h, allowed)
            maps.append(att)
        logits = [head(h[:, t]) for t, head in enumerate(self.heads)]
        if self.disease_head:
            probabilities = torch.cat([torch.softmax(z, 1) for z in logits[:-1]], 1)
            logits[-1] = logits[-1] + self.disease(probabilities)
        attention = torch.stack(maps) if maps else image.new_zeros(0, batch, len(tokens), len(tokens))
        return {"logits": torch.cat(logits, 1), "routing": weights, "attention": attention}

    def forward(self, image: torch.Tensor, presence: torch.Tensor | None = None) -> torch.Tensor:
        """``image (B, M + 1, *spatial)``, ``presence (B, M)`` -> logits ``(B, sum(num_classes))``."""
        return self.explain(image, presence)["logits"]

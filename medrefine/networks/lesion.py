"""Lesion classifiers by name: one config key (``network_name``) for every option.

:func:`build_lesion_classifier` turns a name into a module taking ``image (B, M + 1, *spatial)``
(M modality channels, then the lesion mask) and ``presence (B, M)``, returning the logits of all
targets concatenated, ``(B, sum(num_classes))``:

* ``"resnet18"``, ``"resnet34"``: :class:`monai.networks.nets.ResNet` (basic blocks, 2-2-2-2 or
  3-4-6-3), early fusion (all modalities and the mask as channels);
* ``"densenet121"``: :class:`monai.networks.nets.DenseNet121`, early fusion;
* ``"crn"``: :class:`~medrefine.networks.crn.CorrelationRoutingNetwork` (per-modality stems,
  routing matrix, target tokens with self-attention).

``spatial="2.5d"`` builds the 2D form of any of them on the ``num_slices`` central axial slices
(the seed's input). The MONAI backbones end in a feature vector of ``feature_size``; one linear
head per target reads it together with the presence flags (:class:`MultiTargetClassifier`,
which MONAI lacks: its classifiers have one head). ``widen_factor`` scales every width, so a
tiny network for CPU runs is the same architecture.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medrefine.errors import did_you_mean
from medrefine.networks.crn import NORMS, CorrelationRoutingNetwork, lesion_means, norm_layer, to_slices
from medrefine.networks.describe import records_init_args

__all__ = ["LESION_NETWORKS", "LesionPool", "MultiTargetClassifier", "build_lesion_classifier", "split_logits"]

LESION_NETWORKS = ("resnet18", "resnet34", "densenet121", "crn")
_RESNET_LAYERS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}


def split_logits(logits: torch.Tensor, num_classes: Sequence[int]) -> list[torch.Tensor]:
    """``(B, sum K)`` -> one ``(B, K_t)`` tensor per target.

    Raises:
        ValueError: the channel count is not ``sum(num_classes)``.
    """
    if logits.ndim != 2 or logits.shape[1] != sum(num_classes):
        raise ValueError(f"`logits` must be (B, {sum(num_classes)}) for classes {list(num_classes)}, got {tuple(logits.shape)}")
    return list(torch.split(logits, [int(k) for k in num_classes], dim=1))


class LesionPool(nn.Module):
    """Replaces a backbone's global average pool: ``(B, C, *spatial)`` -> ``(B, 2C, 1, ...)``, the
    means inside the lesion mask and over the rest (:func:`~medrefine.networks.crn.lesion_means`).
    The owner sets :attr:`mask` (``(B, 1, *input spatial)``) before each forward of the backbone."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            raise RuntimeError("LesionPool needs its `mask` set by the classifier before the backbone runs")
        return lesion_means(features, self.mask).reshape(features.shape[0], -1, *([1] * (features.ndim - 2)))


class MultiTargetClassifier(nn.Module):
    """An early-fusion backbone with one linear head per target, fed features and presence flags.

    Args:
        backbone: module ``(B, C, *spatial) -> (B, feature_size)``.
        feature_size: the backbone's output size.
        num_modalities: M (presence flags).
        num_classes: classes per target.
        num_slices: 0 for 3D; else the input is cut to that many central slices (2.5D).
    """

    def __init__(self, backbone: nn.Module, feature_size: int, num_modalities: int, num_classes: Sequence[int],
                 num_slices: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_modalities = int(num_modalities)
        self.num_classes = [int(k) for k in num_classes]
        self.num_slices = int(num_slices)
        self.heads = nn.ModuleList(nn.Linear(feature_size + self.num_modalities, k) for k in self.num_classes)

    def forward(self, image: torch.Tensor, presence: torch.Tensor | None = None) -> torch.Tensor:
        """``image (B, M + 1, *spatial)``, ``presence (B, M)`` -> ``(B, sum(num_classes))``."""
        if image.ndim != 5 or image.shape[1] != self.num_modalities + 1:
            raise ValueError(f"`image` must be (B, {self.num_modalities} modalities + 1 mask, H, W, D), got {tuple(image.shape)}")
        batch = image.shape[0]
        presence = image.new_ones(batch, self.num_modalities) if presence is None else presence.to(image.dtype)
        x = to_slices(image, self.num_slices) if self.num_slices else image
        pool = getattr(self.backbone, "avgpool", None)
        if isinstance(pool, LesionPool):
            mask = image[:, -1:]
            pool.mask = to_slices(mask, self.num_slices)[:, self.num_slices // 2 :][:, :1] if self.num_slices else mask
        try:
            features = torch.cat([torch.relu(self.backbone(x)), presence.reshape(batch, -1)], 1)
        finally:
            if isinstance(pool, LesionPool):
                pool.mask = None
        return torch.cat([head(features) for head in self.heads], 1)


def _batch_to_group_norm(module: nn.Module) -> None:
    """Replace every BatchNorm of ``module`` in place by a GroupNorm over as many channels (up to 8 groups)."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            kind, args = norm_layer("group", [child.num_features])
            setattr(module, name, nn.GroupNorm(args["num_groups"], child.num_features, eps=child.eps, affine=child.affine))
        else:
            _batch_to_group_norm(child)


@records_init_args("medrefine.networks.lesion.build_lesion_classifier")
def build_lesion_classifier(
    name: str,
    num_modalities: int,
    num_classes: Sequence[int],
    *,
    spatial: str = "3d",
    num_slices: int = 5,
    widen_factor: float = 1.0,
    feature_size: int = 128,
    routing: Sequence[Sequence[float]] | None = None,
    gating: str = "fixed",
    disease_head: bool = False,
    num_heads: int = 4,
    dropout: float = 0.0,
    pooling: str = "lesion",
    norm: str = "batch",
) -> nn.Module:
    """Build a lesion classifier by name (see the module docstring).

    Args:
        name: one of :data:`LESION_NETWORKS`.
        num_modalities: M, the modality channels (the mask is one more).
        num_classes: classes per target.
        spatial: ``"3d"`` or ``"2.5d"``.
        num_slices: central slices of the 2.5D form. Default 5.
        widen_factor: width multiplier of every layer. Default 1 (the published widths).
        feature_size: early fusion: backbone feature size read by the heads. Default 128.
        routing: CRN: ``(M, T)`` 0/1 routing matrix; default all ones.
        gating: CRN: ``"fixed"`` or ``"learned"``.
        disease_head: CRN: last target also predicted from the others' probabilities.
        num_heads: CRN: attention heads.
        dropout: dropout rate (CRN tokens/attention; DenseNet layers).
        pooling: CRN and ResNets: ``"lesion"`` (the last features averaged inside the lesion mask and
            around it, separately) or ``"global"`` (MONAI's global average pool). DenseNet: global.
        norm: ``"batch"`` (default, the published networks) or ``"group"`` (GroupNorm, up to 8
            groups: no batch statistics, so a step on several processes without synchronised
            BatchNorm, e.g. on CPU, or with one lesion per GPU, is the one-process step).

    Returns:
        The module (it carries ``init_args``, so ``model.json`` describes it).

    Raises:
        ValueError: unknown name (did-you-mean) or option.

    Example:
        >>> net = build_lesion_classifier("resnet18", 4, [3, 2], widen_factor=0.25)
        >>> net(torch.zeros(2, 5, 16, 16, 16), torch.ones(2, 4)).shape
        torch.Size([2, 5])
    """
    from monai.networks.nets import DenseNet121, ResNet
    from monai.networks.nets.resnet import get_inplanes

    if name not in LESION_NETWORKS:
        raise ValueError(f"`name` must be one of {list(LESION_NETWORKS)}, got {name!r}.{did_you_mean(name, LESION_NETWORKS)}")
    if spatial not in ("3d", "2.5d"):
        raise ValueError(f"`spatial` must be '3d' or '2.5d', got {spatial!r}.{did_you_mean(spatial, ('3d', '2.5d'))}")
    if pooling not in ("lesion", "global"):
        raise ValueError(f"`pooling` must be 'lesion' or 'global', got {pooling!r}.{did_you_mean(str(pooling), ('lesion', 'global'))}")
    if norm not in NORMS:
        raise ValueError(f"`norm` must be one of {list(NORMS)}, got {norm!r}.{did_you_mean(str(norm), NORMS)}")
    if not widen_factor > 0:
        raise ValueError(f"`widen_factor` must be > 0, got {widen_factor!r}")
    dims = 3 if spatial == "3d" else 2
    slices = int(num_slices) if dims == 2 else 0
    if name == "crn":
        width = max(4, int(round(16 * widen_factor)))
        return CorrelationRoutingNetwork(
            num_modalities, num_classes, routing=routing, gating=gating, spatial_dims=dims, num_slices=int(num_slices),
            stem_channels=width, branch_channels=2 * width, token_size=max(num_heads, 4 * width) // num_heads * num_heads,
            num_heads=num_heads, disease_head=disease_head, dropout=dropout, pooling=pooling, norm=norm,
        )
    in_channels = (num_modalities + 1) * (slices or 1)
    if name in _RESNET_LAYERS:
        backbone = ResNet("basic", _RESNET_LAYERS[name], get_inplanes(), spatial_dims=dims, n_input_channels=in_channels,
                          conv1_t_size=3, conv1_t_stride=1, no_max_pool=True, widen_factor=widen_factor,
                          num_classes=feature_size)
        if norm == "group":  # MONAI 1.6's ResNet hands ``norm`` to its stem only, not to its blocks: swap them all
            _batch_to_group_norm(backbone)
        if pooling == "lesion":  # read the lesion against its surround, as the CRN does
            backbone.avgpool = LesionPool()
            backbone.fc = nn.Linear(2 * backbone.fc.in_features, feature_size)
    else:
        init, growth = max(8, int(64 * widen_factor)), max(4, int(32 * widen_factor))
        backbone = DenseNet121(spatial_dims=dims, in_channels=in_channels, out_channels=feature_size,
                               init_features=init, growth_rate=growth, dropout_prob=dropout,
                               norm=norm_layer(norm, [init, growth]))
    return MultiTargetClassifier(backbone, feature_size, num_modalities, num_classes, num_slices=slices)

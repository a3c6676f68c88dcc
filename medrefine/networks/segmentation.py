"""Segmentation networks by name, built from MONAI's: the one factory every bundle uses.

:func:`build_segmentation_network` is the only place medrefine turns a network name into a torch
module (the multi-organ and the point-supervision bundles both call it), so a name means the same
architecture, with the same normalisation, everywhere. MONAI has all the architectures; nothing is
written by hand here. The names say the architecture *and how it sees a 3D volume*:

* ``"unet"``: :class:`monai.networks.nets.UNet` (residual units, strided convolutions), volumetric
  (``spatial_dims`` 3; pass 2 for genuinely 2D images).
* ``"attention_unet"``: :class:`monai.networks.nets.AttentionUnet` (Oktay et al., 2018), volumetric.
  MONAI builds it with batch normalisation and no option to change it; with a batch size of 1
  (PA-Seg), batch statistics in training and running averages in evaluation disagree (on a 32^3
  blob: evaluation Dice 0.93 with batch norm, 0.96 with instance norm after the same 40 steps), so
  under the default ``norm="instance"`` its batch-norm layers are swapped for affine instance norm.
  In our runs it also collapsed to all-background when trained on expanded seeds with PA-Seg's
  learning rate of 1e-2 (U-Net and 2.5D U-Net did not); use 1e-3 for it.
* ``"unet2d"``: the 2D :class:`~monai.networks.nets.UNet` (same layers as ``"unet"``), meant to be
  trained on single slices and applied slice by slice to a volume (the multi-organ bundle pairs
  it with :class:`monai.inferers.SliceInferer`); ``spatial_dims`` is 2.
* ``"unet2.5d"``: :class:`monai.networks.nets.DynUNet` with in-plane (2D) kernels ``3 x 3 x 1`` in
  the first two levels and ``3 x 3 x 3`` below, 2x down-sampling on every axis, instance norm and
  leaky ReLU (0.01), 16 base features: the layout of PA-Seg's ``U_Net2D5`` (Zhai et al., IEEE TMI
  2023, after Wang et al., MICCAI 2019) for images with thick slices along ``slice_axis``.
  Differences: DynUNet up-samples with transposed convolutions (PA-Seg: trilinear interpolation),
  and its levels use the kernel of the level for the strided convolution that replaces max pooling.

Normalisation policy: ``norm="instance"`` (the default, for every name and every bundle) or
``"batch"``. Instance norm is MONAI's own ``Norm.INSTANCE`` for the U-Nets (no affine parameters,
MONAI's default) and affine instance norm for DynUNet and in place of the Attention U-Net's batch
norm (as trained so far).
``"batch"`` for the Attention U-Net is MONAI's network as built (batch norm, except the instance
norm MONAI itself puts in the convolutions that merge skip and up-sampled features).

The names of wave 1's multi-organ factory, ``"unet3d"`` and ``"attention_unet3d"``, still build
``"unet"`` and ``"attention_unet"`` with a :class:`DeprecationWarning` naming the new name (the
old ``"attention_unet3d"`` had batch norm; pass ``norm="batch"`` for that network).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

from torch import nn

from medrefine.errors import did_you_mean
from medrefine.networks.describe import records_init_args

__all__ = [
    "DEPRECATED_NETWORK_NAMES",
    "NORMS",
    "SEGMENTATION_NETWORKS",
    "build_segmentation_network",
    "network_spatial_dims",
    "resolve_network_name",
]

logger = logging.getLogger(__name__)

SEGMENTATION_NETWORKS = ("unet", "attention_unet", "unet2d", "unet2.5d")
DEPRECATED_NETWORK_NAMES = {"unet3d": "unet", "attention_unet3d": "attention_unet"}
NORMS = ("instance", "batch")

_DEFAULT_CHANNELS = {
    "unet2.5d": (16, 32, 64, 128, 128),
    "unet": (16, 32, 64, 128, 256),
    "unet2d": (16, 32, 64, 128, 256),
    "attention_unet": (16, 32, 64, 128, 256),
}
_SPATIAL_DIMS = {"unet": (3, 2), "attention_unet": (3, 2), "unet2d": (2,), "unet2.5d": (3,)}  # default first


def _check_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return value


def resolve_network_name(name: str, argument: str = "name") -> str:
    """The current name of a segmentation network: ``name`` itself, or the new name of an old one.

    Args:
        name: one of :data:`SEGMENTATION_NETWORKS`, or a deprecated name of
            :data:`DEPRECATED_NETWORK_NAMES` (``"unet3d"``, ``"attention_unet3d"``), which is
            mapped to its new name with a :class:`DeprecationWarning` and a logged warning.
        argument: the argument or config key named in messages. Default ``"name"``.

    Returns:
        The current name.

    Raises:
        ValueError: an unknown name (with a did-you-mean).

    Example:
        >>> resolve_network_name("unet")
        'unet'
    """
    if name in DEPRECATED_NETWORK_NAMES:
        new = DEPRECATED_NETWORK_NAMES[name]
        message = f"`{argument}` {name!r} is deprecated; use {new!r} (the same network)"
        warnings.warn(message, DeprecationWarning, stacklevel=3)
        logger.warning(message)
        return new
    if name not in SEGMENTATION_NETWORKS:
        raise ValueError(
            f"`{argument}` must be one of {', '.join(SEGMENTATION_NETWORKS)}, got {name!r}."
            + did_you_mean(str(name), SEGMENTATION_NETWORKS + tuple(DEPRECATED_NETWORK_NAMES))
        )
    return name


def network_spatial_dims(name: str) -> int:
    """Spatial dimensions the network ``name`` works in by default: 2 for ``"unet2d"``, else 3."""
    return _SPATIAL_DIMS[resolve_network_name(name)][0]


@records_init_args("medrefine.networks.build_segmentation_network")
def build_segmentation_network(
    name: str,
    spatial_dims: int | None = None,
    in_channels: int = 1,
    out_channels: int = 2,
    *,
    channels: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
    num_res_units: int = 2,
    dropout: float = 0.0,
    norm: str = "instance",
    slice_axis: int = 2,
    num_2d_levels: int = 2,
) -> nn.Module:
    """Build a segmentation network by name from MONAI's networks (see the module docstring).

    Args:
        name: ``"unet"`` (MONAI UNet), ``"attention_unet"`` (MONAI AttentionUnet), ``"unet2d"``
            (2D MONAI UNet for slice-by-slice use) or ``"unet2.5d"`` (DynUNet with in-plane kernels
            in the first levels). Deprecated: ``"unet3d"``, ``"attention_unet3d"``.
        spatial_dims: 2 or 3; ``None`` (default) takes the name's: 2 for ``"unet2d"``, 3 otherwise.
            ``"unet"`` and ``"attention_unet"`` accept 2 (2D images); ``"unet2d"`` only 2,
            ``"unet2.5d"`` only 3.
        in_channels: input channels. Default 1.
        out_channels: output channels (classes, background included, or one per structure). Default 2.
        channels: features per level, the first the full-resolution one. Default
            ``(16, 32, 64, 128, 128)`` for ``"unet2.5d"`` (PA-Seg) and ``(16, 32, 64, 128, 256)``
            otherwise.
        strides: down-sampling factor between consecutive levels, ``len(channels) - 1`` integers;
            every spatial size must be divisible by their product. Default 2 everywhere.
        num_res_units: ``"unet"``/``"unet2d"`` only: residual units per level. Default 2.
        dropout: dropout probability. Default 0.
        norm: ``"instance"`` (default) or ``"batch"``, for every network (see the module docstring).
        slice_axis: ``"unet2.5d"`` only: the spatial axis (0, 1 or 2) with thick slices, which the
            first ``num_2d_levels`` levels do not convolve along. Default 2 (the last: ``(X, Y, Z)``
            with slices along Z, as PA-Seg's 128 x 128 x 48 VS crops).
        num_2d_levels: ``"unet2.5d"`` only: how many levels use in-plane kernels. Default 2.

    Returns:
        A ``torch.nn.Module`` mapping ``(B, in_channels, *spatial)`` to logits
        ``(B, out_channels, *spatial)``.

    Raises:
        ValueError: an unknown ``name`` or ``norm`` (with a did-you-mean), bad sizes or axes.

    Example:
        >>> net = build_segmentation_network("unet2.5d", in_channels=1, out_channels=2)
        >>> net(torch.zeros(1, 1, 32, 32, 16)).shape
        torch.Size([1, 2, 32, 32, 16])
    """
    name = resolve_network_name(name)
    allowed = _SPATIAL_DIMS[name]
    if spatial_dims is None:
        spatial_dims = allowed[0]
    if spatial_dims not in allowed:
        expected = " or ".join(map(str, allowed))
        why = {"unet2.5d": " (2D kernels inside a 3D network)", "unet2d": " (a 2D network applied slice by slice)"}
        raise ValueError(f"`spatial_dims` must be {expected} for {name!r}{why.get(name, '')}, got {spatial_dims!r}")
    _check_int(in_channels, "in_channels", 1)
    _check_int(out_channels, "out_channels", 1)
    if norm not in NORMS:
        raise ValueError(f"`norm` must be one of {', '.join(NORMS)}, got {norm!r}." + did_you_mean(str(norm), NORMS))
    features = tuple(_DEFAULT_CHANNELS[name] if channels is None else channels)
    if len(features) < 2 or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in features):
        raise ValueError(f"`channels` must hold at least 2 positive integers, got {channels!r}")
    steps = (2,) * (len(features) - 1) if strides is None else tuple(strides)
    if len(steps) != len(features) - 1 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in steps):
        raise ValueError(
            f"`strides` must hold len(channels) - 1 = {len(features) - 1} positive integers, got {strides!r}"
        )
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}")

    if name == "unet2.5d":
        from monai.networks.nets import DynUNet

        if slice_axis not in (0, 1, 2):
            raise ValueError(f"`slice_axis` must be 0, 1 or 2, got {slice_axis!r}")
        _check_int(num_2d_levels, "num_2d_levels", 0)
        if num_2d_levels > len(features):
            raise ValueError(f"`num_2d_levels` must be at most len(channels) = {len(features)}, got {num_2d_levels}")
        in_plane = tuple(1 if axis == slice_axis else 3 for axis in range(3))
        kernels = [in_plane] * num_2d_levels + [(3, 3, 3)] * (len(features) - num_2d_levels)
        return DynUNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=kernels,
            strides=[1, *steps],
            upsample_kernel_size=list(steps),
            filters=list(features),
            dropout=float(dropout) or None,
            norm_name=("instance", {"affine": True}) if norm == "instance" else "batch",
            act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
            res_block=False,
        )
    shared = {"spatial_dims": spatial_dims, "in_channels": in_channels, "out_channels": out_channels,
              "channels": features, "strides": steps, "dropout": float(dropout)}
    if name in ("unet", "unet2d"):
        from monai.networks.nets import UNet

        _check_int(num_res_units, "num_res_units", 0)
        return UNet(**shared, num_res_units=num_res_units, norm=norm)
    from monai.networks.nets import AttentionUnet

    net = AttentionUnet(**shared)
    return _batch_to_instance_norm(net) if norm == "instance" else net


def _batch_to_instance_norm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm{1,2,3}d`` of ``module`` (in place) by an affine ``InstanceNorm`` of the same size."""
    kinds = {nn.BatchNorm1d: nn.InstanceNorm1d, nn.BatchNorm2d: nn.InstanceNorm2d, nn.BatchNorm3d: nn.InstanceNorm3d}
    for name, child in module.named_children():
        swap = kinds.get(type(child))
        if swap is not None:
            setattr(module, name, swap(child.num_features, eps=child.eps, affine=True))
        else:
            _batch_to_instance_norm(child)
    return module

"""The segmentation networks of PA-Seg, built from MONAI's: 2.5D U-Net, U-Net, Attention U-Net.

PA-Seg (Zhai et al., IEEE TMI 2023) trains three backbones, ``U_Net2D5``, ``U_Net`` and
``AttU_Net``. MONAI has all three kinds, so nothing is written by hand here; this module only
picks and configures them under one call, with PA-Seg's sizes as defaults:

* ``"unet2.5d"``: :class:`monai.networks.nets.DynUNet` with in-plane (2D) kernels ``3 x 3 x 1`` in
  the first two levels and ``3 x 3 x 3`` below, 2x down-sampling on every axis, instance norm and
  leaky ReLU (0.01), 16 base features: the layout of PA-Seg's ``U_Net2D5`` (after Wang et al.,
  MICCAI 2019) for images with thick slices along ``slice_axis``. Differences: DynUNet
  up-samples with transposed convolutions (PA-Seg: trilinear interpolation), and its levels use
  the kernel of the level for the strided convolution that replaces max pooling.
* ``"unet"``: :class:`monai.networks.nets.UNet` (residual units, strided convolutions).
* ``"attention_unet"``: :class:`monai.networks.nets.AttentionUnet` (Oktay et al., 2018). MONAI
  builds it with batch normalisation and no option to change it; with PA-Seg's batch size of 1,
  batch statistics in training and running averages in evaluation disagree (on a 32^3 blob:
  evaluation Dice 0.93 with batch norm, 0.96 with instance norm after the same 40 steps), so its
  batch-norm layers are swapped for instance norm (``norm="instance"``, the default).
  In our runs it also collapsed to all-background when trained on expanded seeds with PA-Seg's
  learning rate of 1e-2 (U-Net and 2.5D U-Net did not); use 1e-3 for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from medrefine.errors import did_you_mean
from medrefine.networks.describe import records_init_args

__all__ = ["SEGMENTATION_NETWORKS", "build_segmentation_network"]

SEGMENTATION_NETWORKS = ("unet2.5d", "unet", "attention_unet")

_DEFAULT_CHANNELS = {
    "unet2.5d": (16, 32, 64, 128, 128),
    "unet": (16, 32, 64, 128, 256),
    "attention_unet": (16, 32, 64, 128, 256),
}


def _check_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return value


@records_init_args("medrefine.networks.build_segmentation_network")
def build_segmentation_network(
    name: str,
    spatial_dims: int = 3,
    in_channels: int = 1,
    out_channels: int = 2,
    *,
    channels: Sequence[int] | None = None,
    slice_axis: int = 2,
    num_2d_levels: int = 2,
    dropout: float = 0.0,
    num_res_units: int = 2,
    norm: str = "instance",
) -> nn.Module:
    """Build one of PA-Seg's segmentation backbones from MONAI's networks.

    Args:
        name: ``"unet2.5d"`` (DynUNet with in-plane kernels in the first levels), ``"unet"`` (MONAI
            UNet) or ``"attention_unet"`` (MONAI AttentionUnet).
        spatial_dims: 2 or 3 (``"unet2.5d"``: 3 only). Default 3.
        in_channels: input channels. Default 1.
        out_channels: output channels (classes, background included). Default 2.
        channels: features per level, the first the full-resolution one; the input is down-sampled
            ``len(channels) - 1`` times by 2, so every spatial size must be divisible by
            ``2 ** (len(channels) - 1)``. Default ``(16, 32, 64, 128, 128)`` for ``"unet2.5d"``
            (PA-Seg) and ``(16, 32, 64, 128, 256)`` otherwise.
        slice_axis: ``"unet2.5d"`` only: the spatial axis (0, 1 or 2) with thick slices, which the
            first ``num_2d_levels`` levels do not convolve along. Default 2 (the last: ``(X, Y, Z)``
            with slices along Z, as PA-Seg's 128 x 128 x 48 VS crops).
        num_2d_levels: ``"unet2.5d"`` only: how many levels use in-plane kernels. Default 2.
        dropout: dropout probability. Default 0.
        num_res_units: ``"unet"`` only: residual units per level. Default 2.
        norm: ``"attention_unet"`` only: ``"instance"`` (default; MONAI's batch-norm layers swapped for
            affine instance norm) or ``"batch"`` (MONAI's network as built).

    Returns:
        A ``torch.nn.Module`` mapping ``(B, in_channels, *spatial)`` to logits
        ``(B, out_channels, *spatial)``.

    Raises:
        ValueError: an unknown ``name`` (with a did-you-mean), bad sizes or axes.

    Example:
        >>> net = build_segmentation_network("unet2.5d", in_channels=1, out_channels=2)
        >>> net(torch.zeros(1, 1, 32, 32, 16)).shape
        torch.Size([1, 2, 32, 32, 16])
    """
    if name not in SEGMENTATION_NETWORKS:
        raise ValueError(
            f"`name` must be one of {', '.join(SEGMENTATION_NETWORKS)}, got {name!r}." + did_you_mean(str(name), SEGMENTATION_NETWORKS)
        )
    if spatial_dims not in (2, 3):
        raise ValueError(f"`spatial_dims` must be 2 or 3, got {spatial_dims!r}")
    _check_int(in_channels, "in_channels", 1)
    _check_int(out_channels, "out_channels", 1)
    features = tuple(_DEFAULT_CHANNELS[name] if channels is None else channels)
    if len(features) < 2 or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in features):
        raise ValueError(f"`channels` must hold at least 2 positive integers, got {channels!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}")
    strides = (2,) * (len(features) - 1)

    if name == "unet2.5d":
        from monai.networks.nets import DynUNet

        if spatial_dims != 3:
            raise ValueError(f"`spatial_dims` must be 3 for 'unet2.5d' (2D kernels inside a 3D network), got {spatial_dims}")
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
            strides=[1, *strides],
            upsample_kernel_size=list(strides),
            filters=list(features),
            dropout=float(dropout) or None,
            norm_name=("instance", {"affine": True}),
            act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
            res_block=False,
        )
    if name == "unet":
        from monai.networks.nets import UNet

        _check_int(num_res_units, "num_res_units", 0)
        return UNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=features,
            strides=strides,
            num_res_units=num_res_units,
            norm="instance",
            dropout=float(dropout),
        )
    from monai.networks.nets import AttentionUnet

    if norm not in ("instance", "batch"):
        raise ValueError(f"`norm` must be 'instance' or 'batch', got {norm!r}")
    net = AttentionUnet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=features,
        strides=strides,
        dropout=float(dropout),
    )
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

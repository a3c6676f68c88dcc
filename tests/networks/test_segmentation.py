"""Tests of medrefine.networks.segmentation.build_segmentation_network, the one network factory (tiny sizes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medrefine.networks.segmentation import (
    DEPRECATED_NETWORK_NAMES,
    SEGMENTATION_NETWORKS,
    build_segmentation_network,
    network_spatial_dims,
    resolve_network_name,
)

SMALL = (4, 8, 8)  # two down-samplings: spatial sizes divisible by 4


@pytest.mark.parametrize("name", ["unet2.5d", "unet", "attention_unet"])
def test_output_shape_and_gradient_3d(name):
    net = build_segmentation_network(name, in_channels=2, out_channels=3, channels=SMALL)
    x = torch.randn(1, 2, 16, 12, 8)
    y = net(x)
    assert y.shape == (1, 3, 16, 12, 8)
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ["unet", "attention_unet"])
def test_2d(name):
    net = build_segmentation_network(name, spatial_dims=2, channels=SMALL)
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 2, 16, 16)


@pytest.mark.parametrize("name", SEGMENTATION_NETWORKS)
def test_every_name_builds_and_runs_in_its_own_dimensions(name):
    """Every name builds with the defaults except the sizes and maps (B, C_in, *spatial) to (B, C_out, *spatial)."""
    dims = network_spatial_dims(name)
    assert dims == (2 if name == "unet2d" else 3)
    net = build_segmentation_network(name, in_channels=1, out_channels=4, channels=SMALL)
    spatial = (16, 12, 8)[:dims]
    with torch.no_grad():
        assert net.eval()(torch.randn(2, 1, *spatial)).shape == (2, 4, *spatial)


def test_unet2d_is_the_2d_unet():
    """``unet2d`` is the U-Net's layers in 2D (the slice-wise network of the multi-organ bundle)."""
    a = build_segmentation_network("unet2d", channels=SMALL)
    b = build_segmentation_network("unet", spatial_dims=2, channels=SMALL)
    assert [type(m) for m in a.modules()] == [type(m) for m in b.modules()]
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def _parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _layers(net: nn.Module) -> list[str]:
    return [type(m).__name__ for m in net.modules()]


@pytest.mark.parametrize("old, new", sorted(DEPRECATED_NETWORK_NAMES.items()))
def test_old_names_build_the_new_network_with_a_warning(old, new, caplog):
    with pytest.warns(DeprecationWarning, match=f"`name` '{old}' is deprecated; use '{new}'"):
        before = build_segmentation_network(old, out_channels=3, channels=SMALL)
    assert f"use '{new}'" in caplog.text
    after = build_segmentation_network(new, out_channels=3, channels=SMALL)
    assert _parameter_count(before) == _parameter_count(after) > 0
    assert _layers(before) == _layers(after)
    assert {k: v.shape for k, v in before.state_dict().items()} == {k: v.shape for k, v in after.state_dict().items()}


def test_resolve_network_name_names_the_config_key():
    assert resolve_network_name("unet2.5d") == "unet2.5d"
    with pytest.warns(DeprecationWarning, match="`network_name` 'unet3d' is deprecated; use 'unet'"):
        assert resolve_network_name("unet3d", "network_name") == "unet"
    with pytest.raises(ValueError, match=r"`network_name` must be one of .* got 'unet_3d'. Did you mean 'unet3d'\?"):
        resolve_network_name("unet_3d", "network_name")


def _norm_kinds(net: nn.Module) -> set[str]:
    return {type(m).__name__ for m in net.modules() if "Norm" in type(m).__name__}


@pytest.mark.parametrize("name", SEGMENTATION_NETWORKS)
def test_norm_policy_instance_by_default_batch_on_request(name):
    """One policy for all names: instance norm by default (every bundle), batch norm with ``norm="batch"``."""
    dims = network_spatial_dims(name)
    default = build_segmentation_network(name, channels=SMALL)
    assert _norm_kinds(default) == {f"InstanceNorm{dims}d"}
    batch = _norm_kinds(build_segmentation_network(name, channels=SMALL, norm="batch"))
    # "batch" for the Attention U-Net is MONAI's network as built: its merge convolutions keep MONAI's instance norm
    assert batch == ({f"BatchNorm{dims}d", f"InstanceNorm{dims}d"} if name == "attention_unet" else {f"BatchNorm{dims}d"})


def test_norm_affine_as_trained():
    """MONAI's instance norm has no affine parameters; DynUNet's and the layers swapped for batch norm have."""
    def affine(name):
        return {m.affine for m in build_segmentation_network(name, channels=SMALL).modules()
                if isinstance(m, (nn.InstanceNorm2d, nn.InstanceNorm3d))}

    assert affine("unet") == affine("unet2d") == {False}
    assert affine("unet2.5d") == {True}
    assert affine("attention_unet") == {True, False}  # swapped batch norm: affine; MONAI's merge convolutions: not


def test_strides():
    net = build_segmentation_network("unet", channels=SMALL, strides=(2, 1))
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 1, 6, 6, 6)).shape == (1, 2, 6, 6, 6)
    with pytest.raises(ValueError, match=r"`strides` must hold len\(channels\) - 1 = 2 positive integers, got \(2,\)"):
        build_segmentation_network("unet", channels=SMALL, strides=(2,))


@pytest.mark.parametrize("slice_axis", [0, 2])
def test_unet25d_in_plane_kernels(slice_axis):
    net = build_segmentation_network("unet2.5d", channels=SMALL, slice_axis=slice_axis, num_2d_levels=2)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv3d)]
    first = tuple(convs[0].kernel_size)
    expected = tuple(1 if axis == slice_axis else 3 for axis in range(3))
    assert first == expected
    assert any(tuple(c.kernel_size) == (3, 3, 3) for c in convs)
    assert any(isinstance(m, nn.InstanceNorm3d) for m in net.modules())


def test_pa_seg_defaults():
    net = build_segmentation_network("unet2.5d")
    assert list(net.filters) == [16, 32, 64, 128, 128]
    with torch.no_grad():
        assert net.eval()(torch.zeros(1, 1, 32, 32, 16)).shape == (1, 2, 32, 32, 16)


def test_errors():
    with pytest.raises(ValueError, match=r"`name` must be one of .* got 'unet25d'. Did you mean 'unet2.5d'\?"):
        build_segmentation_network("unet25d")
    with pytest.raises(ValueError, match="`spatial_dims` must be 3 for 'unet2.5d'"):
        build_segmentation_network("unet2.5d", spatial_dims=2)
    with pytest.raises(ValueError, match="`slice_axis` must be 0, 1 or 2, got 3"):
        build_segmentation_network("unet2.5d", slice_axis=3)
    with pytest.raises(ValueError, match=r"`channels` must hold at least 2 positive integers, got \(8,\)"):
        build_segmentation_network("unet", channels=(8,))
    with pytest.raises(ValueError, match="`in_channels` must be an integer >= 1, got 0"):
        build_segmentation_network("unet", in_channels=0)
    with pytest.raises(ValueError, match=r"`spatial_dims` must be 2 for 'unet2d' .* got 3"):
        build_segmentation_network("unet2d", spatial_dims=3)
    with pytest.raises(ValueError, match=r"`norm` must be one of instance, batch, got 'instnace'. Did you mean 'instance'\?"):
        build_segmentation_network("unet", norm="instnace")


def test_attention_unet_uses_instance_norm_by_default():
    import torch

    from medrefine.networks.segmentation import (
    DEPRECATED_NETWORK_NAMES,
    SEGMENTATION_NETWORKS,
    build_segmentation_network,
    network_spatial_dims,
    resolve_network_name,
)

    def kinds(net):
        return {type(m).__name__ for m in net.modules() if "Norm" in type(m).__name__}

    net = build_segmentation_network("attention_unet", out_channels=2, channels=[4, 8, 16])
    assert kinds(net) == {"InstanceNorm3d"}
    assert "BatchNorm3d" in kinds(build_segmentation_network("attention_unet", channels=[4, 8, 16], norm="batch"))
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        train_out = net.train()(x)
        eval_out = net.eval()(x)
    # instance norm: evaluation normalises with the input's own statistics, exactly as training does
    assert torch.allclose(train_out, eval_out, atol=1e-5)
    batch = build_segmentation_network("attention_unet", channels=[4, 8, 16], norm="batch")
    with torch.no_grad():
        assert not torch.allclose(batch.train()(x), batch.eval()(x), atol=1e-3)

"""Tests of medrefine.networks.segmentation.build_segmentation_network (tiny sizes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medrefine.networks.segmentation import build_segmentation_network

SMALL = (4, 8, 8)  # two down-samplings: spatial sizes divisible by 4


@pytest.mark.parametrize("name", ["unet2.5d", "unet", "attention_unet"])
def test_output_shape_and_gradient(name):
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


def test_attention_unet_uses_instance_norm_by_default():
    import torch

    from medrefine.networks.segmentation import build_segmentation_network

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

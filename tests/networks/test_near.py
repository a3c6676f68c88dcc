"""Tests of medrefine.networks.near (NeAR auto-decoder)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medrefine.networks import (
    ImplicitRefiner,
    LatentUpsample,
    grid_points,
    interpolation_matrix,
    jittered_grid_points,
    sample_labels,
    sample_volume,
)

SMALL = {"latent_dim": 8, "grid_channels": (6, 4), "grid_sizes": (2, 4), "hidden_channels": (16, 8)}


def _net(**kw) -> ImplicitRefiner:
    torch.manual_seed(0)
    args = dict(num_cases=3, out_channels=4, **SMALL)
    args.update(kw)
    return ImplicitRefiner(**args)


# -- points ---------------------------------------------------------------------------------


def test_grid_points_order_and_range():
    pts = grid_points((2, 3, 4))
    assert pts.shape == (24, 3)
    assert pts.min() == -1 and pts.max() == 1
    # row n is voxel unravel_index(n, (2, 3, 4)); x runs along the last axis
    assert pts[1].tolist() == pytest.approx([-1 + 2 / 3, -1.0, -1.0])
    assert pts[4].tolist() == pytest.approx([-1.0, 0.0, -1.0])
    assert pts[12].tolist() == pytest.approx([-1.0, -1.0, 1.0])
    assert grid_points((1, 1, 1)).tolist() == [[0.0, 0.0, 0.0]]


def test_sampling_at_grid_points_reproduces_volume():
    vol = torch.randn(2, 3, 4, 5, 6)
    lab = torch.randint(0, 7, (2, 4, 5, 6))
    pts = grid_points((4, 5, 6)).unsqueeze(0).expand(2, -1, -1)
    sampled = sample_volume(vol, pts)  # (B, N, C)
    torch.testing.assert_close(sampled.transpose(1, 2).reshape(vol.shape), vol, atol=1e-5, rtol=1e-5)
    assert torch.equal(sample_labels(lab, pts).view(lab.shape), lab)


def test_jittered_points_bounded_and_replayable():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = jittered_grid_points(2, (5, 5, 5), jitter=0.5, generator=g1)
    b = jittered_grid_points(2, (5, 5, 5), jitter=0.5, generator=g2)
    assert a.shape == (2, 125, 3) and torch.equal(a, b)
    assert a.abs().max() <= 1
    base = grid_points((5, 5, 5))
    assert (a - base).abs().max() <= 0.5 * 0.5 + 1e-6  # half a grid step of 2/4
    sub = jittered_grid_points(3, (4, 4, 4), num_points=10, generator=g1)
    assert sub.shape == (3, 10, 3)
    with pytest.raises(ValueError, match="num_points"):
        jittered_grid_points(1, (2, 2, 2), num_points=9)
    with pytest.raises(ValueError, match="jitter"):
        jittered_grid_points(1, (2, 2, 2), jitter=-1)


# -- upsampling -------------------------------------------------------------------------------


@pytest.mark.parametrize("size,factor", [(1, 3), (2, 2)])
def test_latent_upsample_equals_conv_transpose(size, factor):
    torch.manual_seed(0)
    up = LatentUpsample(5, 3, factor)
    ct = torch.nn.ConvTranspose3d(5, 3, factor, stride=factor)
    with torch.no_grad():
        ct.weight.copy_(up.weight.view(5, 3, factor, factor, factor))
        ct.bias.copy_(up.bias)
    x = torch.randn(2, 5, size, size, size)
    torch.testing.assert_close(up(x), ct(x), atol=1e-5, rtol=1e-5)


# -- network ----------------------------------------------------------------------------------


@pytest.mark.parametrize("out_channels", [2, 5])
@pytest.mark.parametrize("encoder_channels", [0, 3])
def test_shapes_volume_and_presampled(out_channels, encoder_channels):
    net = _net(out_channels=out_channels, encoder_channels=encoder_channels)
    pts = torch.rand(2, 50, 3) * 2 - 1
    img = torch.randn(2, 1, 6, 7, 8)
    out = net(torch.tensor([0, 2]), pts, img)
    assert out.shape == (2, 50, out_channels)
    if encoder_channels == 0:  # pre-sampled intensity gives the same logits
        torch.testing.assert_close(net(torch.tensor([0, 2]), pts, sample_volume(img, pts)), out)


def test_shape_only_network():
    net = _net(appearance_channels=0, use_coordinates=False)
    assert net(torch.tensor([1]), torch.zeros(1, 4, 3)).shape == (1, 4, 4)


def test_matches_reference_point_mlp():
    """Channels-first MLP == concatenate sampled features per point, then nn.Linear layers."""
    net = _net(act="relu")
    idx, pts, img = torch.tensor([1, 0]), torch.rand(2, 30, 3) * 2 - 1, torch.randn(2, 1, 5, 5, 5)
    grids = net.latent_grids(net.latents(idx))
    feats = [sample_volume(g, pts) for g in grids] + [pts, sample_volume(img, pts)]
    ref = net.point_mlp(torch.cat(feats, dim=-1))
    torch.testing.assert_close(net(idx, pts, img), ref, atol=1e-5, rtol=1e-5)


def test_layer_norm_variant():
    net = _net(norm="layer")
    assert any(isinstance(m, torch.nn.LayerNorm) for m in net.modules())
    assert net(torch.tensor([0]), torch.zeros(1, 3, 3), torch.zeros(1, 1, 4, 4, 4)).shape == (1, 3, 4)


def test_every_parameter_gets_gradient_and_unused_latents_none():
    net = _net(encoder_channels=2)
    pts = torch.rand(2, 40, 3) * 2 - 1
    out = net(torch.tensor([0, 2]), pts, torch.randn(2, 1, 5, 5, 5))
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    grad = net.latents.weight.grad
    assert grad[1].abs().sum() == 0 and grad[0].abs().sum() > 0 and grad[2].abs().sum() > 0


def test_decode_latent_matches_forward_and_gradcheck():
    net = _net().double()
    pts = (torch.rand(1, 6, 3, dtype=torch.float64) * 2 - 1) * 0.9
    img = torch.randn(1, 1, 4, 4, 4, dtype=torch.float64)
    z = net.latents.weight[2:3].detach().clone().requires_grad_(True)
    torch.testing.assert_close(net.decode_latent(z, pts, img), net(torch.tensor([2]), pts, img))
    assert torch.autograd.gradcheck(lambda lat: net.decode_latent(lat, pts, img), (z,), eps=1e-6, atol=1e-5)


def test_forward_does_not_change_state():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net(torch.tensor([0]), torch.zeros(1, 2, 3), torch.zeros(1, 1, 3, 3, 3))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_mean_latent():
    net = _net()
    torch.testing.assert_close(net.mean_latent(), net.latents.weight.mean(0, keepdim=True))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"act": "relux"}, "Did you mean 'relu'"),
        ({"norm": "batch"}, "`norm` must be one of"),
        ({"grid_sizes": (2, 3)}, "integer multiple"),
        ({"grid_channels": (4,)}, "same length"),
        ({"out_channels": 1}, "`out_channels` must be >= 2"),
        ({"num_cases": 0}, "`num_cases` must be >= 1"),
        ({"appearance_channels": 0, "encoder_channels": 2}, "needs an image"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _net(**kwargs)


def test_forward_errors():
    net = _net()
    pts = torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match=r"`case_idx` must lie in \[0, 3\)"):
        net(torch.tensor([3]), pts, torch.zeros(1, 1, 3, 3, 3))
    with pytest.raises(ValueError, match="1 channel"):
        net(torch.tensor([0]), pts, torch.zeros(1, 2, 3, 3, 3))
    with pytest.raises(ValueError, match="`appearance` is required"):
        net(torch.tensor([0]), pts)
    with pytest.raises(ValueError, match="pre-sampled"):
        net(torch.tensor([0]), pts, torch.zeros(1, 5, 1))
    with pytest.raises(ValueError, match="`points` must be"):
        net(torch.tensor([0]), torch.zeros(1, 2, 2), torch.zeros(1, 1, 3, 3, 3))
    enc = _net(encoder_channels=2)
    with pytest.raises(ValueError, match="conv encoder needs the image volume"):
        enc(torch.tensor([0]), pts, torch.zeros(1, 2, 1))


def test_sampling_errors():
    with pytest.raises(ValueError, match=r"`volume` must be \(B, C, D, H, W\)"):
        sample_volume(torch.zeros(1, 3, 3, 3), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match=r"`labels` must be \(B, D, H, W\)"):
        sample_labels(torch.zeros(3, 3, 3), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="`shape` must have 3 positive values"):
        grid_points((2, 2))


def test_grid_sample_convention_matches_torch():
    """sample_volume is F.grid_sample with align_corners=True (documented convention)."""
    vol, pts = torch.randn(1, 2, 3, 4, 5), torch.rand(1, 7, 3) * 2 - 1
    ref = F.grid_sample(vol, pts.view(1, 7, 1, 1, 3), align_corners=True, padding_mode="border")
    torch.testing.assert_close(sample_volume(vol, pts), ref.view(1, 2, 7).transpose(1, 2))


@pytest.mark.parametrize("size", [1, 2, 4])
def test_interpolation_matrix_equals_grid_sample(size):
    torch.manual_seed(0)
    grid = torch.randn(2, 3, size, size, size, dtype=torch.float64, requires_grad=True)
    pts = torch.rand(2, 40, 3, dtype=torch.float64) * 2.4 - 1.2  # some points outside: border padding
    weights = interpolation_matrix(pts, size)
    assert weights.shape == (2, 40, size**3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 40, dtype=torch.float64))
    dense = torch.bmm(grid.flatten(2), weights.transpose(1, 2))
    ref = F.grid_sample(grid, pts.view(2, 40, 1, 1, 3), align_corners=True, padding_mode="border").view(2, 3, 40)
    torch.testing.assert_close(dense, ref)
    g1 = torch.autograd.grad(dense.square().sum(), grid)[0]
    g2 = torch.autograd.grad(ref.square().sum(), grid)[0]
    torch.testing.assert_close(g1, g2)


def test_autocast_bfloat16_close_to_float32():
    """Mixed precision (as AMP on CUDA) runs and stays close; sampling stays in float32."""
    net = _net()
    idx, pts, img = torch.tensor([0, 1]), torch.rand(2, 64, 3) * 2 - 1, torch.randn(2, 1, 5, 5, 5)
    ref = net(idx, pts, img)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(idx, pts, img)
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)

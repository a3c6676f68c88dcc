"""Tests for medrefine.losses.crf (gated CRF loss)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from medrefine.losses.crf import GatedCRFLoss, downsample_for_crf, gated_crf_loss


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: OpenMP threads only add synchronisation cost on a loaded machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def brute_force(
    probs, image, *, spacing, radius, sigma_pos, sigma_int, weights=(1.0,), src=None, dst=None, multiview=False
):
    """The loss by explicit loops over voxels and neighbours (float64, tiny inputs only)."""
    batch, _, *shape = probs.shape
    total = 0.0
    for b in range(batch):
        for i in itertools.product(*[range(s) for s in shape]):
            for d in itertools.product(*[range(-r, r + 1) for r in radius]):
                if not any(d):
                    continue
                j = tuple(a + c for a, c in zip(i, d))
                if any(x < 0 or x >= s for x, s in zip(j, shape)):
                    continue  # out-of-volume neighbours do not count
                views = sum(1 for v in d if v == 0) / 3.0 if multiview else 1.0
                dist2 = sum((dd * s) ** 2 for dd, s in zip(d, spacing))
                diff2 = float(((image[(b, slice(None), *i)] - image[(b, slice(None), *j)]) ** 2).sum())
                kernel = 0.0
                for w, sp, si in zip(weights, sigma_pos, sigma_int):
                    g = w * (math.exp(-dist2 / (2 * sp * sp)) if sp is not None else 1.0)
                    kernel += g * (math.exp(-diff2 / (2 * si * si)) if si is not None else 1.0)
                gate = 1.0 if dst is None else float(dst[(b, 0, *i)])
                gate *= 1.0 if src is None else float(src[(b, 0, *j)])
                potts = 1.0 - float((probs[(b, slice(None), *i)] * probs[(b, slice(None), *j)]).sum())
                total += views * kernel * gate * potts
    norm = max(float(dst.sum()), 1.0) if dst is not None else batch * math.prod(shape)
    return total / norm


def _inputs(shape, channels=2, image_channels=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn((shape[0], channels, *shape[1:]), generator=gen, dtype=torch.float64)
    image = torch.randn((shape[0], image_channels, *shape[1:]), generator=gen, dtype=torch.float64)
    return torch.softmax(logits, 1), image


# ---------------------------------------------------------------- shape / smoke
@pytest.mark.parametrize("spatial_dims,shape", [(2, (2, 6, 7)), (3, (2, 4, 5, 6)), ("multiview2d", (1, 4, 5, 6))])
def test_scalar_and_backward(spatial_dims, shape):
    logits = torch.randn((shape[0], 3, *shape[1:]), requires_grad=True)
    image = torch.randn((shape[0], 1, *shape[1:]))
    loss = gated_crf_loss(torch.softmax(logits, 1), image, radius=2, spatial_dims=spatial_dims)
    assert loss.ndim == 0 and loss.dtype == torch.float32 and loss.item() > 0
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------- exact values
def test_two_pixels_by_hand():
    # p = (1, 0) and (0.5, 0.5); intensities 0 and 1; sigmas 1 -> K = e^-0.5 * e^-0.5; Potts = 0.5
    probs = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]]]], dtype=torch.float64)  # (1, 2, 1, 2)
    image = torch.tensor([[[[0.0, 1.0]]]], dtype=torch.float64)
    loss = gated_crf_loss(
        probs, image, spacing=(1.0, 1.0), radius=1, sigma_position_mm=1.0, sigma_intensity=1.0, spatial_dims=2
    )
    # two ordered pairs, each e^-1 * 0.5, divided by 2 voxels
    assert loss.item() == pytest.approx(math.exp(-1.0) / 2.0, rel=1e-12)


def test_hand_computed_2d_3x3():
    probs, image = _inputs((1, 3, 3))
    kwargs = dict(spacing=(1.0, 2.0), radius=(1, 1), sigma_pos=(1.5,), sigma_int=(0.8,))
    expected = brute_force(probs, image, **kwargs)
    loss = gated_crf_loss(
        probs, image, spacing=(1.0, 2.0), radius=1, sigma_position_mm=1.5, sigma_intensity=0.8, spatial_dims=2
    )
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_hand_computed_3d_with_masks_and_kernels():
    probs, image = _inputs((2, 2, 2, 3), channels=3, image_channels=2)
    gen = torch.Generator().manual_seed(1)
    src = (torch.rand((2, 1, 2, 2, 3), generator=gen) > 0.3).double()
    dst = (torch.rand((2, 1, 2, 2, 3), generator=gen) > 0.4).double()
    kernels = dict(weights=(0.7, 0.3), sigma_position_mm=(2.0, None), sigma_intensity=(0.9, 1.3))
    loss = gated_crf_loss(
        probs, image, spacing=(2.5, 1.0, 0.7), radius=1, source_mask=src, destination_mask=dst, **kernels
    )
    expected = brute_force(
        probs, image, spacing=(2.5, 1.0, 0.7), radius=(1, 1, 1), sigma_pos=(2.0, None), sigma_int=(0.9, 1.3),
        weights=(0.7, 0.3), src=src, dst=dst,
    )
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_hand_computed_multiview():
    probs, image = _inputs((1, 3, 4, 3))
    loss = gated_crf_loss(
        probs, image, spacing=(3.0, 1.0, 1.0), radius=(1, 2, 1), sigma_position_mm=2.0, sigma_intensity=0.5,
        spatial_dims="multiview2d",
    )
    expected = brute_force(
        probs, image, spacing=(3.0, 1.0, 1.0), radius=(1, 2, 1), sigma_pos=(2.0,), sigma_int=(0.5,), multiview=True
    )
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_multiview_is_average_of_three_slice_losses():
    probs, image = _inputs((1, 4, 5, 3))
    spacing, kwargs = (2.0, 1.0, 0.5), dict(radius=2, sigma_position_mm=1.5, sigma_intensity=0.7, spatial_dims=2)
    views = []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        perm = (0, 2 + axis, 1, 2 + others[0], 2 + others[1])
        p2 = probs.permute(perm).reshape(-1, 2, *[probs.shape[2 + o] for o in others])
        i2 = image.permute(perm).reshape(-1, 1, *[probs.shape[2 + o] for o in others])
        views.append(gated_crf_loss(p2, i2, spacing=[spacing[o] for o in others], **kwargs))
    multiview = gated_crf_loss(
        probs, image, spacing=spacing, radius=2, sigma_position_mm=1.5, sigma_intensity=0.7,
        spatial_dims="multiview2d",
    )
    assert multiview.item() == pytest.approx(sum(v.item() for v in views) / 3.0, rel=1e-10)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("spatial_dims", [3, "multiview2d"])
def test_gradcheck_float64(spatial_dims):
    probs, image = _inputs((1, 3, 2, 4))
    gen = torch.Generator().manual_seed(2)
    src = (torch.rand((1, 1, 3, 2, 4), generator=gen) > 0.3).double()
    dst = (torch.rand((1, 1, 3, 2, 4), generator=gen) > 0.3).double()
    probs.requires_grad_(True)

    def fn(p):
        return gated_crf_loss(
            p, image, spacing=(2.0, 1.0, 1.0), radius=(1, 1, 2), sigma_position_mm=(2.0, None),
            sigma_intensity=(0.8, 1.0), weights=(1.0, 0.5), source_mask=src, destination_mask=dst,
            spatial_dims=spatial_dims,
        )

    assert torch.autograd.gradcheck(fn, (probs,), eps=1e-6, atol=1e-8)


def test_module_gradcheck_through_softmax_and_downsampling():
    logits = torch.randn((1, 2, 4, 4, 6), dtype=torch.float64, requires_grad=True)
    image = torch.randn((1, 1, 4, 4, 6), dtype=torch.float64)
    loss_fn = GatedCRFLoss(radius=1, downsample_factor=(1, 2, 2), sigma_intensity=1.0, softmax=True)
    assert torch.autograd.gradcheck(lambda x: loss_fn(x, image, spacing=(1.0, 1.0, 1.0)), (logits,))
    function = dict(radius=1, downsample_factor=(1, 2, 2), sigma_intensity=1.0, softmax=True, spacing=(1.0, 1.0, 1.0))
    assert torch.autograd.gradcheck(lambda x: gated_crf_loss(x, image, **function), (logits,))


# ---------------------------------------------------------------- properties
@pytest.mark.parametrize("spatial_dims", [2, 3, "multiview2d"])
def test_zero_for_constant_one_hot(spatial_dims):
    shape = (2, 5, 6) if spatial_dims == 2 else (2, 4, 5, 6)
    probs = torch.zeros((shape[0], 3, *shape[1:]))
    probs[:, 1] = 1.0
    loss = gated_crf_loss(probs, torch.randn((shape[0], 1, *shape[1:])), radius=2, spatial_dims=spatial_dims)
    assert loss.item() == 0.0


def test_gating_masks_change_the_result():
    probs, image = _inputs((1, 4, 5, 6))
    mask = torch.ones((1, 1, 4, 5, 6), dtype=torch.float64)
    mask[..., :3] = 0.0
    kwargs = dict(spacing=(1.0, 1.0, 1.0), radius=1, sigma_intensity=1.0)
    plain = gated_crf_loss(probs, image, **kwargs).item()
    with_src = gated_crf_loss(probs, image, source_mask=mask, **kwargs).item()
    with_dst = gated_crf_loss(probs, image, destination_mask=mask, **kwargs).item()
    assert with_src != pytest.approx(plain) and with_dst != pytest.approx(plain) and with_src != pytest.approx(with_dst)
    # all-ones masks change nothing
    ones = torch.ones_like(mask)
    both_ones = gated_crf_loss(probs, image, source_mask=ones, destination_mask=ones, **kwargs).item()
    assert both_ones == pytest.approx(plain)


def test_zero_source_or_destination_mask_gives_zero():
    probs, image = _inputs((1, 4, 5, 6))
    zeros = torch.zeros((1, 1, 4, 5, 6), dtype=torch.float64)
    assert gated_crf_loss(probs, image, radius=1, source_mask=zeros).item() == 0.0
    assert gated_crf_loss(probs, image, radius=1, destination_mask=zeros).item() == 0.0


def test_masks_are_not_symmetric():
    # the loss lives at destination voxels: a voxel outside the destination mask gets no gradient
    # from its own term but still receives gradient as a source of its neighbours
    probs, image = _inputs((1, 3, 3, 3))
    probs.requires_grad_(True)
    dst = torch.ones((1, 1, 3, 3, 3), dtype=torch.float64)
    dst[0, 0, 1, 1, 1] = 0
    src = torch.zeros_like(dst)
    src[0, 0, 1, 1, 1] = 1
    gated_crf_loss(probs, image, radius=1, source_mask=src, destination_mask=dst).backward()
    assert probs.grad[0, :, 1, 1, 1].abs().sum() > 0  # as the only source
    forward = gated_crf_loss(probs, image, radius=1, source_mask=src, destination_mask=dst).item()
    swapped = gated_crf_loss(probs, image, radius=1, source_mask=dst, destination_mask=src).item()
    # same pair sum (K and Potts are symmetric), different normaliser: 26 vs 1 destination voxels
    assert swapped == pytest.approx(forward * 26.0, rel=1e-12)


def test_spacing_changes_the_result():
    probs, image = _inputs((1, 4, 5, 6))
    kwargs = dict(radius=2, sigma_position_mm=2.0, sigma_intensity=1.0)
    iso = gated_crf_loss(probs, image, spacing=(1.0, 1.0, 1.0), **kwargs).item()
    aniso = gated_crf_loss(probs, image, spacing=(3.0, 1.0, 1.0), **kwargs).item()
    assert aniso < iso  # neighbours further away in mm weigh less
    per_batch = torch.tensor([[3.0, 1.0, 1.0]], dtype=torch.float64)
    assert gated_crf_loss(probs, image, spacing=per_batch, **kwargs).item() == pytest.approx(aniso)


def test_out_of_volume_neighbours_are_excluded():
    # one voxel: no neighbour inside the volume -> zero, whatever the radius
    probs = torch.full((1, 2, 1, 1, 1), 0.5)
    assert gated_crf_loss(probs, torch.zeros((1, 1, 1, 1, 1)), radius=3).item() == 0.0


def test_image_gets_no_gradient():
    probs, image = _inputs((1, 3, 3, 3))
    image.requires_grad_(True)
    loss = gated_crf_loss(probs.requires_grad_(True), image, radius=1)
    loss.backward()
    assert image.grad is None and probs.grad is not None


# ---------------------------------------------------------------- module
def test_module():
    """``GatedCRFLoss()(x, image)`` is ``gated_crf_loss(x, image)``: the same defaults, the same value."""
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn((2, 3, 6, 5, 6), dtype=torch.float64), 1)
    image = torch.randn((2, 1, 6, 5, 6), dtype=torch.float64)
    torch.testing.assert_close(GatedCRFLoss()(probs, image), gated_crf_loss(probs, image), rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        # PA-Seg's form as PointSupervisionLoss builds it: logits, down-sampled copy, multi-view
        dict(radius=2, downsample_factor=(1, 2, 2), spatial_dims="multiview2d", softmax=True, spacing=(3.0, 0.5, 0.5)),
        dict(radius=(1, 2, 2), sigma_position_mm=(None, 3.0), sigma_intensity=(0.5, None), weights=(1.0, 0.2),
             downsample_factor=2, spacing=(2.0, 1.0, 1.0)),
        dict(radius=1, spatial_dims=3, softmax=True),
    ],
)
def test_module_non_default_arguments(kwargs):
    """The same arguments give the same value, masks and down-sampling included."""
    torch.manual_seed(1)
    x = torch.randn((2, 2, 6, 8, 8), dtype=torch.float64)
    if not kwargs.get("softmax"):
        x = torch.softmax(x, 1)
    image = torch.randn((2, 1, 6, 8, 8), dtype=torch.float64)
    src = (torch.rand((2, 1, 6, 8, 8)) > 0.3).double()
    dst = (torch.rand((2, 1, 6, 8, 8)) > 0.3).double()
    spacing = kwargs.pop("spacing", None)
    module = GatedCRFLoss(**kwargs)
    for masks in ({}, {"source_mask": src, "destination_mask": dst}):
        torch.testing.assert_close(module(x, image, spacing=spacing, **masks),
                                   gated_crf_loss(x, image, spacing=spacing, **kwargs, **masks), rtol=0, atol=0)
    if spacing is not None:  # the constructor's spacing is the function's spacing
        torch.testing.assert_close(GatedCRFLoss(spacing=spacing, **kwargs)(x, image),
                                   gated_crf_loss(x, image, spacing=spacing, **kwargs), rtol=0, atol=0)


def test_softmax_argument_applies_softmax():
    logits = torch.randn((2, 3, 4, 5, 6), dtype=torch.float64)
    image = torch.randn((2, 1, 4, 5, 6), dtype=torch.float64)
    kernel = dict(radius=2, sigma_position_mm=3.0, sigma_intensity=0.5, spacing=(2.0, 1.0, 1.0))
    expected = gated_crf_loss(torch.softmax(logits, 1), image, **kernel)
    assert gated_crf_loss(logits, image, softmax=True, **kernel).item() == pytest.approx(expected.item(), rel=1e-12)
    loss_fn = GatedCRFLoss(spacing=(2.0, 1.0, 1.0), softmax=True, **{k: v for k, v in kernel.items() if k != "spacing"})
    assert loss_fn(logits, image).item() == pytest.approx(expected.item(), rel=1e-12)


def test_module_downsamples_and_scales_spacing():
    logits = torch.randn((1, 2, 4, 8, 8), dtype=torch.float64)
    image = torch.randn((1, 1, 4, 8, 8), dtype=torch.float64)
    loss_fn = GatedCRFLoss(radius=2, downsample_factor=(1, 2, 2), spatial_dims="multiview2d", softmax=True)
    got = loss_fn(logits, image, spacing=(3.0, 0.5, 0.5)).item()
    small_p = torch.softmax(F.interpolate(logits, size=(4, 4, 4), mode="area"), 1)
    small_i = F.interpolate(image, size=(4, 4, 4), mode="area")
    expected = gated_crf_loss(small_p, small_i, spacing=(3.0, 1.0, 1.0), radius=2, spatial_dims="multiview2d")
    assert got == pytest.approx(expected.item(), rel=1e-12)


def test_module_reads_spacing_from_metatensor():
    from monai.data import MetaTensor

    logits = torch.randn((1, 2, 4, 4, 4), dtype=torch.float64)
    image = torch.randn((1, 1, 4, 4, 4), dtype=torch.float64)
    meta = MetaTensor(image, affine=torch.diag(torch.tensor([3.0, 1.0, 1.0, 1.0], dtype=torch.float64)).unsqueeze(0))
    meta.is_batch = True
    loss_fn = GatedCRFLoss(radius=1, downsample_factor=1, softmax=True)
    assert loss_fn(logits, meta).item() == pytest.approx(loss_fn(logits, image, spacing=(3.0, 1.0, 1.0)).item())
    assert loss_fn(logits, meta).item() != pytest.approx(loss_fn(logits, image).item())
    # the function reads it too, so function and module agree on MetaTensors
    assert gated_crf_loss(logits, meta, radius=1, softmax=True).item() == pytest.approx(loss_fn(logits, meta).item())


def test_downsampled_mask_keeps_only_full_cells():
    mask = torch.zeros((1, 1, 2, 4))
    mask[..., :3] = 1
    out = downsample_for_crf(mask, (1, 2), mask=True)
    assert out.tolist() == [[[[1.0, 0.0]]]]


# ---------------------------------------------------------------- errors
def test_error_shape_mismatch():
    probs = torch.rand(1, 2, 4, 4, 4)
    with pytest.raises(ValueError, match=r"`image` must have shape \(B, C_img, \*spatial\)"):
        gated_crf_loss(probs, torch.rand(1, 1, 4, 4, 5))
    with pytest.raises(ValueError, match=r"`probs` must have shape \(B, C, \*spatial\) with 2 spatial axes"):
        gated_crf_loss(probs, torch.rand(1, 1, 4, 4, 4), spatial_dims=2)
    with pytest.raises(ValueError, match=r"`source_mask` must have shape \(B, 1, \*spatial\)"):
        gated_crf_loss(probs, torch.rand(1, 1, 4, 4, 4), source_mask=torch.ones(1, 4, 4, 4))
    with pytest.raises(ValueError, match=r"`image` must have shape"):
        GatedCRFLoss()(torch.rand(1, 2, 4, 4, 4), torch.rand(2, 1, 4, 4, 4))


@pytest.mark.parametrize("radius", [-1, 0, (5, 5), (5, 5, -1), 1.5])
def test_error_bad_radius(radius):
    with pytest.raises(ValueError, match="`radius` must be"):
        gated_crf_loss(torch.rand(1, 2, 4, 4, 4), torch.rand(1, 1, 4, 4, 4), radius=radius)
    with pytest.raises(ValueError, match="`radius` must be"):
        GatedCRFLoss(radius=radius)


def test_error_bad_options():
    probs, image = torch.rand(1, 2, 4, 4, 4), torch.rand(1, 1, 4, 4, 4)
    with pytest.raises(ValueError, match="`spacing` must have 3 values"):
        gated_crf_loss(probs, image, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="`spacing` must hold positive"):
        gated_crf_loss(probs, image, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="Did you mean 'multiview2d'"):
        gated_crf_loss(probs, image, spatial_dims="multiview")
    with pytest.raises(ValueError, match="same number of kernels"):
        gated_crf_loss(probs, image, weights=(1.0, 0.5), sigma_intensity=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="`sigma_intensity` must be positive"):
        gated_crf_loss(probs, image, sigma_intensity=-0.1)
    with pytest.raises(ValueError, match="neither `sigma_position_mm` nor `sigma_intensity`"):
        gated_crf_loss(probs, image, sigma_position_mm=None, sigma_intensity=None)
    with pytest.raises(ValueError, match=r"`downsample_factor` must be a number >= 1 or 3 such numbers, got 0.5"):
        GatedCRFLoss(downsample_factor=0.5)
    with pytest.raises(ValueError, match=r"`downsample_factor` must be a number >= 1 or 3 such numbers, got \(2, 2\)"):
        gated_crf_loss(probs, image, downsample_factor=(2, 2))
    with pytest.raises(TypeError, match="`image` must be a torch.Tensor"):
        gated_crf_loss(probs, image.numpy())


# ---------------------------------------------------------------- behaviour
@pytest.mark.parametrize("spatial_dims", [3, "multiview2d"])
def test_two_seeds_and_crf_segment_a_two_region_image(spatial_dims):
    """Propagation: with one seed per region, minimising CE on seeds + CRF labels every voxel."""
    from medrefine.losses.partial import UNLABELED, PartialCEDiceLoss

    torch.manual_seed(0)
    size = 10
    image = torch.zeros(1, 1, size, size, size)
    image[..., size // 2 :] = 1.0
    image += 0.05 * torch.randn_like(image)
    truth = (image > 0.5).long()
    seeds = torch.full((1, 1, size, size, size), UNLABELED)
    seeds[0, 0, 5, 5, 1], seeds[0, 0, 5, 5, 8] = 0, 1
    logits = torch.zeros(1, 2, size, size, size, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    crf = GatedCRFLoss(radius=2, sigma_position_mm=2.0, sigma_intensity=0.1, spatial_dims=spatial_dims, softmax=True)
    seed_loss = PartialCEDiceLoss()
    for _ in range(40):
        optimizer.zero_grad()
        (seed_loss(logits, seeds) + crf(logits, image)).backward()
        optimizer.step()
    assert (logits.argmax(1, keepdim=True) == truth).float().mean().item() > 0.99


def test_module_defaults_equal_function_defaults():
    """Every argument of ``GatedCRFLoss`` that ``gated_crf_loss`` also takes has the function's default."""
    import inspect

    function = inspect.signature(gated_crf_loss).parameters
    module = inspect.signature(GatedCRFLoss).parameters
    shared = [k for k in module if k in function]
    assert len(shared) >= 3
    assert {k: module[k].default for k in shared} == {k: function[k].default for k in shared}

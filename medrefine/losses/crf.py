"""Gated CRF loss (Potts model) in 2D, 3D and the multi-view 2D form used by PA-Seg.

Implements the regulariser of Obukhov et al., "Gated CRF Loss for Weakly Supervised Semantic
Image Segmentation" (2019), in the 3D and "3D-to-2D multi-view" variants that Zhai et al. use in
PA-Seg (IEEE TMI 2023) to regularise the voxels left unlabeled by seed expansion.

For soft predictions ``p`` (probabilities over ``C`` classes), an image ``I`` and optional gating
masks, the loss is::

    L = 1 / Z * sum_i sum_{j in N(i), j != i}  m_dst(i) * m_src(j) * K(i, j) * (1 - sum_c p_c(i) p_c(j))

    K(i, j) = sum_k w_k * exp(-|x_i - x_j|^2 / (2 sigma_pos_k^2)) * exp(-|I_i - I_j|^2 / (2 sigma_int_k^2))

* ``N(i)`` is the box of half-width ``radius`` voxels around ``i`` (per axis); neighbours that
  fall outside the volume are excluded (the reference pads with zeros and counts them).
* ``x`` is the voxel position **in millimetres** (index times spacing), so anisotropic spacing
  changes the kernel; ``I`` may have several channels (squared differences are summed).
* ``m_dst(i)`` gates the voxels that *receive* the pairwise term (the loss is accumulated at
  them), ``m_src(j)`` the voxels that *send* it — the naming of Obukhov et al. Both are applied
  (the PA-Seg code accepts them and ignores them).
* ``Z`` (the normaliser) is the number of destination voxels summed over the batch:
  ``sum_i m_dst(i)``, i.e. ``B * prod(spatial)`` without a destination mask (clamped to >= 1).
  The loss is therefore the mean, over destination voxels, of their summed pairwise penalty.
* ``spatial_dims="multiview2d"`` takes a 3D volume and uses, for each of the three axes, only
  the neighbours in the plane perpendicular to it (2D slices along that axis); the three view
  losses (each normalised by ``Z``) are averaged, as in PA-Seg.

Why not MONAI: MONAI has no gated CRF loss, and the reference implementations ``unfold`` the
prediction and the kernels, which materialises ``(2r+1)^3 x C x N`` values (tens of GB for a
128x128x48 patch at ``r=5``). Here a custom :class:`torch.autograd.Function` loops over the
neighbour offsets instead, cropping the two overlapping views of the volume for each offset
(no wrap-around, unlike ``torch.roll``), accumulating a scalar, and in ``backward`` recomputing
each offset's kernel to add its analytic gradient. Offsets ``d`` and ``-d`` are handled together
(the pair term is symmetric; with gating masks the weight becomes
``m_dst(i) m_src(i+d) + m_src(i) m_dst(i+d)``), so half the offsets are visited. Peak memory is
``O(C x N)`` whatever the radius.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medrefine.errors import InputError, did_you_mean

__all__ = ["GatedCRFLoss", "gated_crf_loss", "downsample_for_crf"]

logger = logging.getLogger(__name__)

SPATIAL_DIMS_CHOICES = (2, 3, "multiview2d")


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def _check_spatial_dims(spatial_dims: int | str) -> int:
    """Return the number of spatial axes for ``spatial_dims`` or raise."""
    if spatial_dims in (2, 3) and not isinstance(spatial_dims, bool):
        return int(spatial_dims)
    if spatial_dims == "multiview2d":
        return 3
    hint = did_you_mean(str(spatial_dims), ["multiview2d"]) if isinstance(spatial_dims, str) else ""
    raise InputError(f"`spatial_dims` must be 2, 3 or 'multiview2d', got {spatial_dims!r}.{hint}")


def _per_axis_int(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        values: tuple = (value,) * ndim
    elif isinstance(value, (list, tuple)):
        values = tuple(value)
    else:
        raise InputError(f"`{name}` must be a non-negative int or {ndim} non-negative ints, got {value!r}")
    if len(values) != ndim or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in values):
        raise InputError(f"`{name}` must be a non-negative int or {ndim} non-negative ints, got {value!r}")
    return values


def _check_radius(radius: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    radii = _per_axis_int(radius, ndim, "radius")
    if not any(r > 0 for r in radii):
        raise InputError(f"`radius` must be > 0 on at least one axis, got {radius!r}")
    return radii


def _check_downsample_factor(downsample_factor: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    if isinstance(downsample_factor, (int, float)):
        factors: tuple = (downsample_factor,) * ndim
    else:
        factors = tuple(downsample_factor) if isinstance(downsample_factor, (list, tuple)) else ()
    if len(factors) != ndim or any(isinstance(f, bool) or not isinstance(f, (int, float)) or f < 1 for f in factors):
        raise InputError(f"`downsample_factor` must be a number >= 1 or {ndim} such numbers, got {downsample_factor!r}")
    return tuple(float(f) for f in factors)


def _per_kernel(value, count: int, name: str, allow_none: bool) -> tuple[float | None, ...]:
    if value is None or isinstance(value, (int, float)):
        values = (value,) * count
    else:
        values = tuple(value)
    if len(values) != count:
        raise InputError(f"`{name}` must have one value per kernel ({count}), got {value!r}")
    for v in values:
        if v is None and allow_none:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            kind = "positive numbers or None" if allow_none else "positive numbers"
            raise InputError(f"`{name}` must be {kind}, got {value!r}")
    return tuple(None if v is None else float(v) for v in values)


def _kernel_params(
    weights: float | Sequence[float],
    sigma_position_mm: float | Sequence[float | None] | None,
    sigma_intensity: float | Sequence[float | None] | None,
) -> tuple[tuple[float, ...], tuple[float | None, ...], tuple[float | None, ...]]:
    """Broadcast the kernel descriptions to one (weight, sigma_pos, sigma_int) triple per kernel."""
    counts = {len(v) for v in (weights, sigma_position_mm, sigma_intensity) if isinstance(v, (list, tuple))}
    if len(counts) > 1:
        raise InputError(
            "`weights`, `sigma_position_mm` and `sigma_intensity` must list the same number of kernels, "
            f"got {weights!r}, {sigma_position_mm!r}, {sigma_intensity!r}"
        )
    count = counts.pop() if counts else 1
    if count == 0:
        raise InputError("at least one kernel is needed, got empty kernel lists")
    w = _per_kernel(weights, count, "weights", allow_none=False)
    sp = _per_kernel(sigma_position_mm, count, "sigma_position_mm", allow_none=True)
    si = _per_kernel(sigma_intensity, count, "sigma_intensity", allow_none=True)
    for k, (a, b) in enumerate(zip(sp, si)):
        if a is None and b is None:
            raise InputError(f"kernel {k} has neither `sigma_position_mm` nor `sigma_intensity`; give at least one")
    return tuple(float(x) for x in w), sp, si  # type: ignore[arg-type]


def _spacing_tensor(spacing, batch: int, ndim: int, device: torch.device) -> torch.Tensor:
    """Return spacing as a float64 tensor (B, ndim) of positive values."""
    if spacing is None:
        out = torch.ones(batch, ndim, dtype=torch.float64, device=device)
    else:
        out = torch.as_tensor(spacing, dtype=torch.float64).to(device)
        if out.ndim == 1 and out.shape[0] == ndim:
            out = out.expand(batch, ndim)
        elif not (out.ndim == 2 and tuple(out.shape) == (batch, ndim)):
            raise InputError(
                f"`spacing` must have {ndim} values or shape ({batch}, {ndim}) (batch, axes), "
                f"got {tuple(out.shape)}: {spacing!r}"
            )
    if not bool(torch.all(out > 0)) or not bool(torch.all(torch.isfinite(out))):
        raise InputError(f"`spacing` must hold positive finite values in mm, got {spacing!r}")
    return out.contiguous()


def _plain(x: torch.Tensor) -> torch.Tensor:
    """Drop tensor subclasses (MONAI MetaTensor) so the per-offset loop has no metadata overhead."""
    return x.as_subclass(torch.Tensor) if type(x) is not torch.Tensor else x


def _spacing_from_meta(image: torch.Tensor, ndim: int) -> torch.Tensor | None:
    """Spacing (B, ndim) from a batched MONAI MetaTensor's affine, else None."""
    affine = getattr(image, "affine", None)
    if not isinstance(affine, torch.Tensor) or not getattr(image, "is_batch", False):
        return None
    if affine.ndim != 3 or affine.shape[-1] != ndim + 1:
        return None
    return torch.linalg.norm(affine[:, :ndim, :ndim].double(), dim=1)


def _check_mask(mask: torch.Tensor | None, name: str, batch: int, spatial: tuple[int, ...]) -> torch.Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (B, 1, *spatial) or None, got {type(mask).__name__}")
    expected = (batch, 1, *spatial)
    if tuple(mask.shape) != expected:
        raise InputError(f"`{name}` must have shape (B, 1, *spatial) = {expected}, got {tuple(mask.shape)}")
    return mask


# --------------------------------------------------------------------------------------------
# offsets and crops
# --------------------------------------------------------------------------------------------
def _half_offsets(radius: tuple[int, ...], multiview: bool) -> list[tuple[tuple[int, ...], float]]:
    """Offsets ``d`` whose first non-zero component is positive, with their multiplicity weight.

    For the 3D/2D forms every offset of the box has weight 1. For the multi-view form an offset
    belongs to the view of axis ``a`` when ``d[a] == 0``; its weight is the number of views that
    contain it divided by three (the views are averaged).
    """
    ranges = [range(-r, r + 1) for r in radius]
    out: list[tuple[tuple[int, ...], float]] = []
    for d in itertools.product(*ranges):
        nonzero = [v for v in d if v != 0]
        if not nonzero or nonzero[0] < 0:
            continue
        if multiview:
            views = sum(1 for v in d if v == 0)
            if views == 0:
                continue
            out.append((d, views / 3.0))
        else:
            out.append((d, 1.0))
    return out


def _crops(offset: tuple[int, ...], shape: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Index tuples selecting voxels ``i`` (first) and their neighbours ``i + offset`` (second).

    Both cover only voxels whose neighbour is inside the volume; ``None`` when there are none.
    """
    first, second = [slice(None), slice(None)], [slice(None), slice(None)]
    for d, size in zip(offset, shape):
        if abs(d) >= size:
            return None
        if d >= 0:
            first.append(slice(0, size - d))
            second.append(slice(d, size))
        else:
            first.append(slice(-d, size))
            second.append(slice(0, size + d))
    return tuple(first), tuple(second)


def _weighted_pairs(spec, shape: tuple[int, ...]):
    """``(first, second, weight)`` for each kernel offset that fits ``shape``: the two crops whose
    voxels are neighbours at that offset, and their pairwise kernel weight."""
    for index, offset in enumerate(spec.offsets):
        crops = _crops(offset, shape)
        if crops is not None:
            first, second = crops
            yield first, second, spec.pair_weight(index, first, second)


class _KernelSpec:
    """Per-offset pair weights ``W(i)`` of the visited (half) offsets.

    ``W(i) = mult(d) * K(i, i+d) * (m_dst(i) m_src(i+d) + m_src(i) m_dst(i+d))`` (the gate is 2
    without masks), with the position factors of every kernel precomputed for all offsets.
    """

    def __init__(
        self,
        image: torch.Tensor,
        spacing: torch.Tensor,
        weights: tuple[float, ...],
        sigma_position_mm: tuple[float | None, ...],
        sigma_intensity: tuple[float | None, ...],
        source_mask: torch.Tensor | None,
        destination_mask: torch.Tensor | None,
        offsets: list[tuple[tuple[int, ...], float]],
    ) -> None:
        self.image = image
        self.source_mask = source_mask
        self.destination_mask = destination_mask
        self.offsets = [d for d, _ in offsets]
        self.view = (image.shape[0],) + (1,) * (image.ndim - 1)
        dtype = image.dtype
        multiplicity = torch.tensor([m for _, m in offsets], dtype=torch.float64, device=spacing.device)
        if source_mask is None and destination_mask is None:
            multiplicity = multiplicity * 2.0  # offset d and -d contribute the same
        steps = torch.tensor(self.offsets, dtype=torch.float64, device=spacing.device)
        steps = steps.reshape(len(offsets), spacing.shape[1])
        dist2 = ((steps[:, None, :] * spacing[None]) ** 2).sum(-1)  # (n_offsets, B), mm^2
        intensity_gains, constant = [], None
        self.intensity_coefficients: list[float] = []
        for w, s_pos, s_int in zip(weights, sigma_position_mm, sigma_intensity):
            gain = w * (torch.ones_like(dist2) if s_pos is None else torch.exp(-dist2 / (2.0 * s_pos * s_pos)))
            gain = gain * multiplicity[:, None]
            if s_int is None:
                constant = gain if constant is None else constant + gain
            else:
                intensity_gains.append(gain)
                self.intensity_coefficients.append(-0.5 / (s_int * s_int))
        self.intensity_gains = [g.to(dtype) for g in intensity_gains]  # each (n_offsets, B)
        self.constant_gain = None if constant is None else constant.to(dtype)

    def pair_weight(self, index: int, first: tuple[slice, ...], second: tuple[slice, ...]) -> torch.Tensor:
        """Return ``W`` for offset number ``index``, broadcastable to (B, 1, *crop)."""
        kernel = None
        if self.intensity_gains:
            diff = self.image[first] - self.image[second]
            diff2 = (diff * diff).sum(dim=1, keepdim=True) if diff.shape[1] > 1 else diff.square_()
            last = len(self.intensity_gains) - 1
            for k, (gain, coefficient) in enumerate(zip(self.intensity_gains, self.intensity_coefficients)):
                # in place where possible: fewer large allocations (page faults) per offset
                term = diff2.mul_(coefficient) if k == last else diff2 * coefficient
                term = term.exp_().mul_(gain[index].view(self.view))
                kernel = term if kernel is None else kernel.add_(term)
        if self.constant_gain is not None:
            constant = self.constant_gain[index].view(self.view)
            kernel = constant if kernel is None else kernel + constant
        src, dst = self.source_mask, self.destination_mask
        if src is None and dst is None:
            return kernel  # type: ignore[return-value]
        if src is None:
            gate = dst[first] + dst[second]  # type: ignore[index]
        elif dst is None:
            gate = src[first] + src[second]
        else:
            gate = dst[first] * src[second] + src[first] * dst[second]
        return kernel * gate


class _GatedCRFFunction(torch.autograd.Function):
    """Sum over offsets of ``W * (1 - p(i).p(i+d))`` with an offset-by-offset analytic backward."""

    @staticmethod
    def forward(ctx, probs, spec, scale):  # type: ignore[override]
        shape = tuple(probs.shape[2:])
        total = torch.zeros((), dtype=torch.float64, device=probs.device)
        for first, second, weight in _weighted_pairs(spec, shape):
            disagreement = torch.linalg.vecdot(probs[first], probs[second], dim=1).unsqueeze(1).neg_().add_(1.0)
            total = total + disagreement.mul_(weight).sum(dtype=torch.float64)
        ctx.save_for_backward(probs)
        ctx.spec, ctx.scale = spec, scale
        return (total * scale).to(probs.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        (probs,) = ctx.saved_tensors
        spec = ctx.spec
        shape = tuple(probs.shape[2:])
        grad = torch.zeros_like(probs)
        factor = -float(ctx.scale) * grad_output.to(probs.dtype)
        for first, second, weight in _weighted_pairs(spec, shape):
            weight = weight.mul_(factor) if weight.numel() > spec.view[0] else weight * factor
            grad[first].addcmul_(weight, probs[second])
            grad[second].addcmul_(weight, probs[first])
        return grad, None, None


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def gated_crf_loss(
    probs: torch.Tensor,
    image: torch.Tensor,
    *,
    spacing: Sequence[float] | torch.Tensor | None = None,
    radius: int | Sequence[int] = 5,
    sigma_position_mm: float | Sequence[float | None] | None = 6.0,
    sigma_intensity: float | Sequence[float | None] | None = 0.1,
    weights: float | Sequence[float] = 1.0,
    source_mask: torch.Tensor | None = None,
    destination_mask: torch.Tensor | None = None,
    spatial_dims: int | str = 3,
    downsample_factor: float | Sequence[float] = 1,
    softmax: bool = False,
) -> torch.Tensor:
    """Gated CRF loss with a Potts compatibility, optionally on a down-sampled copy.

    Obukhov et al. 2019 (gated CRF loss); Zhai et al., PA-Seg, IEEE TMI 2023 (multi-view form and
    the down-sampled copy of its contextual regulariser). See the module docstring for the formula
    and the normalisation. The image, the spacing and the masks are constants: gradients flow to
    ``probs`` only.

    With ``downsample_factor`` > 1, ``probs``, the image and the masks are first area-averaged to
    ``round(spatial / downsample_factor)`` voxels (:func:`downsample_for_crf`; the spacing grows
    accordingly, a mask keeps only the cells wholly inside it), and ``radius`` counts voxels of
    that grid. With ``softmax``, ``probs`` holds logits and the softmax over channels is applied
    (after down-sampling, as PA-Seg).

    Args:
        probs: class probabilities (B, C, *spatial), e.g. ``softmax(logits, 1)``, or logits with
            ``softmax=True``; 2 or 3 spatial axes.
        image: intensities (B, C_img, *spatial) on the same grid (normalised, e.g. z-scored,
            so that ``sigma_intensity`` is meaningful).
        spacing: voxel size in mm of the input grid, ``spatial`` values or a (B, n_spatial)
            tensor. Default None: the affine of ``image`` when it is a batched MONAI MetaTensor,
            else 1.0.
        radius: neighbourhood half-width in voxels, an int or one int per axis (>= 0, at least
            one > 0 on the axes used). Default 5.
        sigma_position_mm: std of the position Gaussian in mm, per kernel; ``None`` drops the
            position term of that kernel. Default 6.0.
        sigma_intensity: std of the intensity Gaussian, per kernel; ``None`` makes that kernel
            position-only. Default 0.1.
        weights: weight of each kernel. Default 1.0. Pass sequences to sum several kernels,
            e.g. ``weights=(0.9, 0.1), sigma_position_mm=(6, 6), sigma_intensity=(0.1, None)``.
        source_mask: (B, 1, *spatial) weights (usually 0/1) of the voxels allowed to send the
            pairwise term. Default None (all).
        destination_mask: (B, 1, *spatial) weights of the voxels that receive it; also the
            normaliser ``sum(destination_mask)``. Default None (all; normaliser ``B * N``).
        spatial_dims: 2 (B, C, H, W), 3 (B, C, D, H, W), or ``"multiview2d"`` (3D input,
            in-plane neighbourhoods of the slices along each axis, averaged). Default 3.
        downsample_factor: number >= 1 or one per spatial axis. Default 1 (the loss at the
            resolution of ``probs``).
        softmax: apply softmax over channels to ``probs`` (then logits). Default False.

    Returns:
        A scalar tensor (dtype of ``probs``; float32 at least after down-sampling).

    Raises:
        InputError (a ValueError): on shape mismatches, a bad radius, spacing, sigma,
            ``downsample_factor`` or ``spatial_dims``.
        TypeError: when ``probs``/``image``/masks are not tensors.

    Example:
        >>> probs = torch.softmax(torch.randn(1, 2, 8, 16, 16, requires_grad=True), 1)
        >>> image = torch.randn(1, 1, 8, 16, 16)
        >>> loss = gated_crf_loss(probs, image, spacing=(3.0, 1.0, 1.0), radius=2)
        >>> loss.backward()
    """
    ndim = _check_spatial_dims(spatial_dims)
    for name, value in (("probs", probs), ("image", image)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
    if probs.ndim != ndim + 2:
        raise InputError(
            f"`probs` must have shape (B, C, *spatial) with {ndim} spatial axes for spatial_dims={spatial_dims!r}, "
            f"got {tuple(probs.shape)}"
        )
    if not probs.is_floating_point():
        raise TypeError(f"`probs` must be a floating point tensor, got {probs.dtype}")
    batch, spatial = probs.shape[0], tuple(probs.shape[2:])
    if image.ndim != ndim + 2 or image.shape[0] != batch or tuple(image.shape[2:]) != spatial:
        raise InputError(
            f"`image` must have shape (B, C_img, *spatial) = ({batch}, C_img, {', '.join(map(str, spatial))}) "
            f"like `probs`, got {tuple(image.shape)}"
        )
    radii = _check_radius(radius, ndim)
    multiview = spatial_dims == "multiview2d"
    w, s_pos, s_int = _kernel_params(weights, sigma_position_mm, sigma_intensity)
    factors = _check_downsample_factor(downsample_factor, ndim)
    source_mask = _check_mask(source_mask, "source_mask", batch, spatial)
    destination_mask = _check_mask(destination_mask, "destination_mask", batch, spatial)
    if spacing is None:
        spacing = _spacing_from_meta(image, ndim)
    spacing_t = _spacing_tensor(spacing, batch, ndim, probs.device)

    probs, image = _plain(probs), _plain(image).detach()
    size = tuple(max(1, int(round(s / f))) for s, f in zip(spatial, factors))
    if size != spatial:
        cell = torch.tensor([s / o for s, o in zip(spatial, size)], dtype=torch.float64, device=probs.device)
        spacing_t = spacing_t * cell  # spacing of the down-sampled grid
        probs, image = downsample_for_crf(probs, size), downsample_for_crf(image, size)
        source_mask, destination_mask = (
            None if m is None else downsample_for_crf(_plain(m).detach().float(), size, mask=True)
            for m in (source_mask, destination_mask)
        )
        spatial = size
    if softmax:
        probs = torch.softmax(probs, dim=1)
    dtype = probs.dtype
    image = image.to(dtype)
    if source_mask is not None:
        source_mask = _plain(source_mask).detach().to(dtype)
    if destination_mask is not None:
        destination_mask = _plain(destination_mask).detach().to(dtype)
        denominator = float(destination_mask.sum().clamp(min=1.0))
    else:
        denominator = float(batch * torch.Size(spatial).numel())

    offsets = _half_offsets(radii, multiview)
    spec = _KernelSpec(image, spacing_t, w, s_pos, s_int, source_mask, destination_mask, offsets)
    return _GatedCRFFunction.apply(probs, spec, 1.0 / denominator)


def downsample_for_crf(
    tensor: torch.Tensor, size: Sequence[int], *, mask: bool = False
) -> torch.Tensor:
    """Down-sample (B, C, *spatial) to ``size`` by area averaging (anti-aliased).

    Masks (``mask=True``) keep only the output voxels whose whole input cell was inside the mask
    (average >= 1 - 1e-6, as Obukhov et al.), so that gating never leaks across a mask border.
    """
    if tuple(tensor.shape[2:]) == tuple(size):
        return tensor
    out = F.interpolate(tensor.to(torch.promote_types(tensor.dtype, torch.float32)), size=tuple(size), mode="area")
    if mask:
        out = (out >= 1.0 - 1e-6).to(out.dtype)
    return out


class GatedCRFLoss(nn.Module):
    """Module form of :func:`gated_crf_loss` (PA-Seg's contextual regulariser): the same defaults.

    Obukhov et al. 2019; Zhai et al., PA-Seg, IEEE TMI 2023. Holds the arguments of
    :func:`gated_crf_loss` and evaluates it: ``GatedCRFLoss(**kwargs)(probs, image)`` equals
    ``gated_crf_loss(probs, image, **kwargs)``. PA-Seg's form (softmax of the logits on a copy
    down-sampled by 2) is ``GatedCRFLoss(downsample_factor=2, softmax=True)``, which is what
    :class:`~medrefine.losses.PointSupervisionLoss` builds.

    Args:
        weights: weight of each kernel. Default 1.0.
        sigma_position_mm: std of the position Gaussian in mm per kernel (``None``: no position
            term). Default 6.0.
        sigma_intensity: std of the intensity Gaussian per kernel (``None``: position-only
            kernel). Default 0.1 (PA-Seg, on z-scored images).
        radius: neighbourhood half-width in voxels (of the down-sampled grid), int or per axis.
            Default 5.
        downsample_factor: int or one value per axis (>= 1). Default 1 (no down-sampling; wave 1's
            module defaulted to 2).
        spatial_dims: 2, 3 or ``"multiview2d"``. Default 3.
        spacing: voxel size in mm of the *input* grid, used when neither ``forward`` receives one
            nor ``image`` is a batched MONAI MetaTensor (whose affine then gives it). Default None
            (1.0 mm).
        softmax: apply softmax over channels (the input are logits). Default False (the input are
            probabilities, as for the function; wave 1's module defaulted to True).

    Raises:
        InputError (a ValueError): on a bad radius, kernel, factor, spacing or ``spatial_dims``
            (at construction) and on mismatched shapes (at call time).
        TypeError: when ``input`` or ``image`` is not a tensor.

    Example:
        >>> loss_fn = GatedCRFLoss(radius=5, downsample_factor=(1, 2, 2), spatial_dims="multiview2d", softmax=True)
        >>> logits = torch.randn(1, 2, 16, 32, 32, requires_grad=True)
        >>> loss = loss_fn(logits, torch.randn(1, 1, 16, 32, 32), spacing=(3.0, 0.5, 0.5))
    """

    def __init__(
        self,
        weights: float | Sequence[float] = 1.0,
        sigma_position_mm: float | Sequence[float | None] | None = 6.0,
        sigma_intensity: float | Sequence[float | None] | None = 0.1,
        radius: int | Sequence[int] = 5,
        downsample_factor: float | Sequence[float] = 1,
        spatial_dims: int | str = 3,
        spacing: Sequence[float] | None = None,
        softmax: bool = False,
    ) -> None:
        super().__init__()
        ndim = _check_spatial_dims(spatial_dims)
        self.spatial_dims = spatial_dims
        self.radius = _check_radius(radius, ndim)
        self.weights, self.sigma_position_mm, self.sigma_intensity = _kernel_params(
            weights, sigma_position_mm, sigma_intensity
        )
        self.downsample_factor = _check_downsample_factor(downsample_factor, ndim)
        if spacing is not None:
            _spacing_tensor(spacing, 1, ndim, torch.device("cpu"))  # validate early
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.softmax = bool(softmax)
        self._ndim = ndim

    def forward(
        self,
        input: torch.Tensor,
        image: torch.Tensor,
        source_mask: torch.Tensor | None = None,
        destination_mask: torch.Tensor | None = None,
        spacing: Sequence[float] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the loss for ``input`` (B, C, *spatial; logits with ``softmax``) and ``image`` (B, C_img, *spatial).

        Masks are (B, 1, *spatial) on the input grid; ``spacing`` (mm, of the input grid)
        overrides the MetaTensor affine and the constructor's value.
        """
        if spacing is None and _spacing_from_meta(image, self._ndim) is None:
            spacing = self.spacing
        return gated_crf_loss(
            input,
            image,
            spacing=spacing,
            radius=self.radius,
            sigma_position_mm=self.sigma_position_mm,
            sigma_intensity=self.sigma_intensity,
            weights=self.weights,
            source_mask=source_mask,
            destination_mask=destination_mask,
            spatial_dims=self.spatial_dims,
            downsample_factor=self.downsample_factor,
            softmax=self.softmax,
        )

"""Low-memory sliding-window inference: Gaussian-weighted windows, argmax written slab by slab.

MONAI's :func:`~monai.inferers.sliding_window_inference` accumulates the weighted window outputs
of the whole volume, ``(B, C, X, Y, Z)`` floats, before the caller takes the argmax: for a
512x512x300 CT and 42 channels that is 13 GB in float32 (plus the count map and the input). Its
``buffer_steps`` option batches windows but keeps that full-size output. Here the windows are
visited level by level along the last axis; a rolling ``(C, X, Y, roi_z)`` buffer holds the
weighted sums of the voxels still reachable by a later window, and as soon as no later window
touches a slab of the last axis, that slab is normalised, reduced by argmax and written into an
integer label volume (``uint8`` up to 256 classes, else ``int16``). Peak memory is the input, the
label output and one ``roi_z``-thick buffer, independent of the number of structures times the
volume size.

Window positions, Gaussian importance map and padding of small inputs are MONAI's own
(:func:`monai.data.utils.dense_patch_slices`, :func:`monai.data.utils.compute_importance_map`),
and every window touching a voxel is accumulated before the voxel is finalised, so the result
equals ``sliding_window_inference(...).argmax(1)`` up to the order of floating-point additions
(differences only where two classes tie to within rounding; none in the tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

__all__ = ["SlabSlidingWindowInferer", "slab_sliding_window_argmax"]

logger = logging.getLogger(__name__)


def _windows(image_size: Sequence[int], roi_size: Sequence[int], overlap: float) -> list[tuple[slice, ...]]:
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    interval = _get_scan_interval(tuple(image_size), tuple(roi_size), len(roi_size), (overlap,) * len(roi_size))
    return [tuple(s) for s in dense_patch_slices(tuple(image_size), tuple(roi_size), interval)]


def slab_sliding_window_argmax(
    inputs: torch.Tensor,
    roi_size: Sequence[int],
    predictor: Callable[[torch.Tensor], torch.Tensor],
    *,
    sw_batch_size: int = 1,
    overlap: float = 0.25,
    mode: str = "gaussian",
    sigma_scale: float = 0.125,
    buffer_dtype: torch.dtype = torch.float32,
    out_dtype: torch.dtype | None = None,
    sw_device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Sliding-window inference whose output is the argmax label map, built slab by slab.

    Args:
        inputs: image ``(B, C_in, X, Y, Z)`` (3D only; the slabs run along ``Z``), on the CPU or a device.
        roi_size: window size ``(rx, ry, rz)``; axes of ``inputs`` smaller than it are padded
            (constant 0, split as MONAI does) and the padding is cropped from the result.
        predictor: callable mapping ``(N, C_in, rx, ry, rz)`` to logits ``(N, C, rx, ry, rz)``.
        sw_batch_size: windows per predictor call (within one level of the last axis).
        overlap: fraction of overlap between windows, ``[0, 1)``; default 0.25.
        mode: ``"gaussian"`` (default) or ``"constant"`` window weights, as MONAI.
        sigma_scale: Gaussian sigma as a fraction of ``roi_size``; default 0.125 (MONAI's).
        buffer_dtype: dtype of the rolling buffer (``torch.float16`` halves it; the argmax may
            then differ where classes are within float16 rounding).
        out_dtype: label dtype; default ``uint8`` for up to 256 classes, else ``int16``.
        sw_device: device running the predictor (default: the input's).
        progress: tqdm bar over the levels of the last axis.

    Returns:
        Label map ``(B, 1, X, Y, Z)`` on the input's device.

    Raises:
        ValueError: ``inputs`` not 5D, ``roi_size`` not 3 positive ints, ``overlap`` outside ``[0, 1)``.

    Example:
        >>> net = torch.nn.Conv3d(1, 4, 3, padding=1)
        >>> labels = slab_sliding_window_argmax(torch.rand(1, 1, 40, 40, 50), (16, 16, 16), net)
        >>> labels.shape, labels.dtype
        (torch.Size([1, 1, 40, 40, 50]), torch.uint8)
    """
    import torch.nn.functional as F
    from monai.data.utils import compute_importance_map

    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 5:
        raise ValueError(f"`inputs` must be a (B, C, X, Y, Z) tensor, got shape {tuple(getattr(inputs, 'shape', ()))}")
    roi_size = tuple(int(r) for r in roi_size)
    if len(roi_size) != 3 or min(roi_size) < 1:
        raise ValueError(f"`roi_size` must have 3 positive values, got {roi_size}")
    if not 0 <= overlap < 1:
        raise ValueError(f"`overlap` must be in [0, 1), got {overlap}")
    inputs = inputs.as_subclass(torch.Tensor) if type(inputs) is not torch.Tensor else inputs
    device = inputs.device
    sw_device = torch.device(sw_device) if sw_device is not None else device
    original_size = tuple(inputs.shape[2:])

    pad: list[int] = []
    for k in range(4, 1, -1):
        diff = max(roi_size[k - 2] - inputs.shape[k], 0)
        pad.extend([diff // 2, diff - diff // 2])
    if any(pad):
        inputs = F.pad(inputs, pad=pad, mode="constant", value=0.0)
    image_size = tuple(inputs.shape[2:])
    windows = _windows(image_size, roi_size, overlap)
    starts = sorted({w[2].start for w in windows})
    levels = {s: [w for w in windows if w[2].start == s] for s in starts}

    weight = compute_importance_map(roi_size, mode=mode, sigma_scale=sigma_scale, device=sw_device,
                                    dtype=inputs.dtype if inputs.is_floating_point() else torch.float32)
    weight_buf = weight.to(device=device, dtype=buffer_dtype)
    rz = roi_size[2]
    batch = inputs.shape[0]
    sx, sy, sz = image_size
    labels = None
    rows_per_chunk = max(1, sx // 8)
    for b in range(batch):
        iterator = starts
        if progress:
            from tqdm import tqdm

            iterator = tqdm(starts, desc=f"slabs (case {b})")
        acc = None  # (C, X, Y, rz) weighted sums, anchored at the current level's start
        count = torch.zeros((sx, sy, rz), dtype=buffer_dtype, device=device)
        for li, start in enumerate(iterator):
            level = levels[start]
            for i in range(0, len(level), sw_batch_size):
                group = level[i:i + sw_batch_size]
                patches = torch.stack([inputs[b][(slice(None),) + w] for w in group]).to(sw_device)
                with torch.no_grad():
                    out = predictor(patches)
                if isinstance(out, (tuple, list)):
                    out = out[0]
                out = torch.as_tensor(out).to(device=device)
                if acc is None:
                    acc = torch.zeros((out.shape[1], sx, sy, rz), dtype=buffer_dtype, device=device)
                    if labels is None:
                        dtype = out_dtype or (torch.uint8 if out.shape[1] <= 256 else torch.int16)
                        labels = torch.zeros((batch, 1, sx, sy, sz), dtype=dtype, device=device)
                weighted = (out * weight.to(device=device, dtype=out.dtype)).to(buffer_dtype)
                for j, w in enumerate(group):
                    acc[:, w[0], w[1], :] += weighted[j]
                    count[w[0], w[1], :] += weight_buf
            end = starts[li + 1] if li + 1 < len(starts) else sz
            done = end - start  # voxels start..end are reached by no later window
            for x0 in range(0, sx, rows_per_chunk):  # normalise + argmax a few rows at a time (small temporaries)
                rows = slice(x0, x0 + rows_per_chunk)
                probs = acc[:, rows, :, :done].float() / count[rows, :, :done].float()
                labels[b, 0, rows, :, start:end] = probs.argmax(0).to(labels.dtype)
                del probs
            if li + 1 < len(starts):  # shift the buffer by `done`, one plane at a time, in place
                for buf in (acc, count):
                    for k in range(rz - done):
                        buf[..., k] = buf[..., k + done]
                    buf[..., rz - done:] = 0
    if labels is None:
        raise ValueError(f"no window to run: input of spatial size {original_size}, roi_size {roi_size}")
    if any(pad):
        labels = labels[:, :, pad[4]:pad[4] + original_size[0], pad[2]:pad[2] + original_size[1],
                        pad[0]:pad[0] + original_size[2]]
    return labels


class SlabSlidingWindowInferer:
    """MONAI-style inferer wrapping :func:`slab_sliding_window_argmax` (``inferer(inputs, network)``).

    It returns labels ``(B, 1, *spatial)``, not logits, so it replaces the sliding-window inferer
    *and* the argmax of a post-processing chain (e.g. in an inference config whose
    post-transforms start from a label map).
    """

    def __init__(self, roi_size: Sequence[int], sw_batch_size: int = 1, overlap: float = 0.25, mode: str = "gaussian",
                 sigma_scale: float = 0.125, buffer_dtype: torch.dtype = torch.float32, out_dtype: torch.dtype | None = None,
                 sw_device: torch.device | str | None = None, progress: bool = False) -> None:
        self.roi_size = tuple(int(r) for r in roi_size)
        self.kwargs = {"sw_batch_size": sw_batch_size, "overlap": overlap, "mode": mode, "sigma_scale": sigma_scale,
                           "buffer_dtype": buffer_dtype, "out_dtype": out_dtype, "sw_device": sw_device, "progress": progress}

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
        labels = slab_sliding_window_argmax(inputs, self.roi_size, lambda x: network(x, *args, **kwargs), **self.kwargs)
        if hasattr(inputs, "copy_meta_from"):
            from monai.data import MetaTensor

            labels = MetaTensor(labels).copy_meta_from(inputs, copy_attr=False)
        return labels

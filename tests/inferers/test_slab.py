"""Tests of medrefine.inferers.slab: low-memory sliding window, argmax slab by slab."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import sliding_window_inference

from medrefine.inferers.slab import SlabSlidingWindowInferer, slab_sliding_window_argmax


def _net(out_channels: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 6, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv3d(6, out_channels, 3, padding=1)
    ).eval()


@pytest.mark.parametrize(
    "shape, roi, overlap, mode",
    [
        ((1, 1, 20, 18, 37), (8, 8, 8), 0.25, "gaussian"),
        ((2, 1, 12, 10, 9), (16, 8, 12), 0.5, "gaussian"),  # padded axes, batch of 2
        ((1, 1, 17, 19, 23), (8, 9, 7), 0.0, "gaussian"),
        ((1, 1, 17, 19, 23), (8, 9, 7), 0.6, "constant"),
    ],
)
def test_equals_monai_sliding_window_argmax(shape, roi, overlap, mode):
    net = _net()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = sliding_window_inference(x, roi, 3, net, overlap=overlap, mode=mode).argmax(1, keepdim=True)
    out = slab_sliding_window_argmax(x, roi, net, sw_batch_size=3, overlap=overlap, mode=mode)
    assert out.shape == ref.shape and out.dtype == torch.uint8
    assert torch.equal(out.long(), ref)  # every window touching a voxel is summed before it is finalised


def test_float16_buffer_nearly_agrees():
    net = _net()
    x = torch.randn(1, 1, 16, 16, 30, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = sliding_window_inference(x, (8, 8, 8), 4, net, overlap=0.25, mode="gaussian").argmax(1, keepdim=True)
    out = slab_sliding_window_argmax(x, (8, 8, 8), net, sw_batch_size=4, buffer_dtype=torch.float16)
    assert (out.long() != ref).float().mean() < 0.01


def test_many_classes_use_int16():
    net = torch.nn.Conv3d(1, 300, 1)
    out = slab_sliding_window_argmax(torch.rand(1, 1, 6, 6, 10), (4, 4, 4), net)
    assert out.dtype == torch.int16 and int(out.max()) < 300


def test_inferer_class_matches_function():
    net = _net()
    x = torch.randn(1, 1, 12, 12, 20, generator=torch.Generator().manual_seed(3))
    inferer = SlabSlidingWindowInferer(roi_size=(8, 8, 8), sw_batch_size=2)
    assert torch.equal(inferer(x, net), slab_sliding_window_argmax(x, (8, 8, 8), net, sw_batch_size=2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"inputs": torch.rand(1, 8, 8, 8), "roi_size": (4, 4, 4)}, "`inputs` must be a"),
        ({"inputs": torch.rand(1, 1, 8, 8, 8), "roi_size": (4, 4)}, "`roi_size` must have 3"),
        ({"inputs": torch.rand(1, 1, 8, 8, 8), "roi_size": (4, 4, 4), "overlap": 1.0}, "`overlap` must be in"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        slab_sliding_window_argmax(predictor=torch.nn.Identity(), **kwargs)

"""Tests of medrefine.inferers.patch_matched: inference on an image smaller than ``roi_size`` sees
exactly what training saw, in both bundles that slide windows."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer

from medrefine.inferers import PatchMatchedSlidingWindowInferer, training_patch_size
from medrefine.networks.segmentation import build_segmentation_network

SMALL = (20, 13, 9)  # smaller than the 32^3 roi along every axis


def test_training_patch_size_hand_values():
    assert training_patch_size((117, 91, 20), (128, 128, 48), 16) == [128, 96, 32]
    assert training_patch_size((300, 300, 30), (128, 128, 48), 16) == [128, 128, 32]
    assert training_patch_size((20, 13, 9), (30, 30, 30), (8, 4, 1)) == [24, 16, 9]
    with pytest.raises(ValueError, match="one value per axis, got \\[20, 13\\], \\[32, 32, 32\\]"):
        training_patch_size((20, 13), (32, 32, 32))
    with pytest.raises(ValueError, match="sizes must be positive"):
        training_patch_size((20, 13, 9), (32, 0, 32))


def _network():
    torch.manual_seed(0)
    return build_segmentation_network("unet", 3, 1, 2, channels=(4, 8, 16)).eval()


def _uncrop(output: torch.Tensor, size) -> torch.Tensor:
    """Remove symmetric padding (low side floor(pad / 2), as MONAI pads) from ``(B, C, *spatial)``."""
    starts = [(o - s) // 2 for o, s in zip(output.shape[2:], size)]
    return output[(slice(None), slice(None), *(slice(a, a + s) for a, s in zip(starts, size)))]


def _parser(bundle: str, **overrides) -> ConfigParser:
    from medrefine.bundle import find_bundle

    parser = ConfigParser()
    parser.read_config(find_bundle(bundle).path / "configs" / "train.json")
    parser.update(overrides)
    return parser


def test_point_supervision_inference_equals_the_training_forward_pass():
    parser = _parser("point_supervised_segmentation", roi_size=[32, 32, 32], divisible_by=8)
    image = torch.rand(1, *SMALL, generator=torch.Generator().manual_seed(1))
    patch = image
    for xform in parser.get_parsed_content("train#augmentation"):  # random crop (whole image) + divisible pad
        patch = xform({"image": patch})["image"]
    assert tuple(patch.shape[1:]) == (24, 16, 16)
    inferer = parser.get_parsed_content("validate#inferer")
    assert isinstance(inferer, PatchMatchedSlidingWindowInferer)
    net = _network()
    with torch.no_grad():
        trained_on = _uncrop(net(torch.as_tensor(patch)[None]), SMALL)
        inferred = inferer(image[None], net)
        padded_to_roi = SlidingWindowInferer(roi_size=(32, 32, 32), mode="gaussian")(image[None], net)
    assert inferred.shape == (1, 2, *SMALL)
    assert torch.allclose(torch.as_tensor(inferred), trained_on, atol=1e-5)
    # MONAI's inferer pads to roi_size: instance norm sees other statistics, another prediction
    assert (torch.as_tensor(padded_to_roi) - trained_on).abs().max() > 1e-3


def test_multiorgan_inference_equals_the_training_forward_pass():
    parser = _parser("multiorgan_ct_segmentation", roi_size=[32, 32, 32])
    image = torch.rand(1, *SMALL, generator=torch.Generator().manual_seed(2))
    pad = parser.get_parsed_content("train#augmentation#0")  # training pads the image to the patch, then crops it
    patch = pad({"image": image, "label": torch.zeros_like(image)})["image"]
    assert tuple(patch.shape[1:]) == (32, 32, 32)
    net = _network()
    with torch.no_grad():
        trained_on = _uncrop(net(torch.as_tensor(patch)[None]), SMALL)
        inferred = parser.get_parsed_content("validate#inferer")(image[None], net)
    assert torch.allclose(torch.as_tensor(inferred), trained_on, atol=1e-5)


def test_window_follows_each_image_and_the_inferer_is_not_changed():
    inferer = PatchMatchedSlidingWindowInferer(roi_size=(32, 32, 32), divisible_by=8, mode="gaussian")
    net = _network()
    with torch.no_grad():
        small = inferer(torch.rand(1, 1, *SMALL), net)
        large = inferer(torch.rand(1, 1, 40, 13, 9), net)  # two windows along x
    assert small.shape[2:] == SMALL and large.shape[2:] == (40, 13, 9)
    assert inferer.roi_size == (32, 32, 32)
    assert inferer.window_for(torch.zeros(1, 1, 40, 13, 9)) == [32, 16, 16]

"""Lesion crops around each modality's centre, the mask sphere, presence flags, modality dropout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrefine.transforms.lesion_crop import LesionCropd, ModalityDropout, ModalityDropoutd, crop_around, lesion_sphere


def test_crop_is_centred_on_the_world_point():
    array = np.zeros((20, 20, 20), np.float32)
    array[10, 5, 3] = 1.0
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10.0, 0.0, 5.0]
    centre = (affine @ [10, 5, 3, 1])[:3]
    crop = crop_around(array, affine, centre, spacing_mm=(1.0, 1.0, 1.0), size=(9, 9, 9))
    assert crop.shape == (9, 9, 9)
    assert np.unravel_index(crop.argmax(), crop.shape) == (4, 4, 4)


def test_crop_past_the_image_repeats_its_border_not_a_dark_rim():
    """A 36 mm region cropped to 40 mm: zeros padding puts a rim of 0 around a 300-valued image,
    border padding keeps every voxel at the image's value (so the z-score is not the rim's)."""
    array = np.full((24, 24, 24), 300.0, np.float32)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    centre = (affine @ [11.5, 11.5, 11.5, 1])[:3]
    border = crop_around(array, affine, centre, spacing_mm=(2.5,) * 3, size=(16,) * 3)
    zeros = crop_around(array, affine, centre, spacing_mm=(2.5,) * 3, size=(16,) * 3, padding="zeros")
    assert np.allclose(border, 300.0)
    assert 0.1 < (zeros < 150).mean() < 0.4  # the rim: a fifth to a third of the crop
    with pytest.raises(ValueError, match="padding"):
        crop_around(array, affine, centre, spacing_mm=(2.5,) * 3, size=(16,) * 3, padding="reflect")


def test_sphere_volume():
    mask = lesion_sphere((32, 32, 32), (1.0, 1.0, 1.0), 20.0)
    assert mask.sum() == pytest.approx(4 / 3 * np.pi * 10**3, rel=0.05)


def test_misregistered_modalities_are_aligned(tmp_path):
    """Two modalities whose lesion sits at different world points both end up in the crop centre."""
    from medrefine.io import save_nifti

    records = {"case": "a", "patient": "p", "diameter_mm": 6.0, "centre_space": "ras", "targets": {"t": "1"},
               "images": {}, "centres": {}}
    for name, shift in (("A", (0.0, 0.0, 0.0)), ("B", (3.0, -2.0, 1.0))):
        array = np.zeros((24, 24, 24), np.float32)
        affine = np.diag([1.5, 1.5, 1.5, 1.0])
        centre = np.array([6.0, 9.0, 12.0]) + np.array(shift)
        ijk = np.rint((centre - affine[:3, 3]) / 1.5).astype(int)
        array[tuple(ijk)] = 1.0
        save_nifti(array, tmp_path / f"{name}.nii.gz", affine=affine)
        records["images"][name] = str(tmp_path / f"{name}.nii.gz")
        records["centres"][name] = (affine[:3, :3] @ ijk + affine[:3, 3]).tolist()
    records["images"]["C"] = None
    out = LesionCropd(["A", "B", "C"], {"t": ["0", "1"]}, spacing_mm=1.5, size=9)(records)
    assert out["image"].shape == (3, 9, 9, 9) and out["mask"].shape == (1, 9, 9, 9)
    for c in range(2):
        assert np.unravel_index(int(out["image"][c].argmax()), (9, 9, 9)) == (4, 4, 4)
    assert out["presence"].tolist() == [1.0, 1.0, 0.0]
    assert float(out["image"][2].abs().sum()) == 0.0  # a missing modality is zeros, never noise
    assert out["label"].tolist() == [1]


def test_modality_dropout_clears_channel_and_flag():
    image = torch.ones(4, 3, 3, 3)
    presence = torch.tensor([1.0, 1.0, 0.0, 1.0])
    drop = ModalityDropout(prob=1.0, keep=1).set_random_state(0)
    out, flags = drop(image, presence)
    assert flags.sum() == 1 and flags[2] == 0  # everything dropped but one present modality
    for c in range(4):
        assert bool((out[c] == flags[c]).all())
    out, flags = ModalityDropout(prob=0.0)(image, presence)
    assert flags.tolist() == presence.tolist() and float(out[2].sum()) == 0.0  # absent channel zeroed
    with pytest.raises(ValueError, match="`prob` must be in"):
        ModalityDropout(prob=1.5)


def test_dictionary_dropout_is_seeded():
    data = {"image": torch.randn(4, 2, 2, 2), "presence": torch.ones(4)}
    a = ModalityDropoutd(prob=0.5).set_random_state(3)(data)
    b = ModalityDropoutd(prob=0.5).set_random_state(3)(data)
    assert torch.equal(a["presence"], b["presence"]) and torch.equal(a["image"], b["image"])

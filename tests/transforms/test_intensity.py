"""Tests of medrefine.transforms.intensity: the rule that picks CT window or percentiles from the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medrefine.errors import InputError
from medrefine.transforms.intensity import ModalityIntensity, ModalityIntensityd, intensity_mode, looks_like_ct


def _ct_like(seed=0):
    rng = np.random.default_rng(seed)
    air = np.full(2000, -1000.0)
    fat = rng.normal(-100, 20, 3000)
    soft = rng.normal(50, 15, 5000)
    return np.concatenate([air, fat, soft]).astype(np.float32)


def _mr_like(seed=0):
    return np.abs(np.random.default_rng(seed).normal(300, 200, 10000)).astype(np.float32)


def test_rule_by_values():
    assert looks_like_ct(_ct_like()) and intensity_mode(_ct_like()) == "ct"
    assert not looks_like_ct(_mr_like()) and intensity_mode(_mr_like()) == "percentile"
    assert intensity_mode(np.random.default_rng(0).normal(0, 1, 1000)) == "percentile"  # z-scored: not HU
    assert intensity_mode(_ct_like() - 3000.0) == "percentile"  # below any scanner's padding: not HU


def test_metadata_names_the_modality_first():
    mr_values_tagged_ct = MetaTensor(torch.as_tensor(_mr_like()), meta={"0008|0060": "CT"})
    assert intensity_mode(mr_values_tagged_ct) == "ct"
    assert intensity_mode(MetaTensor(torch.as_tensor(_ct_like()), meta={"modality": "MR"})) == "percentile"


def test_mode_overrides_the_rule_and_unknown_mode_is_refused():
    assert intensity_mode(_ct_like(), "zscore") == "zscore"
    assert intensity_mode(_mr_like(), "ct") == "ct"
    with pytest.raises(InputError, match="`intensity` must be one of auto, ct, percentile, zscore, got 'precentile'. "
                                         "Did you mean 'percentile'"):
        intensity_mode(_mr_like(), "precentile")


def test_normalisation_values():
    ct = torch.tensor([[-1000.0, -200.0, 50.0, 300.0, 900.0]])
    assert ModalityIntensity("auto")(ct)[0].tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    assert ModalityIntensity("ct", window=(0.0, 100.0))(ct)[0].tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    mr = torch.as_tensor(_mr_like())[None]
    out = ModalityIntensity("auto")(mr)
    low, high = np.percentile(mr.numpy(), [0.5, 99.5])
    expected = np.clip((mr.numpy() - low) / (high - low), 0, 1)
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert np.allclose(np.asarray(out), expected, atol=1e-5)
    z = ModalityIntensity("zscore")(mr)
    assert abs(float(z.mean())) < 1e-4 and float(z.std()) == pytest.approx(1.0, abs=1e-3)
    d = ModalityIntensityd(keys="image", mode="ct")({"image": ct, "label": 3})
    assert d["label"] == 3 and d["image"][0].tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


def test_bad_window_is_refused():
    with pytest.raises(InputError, match="a_min < a_max, got \\[300.0, -200.0\\]"):
        ModalityIntensity("ct", window=(300.0, -200.0))


def test_real_ct_and_mr_are_told_apart(shared_data):
    from monai.transforms import LoadImage

    assert intensity_mode(LoadImage(image_only=True)(shared_data / "ct.nii.gz")) == "ct"
    assert intensity_mode(LoadImage(image_only=True)(shared_data / "mr.nii.gz")) == "percentile"


def test_cohort_intensity_reads_the_images_only_for_auto(tmp_path):
    from medrefine.io import save_nifti
    from medrefine.workflows.point_supervision import cohort_intensity

    affine = np.eye(4)
    ct = save_nifti(_ct_like().reshape(10, 20, 50), tmp_path / "ct.nii.gz", affine=affine)
    mr = save_nifti(_mr_like().reshape(10, 20, 50), tmp_path / "mr.nii.gz", affine=affine)
    assert cohort_intensity([{"image": str(ct)}]) == "ct"
    assert cohort_intensity([{"image": str(mr)}]) == "percentile"
    assert cohort_intensity([{"image": str(mr)}], "auto", [-100, 200]) == "ct"  # a window was asked for
    assert cohort_intensity([{"image": "never/read.nii.gz"}], "zscore") == "zscore"
    with pytest.raises(InputError, match="different kinds in one cohort .*set `intensity` to ct, percentile or zscore"):
        cohort_intensity([{"image": str(ct)}, {"image": str(mr)}])

"""Tests of medrefine.data.phantoms: cardiac CT phantoms and cohorts on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medrefine.data.phantoms import (
    CARDIAC_CLASSES,
    FIELD_OF_VIEW_MM,
    make_cardiac_cohort,
    make_cardiac_phantom,
    phantom_affine,
)
from medrefine.errors import InputError

BLOOD = [2, 3, 4, 5, 6, 7, 8, 10]  # contrast-filled classes (coronaries are checked apart)


@pytest.fixture(scope="module")
def phantoms64():
    return [make_cardiac_phantom(64, seed=seed) for seed in (0, 1)]


def test_class_table_matches_multinear():
    assert list(CARDIAC_CLASSES) == list(range(11))
    assert CARDIAC_CLASSES[0] == "background"
    assert CARDIAC_CLASSES[1] == "myocardium"
    assert CARDIAC_CLASSES[8] == "left_atrial_appendage"
    assert CARDIAC_CLASSES[9] == "coronary_arteries"
    assert CARDIAC_CLASSES[10] == "pulmonary_veins"


@pytest.mark.parametrize("size", [32, (32, 40, 36)])
def test_shapes_dtypes_and_default_spacing(size):
    image, label, spacing = make_cardiac_phantom(size, seed=3)
    shape = (size,) * 3 if isinstance(size, int) else size
    assert image.shape == label.shape == shape
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert spacing == pytest.approx([FIELD_OF_VIEW_MM / n for n in shape])
    assert np.isfinite(image).all()
    assert label.min() == 0 and label.max() <= 10


def test_same_seed_same_arrays_and_different_seeds_differ():
    a_img, a_lab, _ = make_cardiac_phantom(32, seed=7)
    b_img, b_lab, _ = make_cardiac_phantom(32, seed=7)
    c_img, c_lab, _ = make_cardiac_phantom(32, seed=8)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert not np.array_equal(a_lab, c_lab)
    assert not np.allclose(a_img, c_img)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_all_classes_present_at_32(seed):
    _, label, _ = make_cardiac_phantom(32, seed=seed)
    counts = np.bincount(label.ravel(), minlength=11)
    assert (counts[1:] > 0).all(), counts


def test_all_classes_present_at_64(phantoms64):
    for _, label, _ in phantoms64:
        counts = np.bincount(label.ravel(), minlength=11)
        assert (counts[1:] > 0).all(), counts


def test_plausible_volumes(phantoms64):
    for _, label, spacing in phantoms64:
        ml = np.bincount(label.ravel(), minlength=11) * np.prod(spacing) / 1000.0
        assert ml[9] == ml[1:].min(), "coronaries must be the smallest structure"
        assert ml[3] > 5 * ml[8], "LV blood pool much larger than the LAA"
        assert ml[8] < ml[2], "LAA smaller than the LA"
        assert 30 < ml[3] < 200, f"LV blood pool {ml[3]:.0f} ml"
        assert 50 < ml[1] < 250, f"myocardium {ml[1]:.0f} ml"
        assert 1 < ml[9] < 8, f"coronaries {ml[9]:.1f} ml"


def test_coronaries_are_thin(phantoms64):
    from scipy import ndimage

    for _, label, _ in phantoms64:
        radius = ndimage.distance_transform_edt(label == 9).max()
        assert radius <= 2.0, f"coronary lumen {radius} voxels in radius at 64^3"
        lv_radius = ndimage.distance_transform_edt(label == 3).max()
        assert lv_radius > 5


def test_anatomy_is_resolution_independent():
    _, coarse, sp_coarse = make_cardiac_phantom(32, seed=4)
    _, fine, sp_fine = make_cardiac_phantom(64, seed=4)
    for value in (1, 2, 3, 4, 5, 6, 7):
        ml_coarse = (coarse == value).sum() * np.prod(sp_coarse)
        ml_fine = (fine == value).sum() * np.prod(sp_fine)
        assert ml_coarse == pytest.approx(ml_fine, rel=0.2), CARDIAC_CLASSES[value]


def test_ct_like_intensities(phantoms64):
    for image, label, _ in phantoms64:
        means = {c: float(image[label == c].mean()) for c in range(1, 11)}
        for c in BLOOD:
            assert 200 < means[c] < 450, (CARDIAC_CLASSES[c], means[c])
        assert 60 < means[1] < 160, means[1]
        assert means[3] > means[1] + 150, "blood pool brighter than myocardium"
        assert 50 < means[9] < 450, "coronary lumen: contrast blood blurred with the fat around it"
        background = image[label == 0]
        assert (background < -600).mean() > 0.1, "lung present"
        assert ((background > -150) & (background < -50)).mean() > 0.02, "fat present"
        assert image.min() > -1200 and image.max() < 1200
        # noisy: a homogeneous region has a spread of several HU
        assert image[label == 3].std() > 5


def test_explicit_spacing_changes_field_of_view_not_anatomy():
    _, label, spacing = make_cardiac_phantom(32, seed=0, spacing=2.25)
    assert spacing == (2.25, 2.25, 2.25)
    _, ref, _ref_spacing = make_cardiac_phantom(64, seed=0)
    # the 32^3 grid at 2.25 mm is the central 72 mm of the 64^3 one
    np.testing.assert_array_equal(label, ref[16:48, 16:48, 16:48])


def test_phantom_affine_is_centred_ras():
    affine = phantom_affine((64, 64, 64), (2.25, 2.25, 2.25))
    np.testing.assert_allclose(np.diag(affine), [2.25, 2.25, 2.25, 1.0])
    np.testing.assert_allclose(affine[:3, 3], [-70.875] * 3)
    centre = affine @ np.array([31.5, 31.5, 31.5, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 8}, "at least 16"),
        ({"size": 32.5}, "`size` must be an int"),
        ({"size": (32, 32)}, "`size` must be an int"),
        ({"size": 32, "spacing": (1.0, 0.0, 1.0)}, "`spacing` must be one or 3 positive"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        make_cardiac_phantom(**kwargs)


# ---------------------------------------------------------------------------- cohort


def test_cohort_layout_and_contents(tmp_path):
    from medrefine.io import load_image, load_label

    out = tmp_path / "cohort"
    datalist_path = make_cardiac_cohort(out, cases=2, size=32, noise="moderate", seed=1)
    assert datalist_path == out / "datalist.json"
    datalist = json.loads(datalist_path.read_text())
    assert datalist["numTraining"] == 2 and datalist["test"] == []
    assert datalist["labels"]["9"] == "coronary_arteries"
    assert [e["case"] for e in datalist["training"]] == ["case_000", "case_001"]
    entry = datalist["training"][0]
    assert entry == {
        "case": "case_000",
        "image": "images/case_000.nii.gz",
        "label": "labels_noisy/case_000.nii.gz",
        "label_clean": "labels/case_000.nii.gz",
    }
    assert json.loads((out / "classes.json").read_text())["1"] == "myocardium"
    image = load_image(out / entry["image"])
    clean = load_label(out / entry["label_clean"], num_classes=11)
    noisy = load_label(out / entry["label"], num_classes=11)
    assert image.shape == clean.shape == noisy.shape == (32, 32, 32)
    assert clean.spacing == pytest.approx((4.5, 4.5, 4.5))
    np.testing.assert_allclose(clean.affine, phantom_affine((32,) * 3, (4.5,) * 3))
    assert not np.array_equal(clean.array, noisy.array)
    assert -1100 < image.array.min() and image.array.max() < 1500
    # nothing left behind next to the cohort
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]


def test_cohort_without_noise_has_identical_labels(tmp_path):
    from medrefine.io import load_label

    out = tmp_path / "clean"
    make_cardiac_cohort(out, cases=1, size=32, noise="none")
    a = load_label(out / "labels" / "case_000.nii.gz").array
    b = load_label(out / "labels_noisy" / "case_000.nii.gz").array
    np.testing.assert_array_equal(a, b)


def test_cohort_refuses_non_empty_folder_unless_overwrite(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        make_cardiac_cohort(out, cases=1, size=16)
    assert (out / "keep.txt").exists()
    make_cardiac_cohort(out, cases=1, size=16, noise="mild", overwrite=True)
    assert not (out / "keep.txt").exists()
    assert (out / "datalist.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


def test_cohort_into_existing_empty_folder(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    make_cardiac_cohort(out, cases=1, size=16, noise="severe")
    assert (out / "images" / "case_000.nii.gz").is_file()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise": "moderat"}, "Did you mean 'moderate'"),
        ({"noise": 1.5}, "`noise` must be one of"),
        ({"cases": 0}, "`cases` must be a positive integer"),
    ],
)
def test_cohort_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        make_cardiac_cohort(tmp_path / "c", **{"size": 16, **kwargs})
    assert not (tmp_path / "c").exists()

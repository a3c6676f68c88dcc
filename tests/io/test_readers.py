"""Tests for medrefine.io.readers: formats, RAS conventions, sidecars and bad-input errors."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from medrefine.errors import GeometryError, InputError
from medrefine.io import Volume, load_image, load_label, load_pair, save_nifti
from medrefine.io.readers import itk_to_ras_affine

SHAPE = (6, 7, 8)
MARK = (1, 5, 6)  # a voxel that is neither symmetric nor on a centre line
SPACING = (0.5, 1.25, 2.0)
ORIGIN_LPS = (10.0, -20.0, 30.0)
# an oblique LPS direction: rotation of 30 degrees about z, columns = axis directions
_C, _S = np.cos(np.pi / 6), np.sin(np.pi / 6)
DIRECTION_LPS = np.array([[_C, -_S, 0.0], [_S, _C, 0.0], [0.0, 0.0, 1.0]])


def _marked_array(dtype=np.float32) -> np.ndarray:
    arr = np.zeros(SHAPE, dtype=dtype)
    arr[MARK] = 7
    return arr


def _ras_affine_by_hand() -> np.ndarray:
    """RAS affine of the test geometry: LPS -> RAS negates world x and y."""
    lps = np.eye(4)
    lps[:3, :3] = DIRECTION_LPS @ np.diag(SPACING)
    lps[:3, 3] = ORIGIN_LPS
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _write_itk(path: Path, arr: np.ndarray) -> Path:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.transpose(arr, (2, 1, 0)))  # ours (x,y,z) -> ITK (z,y,x)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN_LPS)
    image.SetDirection(tuple(DIRECTION_LPS.ravel()))
    sitk.WriteImage(image, str(path))
    return path


def _world(vol: Volume, index) -> np.ndarray:
    return (vol.affine @ np.array([*index, 1.0]))[:3]


# ---------------------------------------------------------------- geometry conversion


def test_itk_to_ras_affine_hand_computed():
    aff = itk_to_ras_affine((1.0, 2.0, 3.0), (10.0, 20.0, 30.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    expected = np.array([[-1, 0, 0, -10], [0, -2, 0, -20], [0, 0, 3, 30], [0, 0, 0, 1]], dtype=float)
    np.testing.assert_allclose(aff, expected)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_itk_formats_load_in_ras_and_xyz(tmp_path, suffix):
    import SimpleITK as sitk

    arr = _marked_array()
    path = _write_itk(tmp_path / f"img{suffix}", arr)
    vol = load_image(path)

    assert vol.shape == SHAPE
    np.testing.assert_array_equal(vol.array, arr)
    np.testing.assert_allclose(vol.affine, _ras_affine_by_hand(), atol=1e-6)
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-6)
    # ITK's own world position of the marked voxel (LPS) equals ours after LPS -> RAS
    lps = sitk.ReadImage(str(path)).TransformIndexToPhysicalPoint(MARK)
    np.testing.assert_allclose(_world(vol, MARK), (-lps[0], -lps[1], lps[2]), atol=1e-6)
    assert vol.path == path


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_and_nifti_twins_agree_in_world(tmp_path, suffix):
    """The same image saved as NIfTI (by us) and converted to NRRD/MHA by SimpleITK loads identically."""
    import SimpleITK as sitk

    nifti = save_nifti(Volume(_marked_array(), _ras_affine_by_hand()), tmp_path / "img.nii.gz")
    twin = tmp_path / f"img{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(twin))

    a, b = load_image(nifti), load_image(twin)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-4)
    mark_a = tuple(np.argwhere(a.array == 7)[0])
    mark_b = tuple(np.argwhere(b.array == 7)[0])
    np.testing.assert_allclose(_world(a, mark_a), _world(b, mark_b), atol=1e-4)


def test_nifti_shape_dtype_orientation(tmp_path):
    path = save_nifti(Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "a.nii")
    vol = load_image(path)
    assert vol.shape == (2, 3, 4)
    assert vol.array.dtype == np.int16
    assert vol.orientation == "RAS"
    assert vol.spacing == (2.0, 2.0, 2.0)
    assert load_image(path, dtype=np.float32).array.dtype == np.float32


def test_nifti_trailing_singleton_axis_is_dropped(tmp_path):
    path = save_nifti(np.zeros((3, 4, 5, 1), dtype=np.float32) + 1, tmp_path / "a.nii.gz")
    assert load_image(path).shape == (3, 4, 5)


# ---------------------------------------------------------------- .npy


def test_npy_with_spacing_argument(tmp_path):
    path = tmp_path / "case.npy"
    np.save(path, _marked_array())
    vol = load_image(path, spacing=(1.0, 2.0, 3.0))
    np.testing.assert_allclose(vol.affine, np.diag([1.0, 2.0, 3.0, 1.0]))
    np.testing.assert_array_equal(vol.array, _marked_array())


def test_npy_with_spacing_sidecar(tmp_path):
    path = tmp_path / "case.npy"
    np.save(path, _marked_array())
    (tmp_path / "case.json").write_text(json.dumps({"spacing": [0.5, 0.5, 1.5], "origin": [1, 2, 3]}))
    vol = load_image(path)
    assert vol.spacing == (0.5, 0.5, 1.5)
    assert vol.origin == (1.0, 2.0, 3.0)


def test_npy_with_affine_sidecar(tmp_path):
    path = tmp_path / "case.npy"
    np.save(path, _marked_array())
    affine = _ras_affine_by_hand()
    (tmp_path / "case.json").write_text(json.dumps({"affine": affine.tolist()}))
    np.testing.assert_allclose(load_image(path).affine, affine)


def test_npy_spacing_argument_wins_over_sidecar(tmp_path):
    path = tmp_path / "case.npy"
    np.save(path, _marked_array())
    (tmp_path / "case.json").write_text(json.dumps({"spacing": [9, 9, 9]}))
    assert load_image(path, spacing=(1, 1, 1)).spacing == (1.0, 1.0, 1.0)


def test_npy_without_geometry_raises(tmp_path):
    path = tmp_path / "case.npy"
    np.save(path, _marked_array())
    with pytest.raises(InputError, match=r"case\.npy: .*no geometry.*`spacing=`.*case\.json"):
        load_image(path)


@pytest.mark.parametrize(
    ("sidecar", "match"),
    [
        ({"spacng": [1, 1, 1]}, r"case\.json: expected the key 'spacing' or 'affine'.*Did you mean 'spacing'"),
        ({"spacing": [1, 0, 1]}, r"case\.json: `spacing` must have 3 positive values"),
        ({"affine": [[1, 0], [0, 1]]}, r"case\.json: expected a 4x4 affine, found shape \(2, 2\)"),
    ],
)
def test_npy_bad_sidecar_raises(tmp_path, sidecar, match):
    path = tmp_path / "case.npy"
    np.save(path, _marked_array())
    (tmp_path / "case.json").write_text(json.dumps(sidecar))
    with pytest.raises(InputError, match=match):
        load_image(path)


def test_npy_bad_spacing_argument_raises(tmp_path):
    path = tmp_path / "case.npy"
    np.save(path, _marked_array())
    with pytest.raises(InputError, match=r"`spacing` must have 3 positive values \(mm\), got \(1, 1\)"):
        load_image(path, spacing=(1, 1))


# ---------------------------------------------------------------- bad files


def test_missing_file_raises(tmp_path):
    (tmp_path / "image.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match=r"imagee\.nii\.gz: file or folder not found\. Did you mean 'image\.nii\.gz'"):
        load_image(tmp_path / "imagee.nii.gz")


def test_truncated_nifti_raises_naming_file(tmp_path):
    rng = np.random.default_rng(0)
    path = save_nifti(rng.normal(size=(16, 16, 16)).astype(np.float32), tmp_path / "ct.nii.gz")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"truncated\.nii\.gz: expected a NIfTI image, found content that could not be read as NIfTI; the file is truncated"):
        load_image(truncated)


def test_corrupt_gzip_body_raises(tmp_path):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti header at all" * 20))
    with pytest.raises(InputError, match=r"bad\.nii\.gz: expected a NIfTI image, found content that could not be read as NIfTI"):
        load_image(path)


def test_truncated_mha_raises(tmp_path):
    path = _write_itk(tmp_path / "img.mha", _marked_array())
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(InputError, match=r"img\.mha: could not read with SimpleITK"):
        load_image(path)


def test_empty_file_raises(tmp_path):
    path = tmp_path / "zero.nrrd"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"zero\.nrrd: expected an image file, found an empty file"):
        load_image(path)


def test_unsupported_suffix_raises(tmp_path):
    path = tmp_path / "img.nii.gzz"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match=r"img\.nii\.gzz: unsupported file type.*expected one of .*\.nii\.gz"):
        load_image(path)


def test_empty_folder_raises(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    with pytest.raises(InputError, match=r"series: expected a DICOM series folder .*found an empty folder"):
        load_image(folder)


def test_folder_without_dicom_raises(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match=r"notes: expected a folder holding one DICOM series, found no DICOM files.*readme\.txt"):
        load_image(folder)


@pytest.mark.parametrize(("value", "what"), [(np.nan, r"1 NaN and 0 Inf"), (np.inf, r"0 NaN and 1 Inf")])
def test_non_finite_image_raises(tmp_path, value, what):
    arr = np.zeros((4, 4, 4), dtype=np.float32)
    arr[1, 2, 3] = value
    path = save_nifti(arr, tmp_path / "nan.nii.gz")
    with pytest.raises(InputError, match=rf"nan\.nii\.gz: expected finite voxel values, found {what} voxel\(s\) \(first at index \(1, 2, 3\)\)"):
        load_image(path)


def test_zero_size_array_raises(tmp_path):
    path = tmp_path / "empty.npy"
    np.save(path, np.zeros((0, 4, 4), dtype=np.float32))
    with pytest.raises(InputError, match=r"empty\.npy: expected a non-empty volume, found shape \(0, 4, 4\)"):
        load_image(path, spacing=(1, 1, 1))


# ---------------------------------------------------------------- labels


def test_label_float_integral_values_are_cast(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.float32)
    arr[1:3, 1:3, 1:3] = 2.0
    path = save_nifti(arr, tmp_path / "lab.nii.gz")
    vol = load_label(path, num_classes=3)
    assert vol.array.dtype == np.uint8
    np.testing.assert_array_equal(vol.array, arr.astype(np.uint8))


def test_label_large_values_get_int16(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.int32)
    arr[0, 0, 0] = 1000
    assert load_label(save_nifti(arr, tmp_path / "lab.nii.gz")).array.dtype == np.int16


def test_label_non_integer_raises(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.float32)
    arr[0, 0, 0] = 0.5
    path = save_nifti(arr, tmp_path / "soft.nii.gz")
    with pytest.raises(InputError, match=r"soft\.nii\.gz: expected integer label values, found 1 non-integer voxel\(s\) with values such as 0\.5"):
        load_label(path)


def test_label_above_class_count_raises(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[0, 0, :2] = 5
    arr[1, 1, 1] = 7
    path = save_nifti(arr, tmp_path / "lab.nii.gz")
    with pytest.raises(InputError, match=r"lab\.nii\.gz: expected label values in 0\.\.3 \(num_classes=4\), found 5, 7 \(3 voxels\)"):
        load_label(path, num_classes=4)


def test_label_negative_raises(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.int16)
    arr[0, 0, 0] = -1
    with pytest.raises(InputError, match=r"lab\.nii\.gz: expected label values >= 0, found negative values -1"):
        load_label(save_nifti(arr, tmp_path / "lab.nii.gz"))


@pytest.mark.parametrize("num_classes", [0, 2.5, "3"])
def test_label_bad_num_classes_raises(tmp_path, num_classes):
    path = save_nifti(np.zeros((2, 2, 2), dtype=np.uint8), tmp_path / "lab.nii.gz")
    with pytest.raises(InputError, match=r"`num_classes` must be a positive integer"):
        load_label(path, num_classes=num_classes)


# ---------------------------------------------------------------- pairs


def test_load_pair_ok(tmp_path):
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    img = save_nifti(Volume(np.ones((4, 5, 6), np.float32), affine), tmp_path / "img.nii.gz")
    lab = save_nifti(Volume(np.ones((4, 5, 6), np.uint8), affine), tmp_path / "lab.nii.gz")
    image, label = load_pair(img, lab, num_classes=2)
    assert image.shape == label.shape == (4, 5, 6)
    assert label.array.dtype == np.uint8


def test_load_pair_shape_mismatch_raises(tmp_path):
    img = save_nifti(np.ones((4, 5, 6), np.float32), tmp_path / "img.nii.gz")
    lab = save_nifti(np.ones((4, 5, 7), np.uint8), tmp_path / "lab.nii.gz")
    with pytest.raises(GeometryError, match=r"img\.nii\.gz and .*lab\.nii\.gz are expected to share one voxel grid, found shape \(4, 5, 6\) vs \(4, 5, 7\)"):
        load_pair(img, lab)


def test_load_pair_affine_mismatch_raises(tmp_path):
    img = save_nifti(Volume(np.ones((4, 5, 6), np.float32), np.diag([1.0, 1.0, 1.0, 1.0])), tmp_path / "img.nii.gz")
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    lab = save_nifti(Volume(np.ones((4, 5, 6), np.uint8), shifted), tmp_path / "lab.nii.gz")
    with pytest.raises(GeometryError, match=re.escape("affines differ by up to 0.5 mm (tolerance atol=0.001)")):
        load_pair(img, lab)
    # within a looser tolerance the pair is accepted
    load_pair(img, lab, atol=0.6)


def test_load_pair_label_error_names_label(tmp_path):
    img = save_nifti(np.ones((4, 4, 4), np.float32), tmp_path / "img.nii.gz")
    lab = save_nifti(np.full((4, 4, 4), 9, np.uint8), tmp_path / "lab.nii.gz")
    with pytest.raises(InputError, match=r"lab\.nii\.gz: expected label values in 0\.\.2"):
        load_pair(img, lab, num_classes=3)

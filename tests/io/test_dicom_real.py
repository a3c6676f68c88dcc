"""medrefine.io on the real TotalSegmentator examples in ../shared/data (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.errors import GeometryError
from medrefine.io import check_same_grid, load_image, load_label, load_pair, resample_to


@pytest.fixture(scope="module")
def dicom(shared_data):
    return load_image(shared_data / "ct_dicom")


@pytest.fixture(scope="module")
def dicom_seg(shared_data):
    return load_label(shared_data / "ct_dicom_seg.nii.gz")


def test_dicom_series_geometry(dicom, shared_data):
    assert dicom.shape == (512, 512, 20)
    np.testing.assert_allclose(dicom.spacing, (0.9765625, 0.9765625, 2.0), rtol=1e-6)
    # DICOM rows/columns run towards patient left/posterior: LPS in RAS+ terms
    assert dicom.orientation == "LPS"
    assert dicom.path == shared_data / "ct_dicom"
    assert -1100 <= dicom.array.min() and dicom.array.max() < 4000


def test_dicom_and_its_label_are_on_different_grids(dicom, dicom_seg):
    with pytest.raises(GeometryError, match=r"ct_dicom and .*ct_dicom_seg\.nii\.gz are expected to share one voxel grid.*affines differ"):
        check_same_grid(dicom, dicom_seg)


def test_label_resampled_in_world_lands_on_the_body(dicom, dicom_seg):
    on_ct = resample_to(dicom_seg, dicom)
    assert on_ct.shape == dicom.shape and on_ct.array.dtype == np.uint8
    np.testing.assert_allclose(on_ct.affine, dicom.affine)
    # organs are soft tissue or bone: almost all labelled voxels lie where the CT is not air
    fg = on_ct.array > 0
    assert fg.sum() > 10_000
    assert (dicom.array[fg] > -500).mean() > 0.95
    # the naive pairing (ignoring geometry) is clearly worse: the check can tell them apart
    assert (dicom.array[dicom_seg.array > 0] > -500).mean() < 0.9
    # no label is lost: the grids cover the same world box
    np.testing.assert_array_equal(np.bincount(on_ct.array.ravel()), np.bincount(dicom_seg.array.ravel()))


def test_nifti_pair_loads(shared_data):
    ct, seg = load_pair(shared_data / "ct.nii.gz", shared_data / "ct_seg.nii.gz", num_classes=256)
    assert ct.shape == seg.shape == (122, 101, 30)
    assert ct.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert seg.array.dtype == np.uint8

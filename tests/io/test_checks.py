"""Tests for medrefine.io.checks."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.errors import GeometryError, InputError
from medrefine.io import Volume, check_same_grid
from medrefine.io.checks import as_label_array, check_affine, check_finite, check_not_empty


def test_same_grid_passes_within_tolerance():
    a = Volume(np.zeros((3, 4, 5)), np.diag([1.0, 2.0, 3.0, 1.0]))
    shifted = a.affine.copy()
    shifted[:3, 3] += 5e-4
    check_same_grid(a, Volume(np.ones((3, 4, 5), np.uint8), shifted))


def test_same_grid_shape_mismatch_names_both():
    a = Volume(np.zeros((3, 4, 5)), path="img.nii.gz")
    b = Volume(np.zeros((3, 4, 6)), path="lab.nii.gz")
    with pytest.raises(GeometryError, match=r"img\.nii\.gz and lab\.nii\.gz .* found shape \(3, 4, 5\) vs \(3, 4, 6\)") as info:
        check_same_grid(a, b)
    message = str(info.value)
    assert "spacing (1, 1, 1)" in message and "resample_to" in message


def test_same_grid_flip_mismatch_reports_orientations():
    a = Volume(np.zeros((3, 4, 5)))
    flipped = np.diag([1.0, -1.0, 1.0, 1.0])
    flipped[1, 3] = 3.0  # same extent in world, y flipped
    with pytest.raises(GeometryError, match=r"(?s)orientation RAS.*orientation RPS") as info:
        check_same_grid(a, Volume(np.zeros((3, 4, 5)), flipped), names=("image", "label"))
    assert str(info.value).startswith("image and label are expected to share one voxel grid")
    assert "affines differ by up to 3 mm" in str(info.value)


def test_same_grid_is_a_value_error():
    with pytest.raises(ValueError):
        check_same_grid(Volume(np.zeros((2, 2, 2))), Volume(np.zeros((2, 2, 3))))


def test_same_grid_bad_names():
    with pytest.raises(InputError, match=r"`names` must hold two names"):
        check_same_grid(Volume(np.zeros((2, 2, 2))), Volume(np.zeros((2, 2, 2))), names=("one",))


def test_check_finite_and_not_empty():
    check_finite(np.array([1, 2]), "x")
    check_finite(np.array([1.0, 2.0]), "x")
    with pytest.raises(InputError, match=r"x\.npy: expected finite voxel values, found 2 NaN and 1 Inf"):
        check_finite(np.array([np.nan, np.nan, -np.inf, 0.0]), "x.npy")
    with pytest.raises(InputError, match=r"array: expected a non-empty volume"):
        check_not_empty(np.zeros((2, 0)))


def test_check_affine():
    np.testing.assert_array_equal(check_affine(np.eye(4).tolist()), np.eye(4))
    bad = np.eye(4)
    bad[2, 2] = 0.0
    with pytest.raises(InputError, match=r"h\.nii: expected an invertible affine"):
        check_affine(bad, "h.nii")
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(InputError, match=r"expected a finite affine"):
        check_affine(bad)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [([0, 1, 255], np.uint8), ([0, 256], np.int16), ([0, 40000], np.int32), ([True, False], np.uint8)],
)
def test_label_dtype_is_smallest_that_fits(values, dtype):
    out = as_label_array(np.array(values))
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, np.array(values).astype(dtype))


def test_label_rejects_complex_and_nan():
    with pytest.raises(InputError, match=r"expected integer label values, found data of type complex"):
        as_label_array(np.array([1 + 1j]))
    with pytest.raises(InputError, match=r"lab: expected finite voxel values"):
        as_label_array(np.array([0.0, np.nan]), "lab")


def test_all_background_label_warns(caplog):
    with caplog.at_level("WARNING", logger="medrefine.io.checks"):
        as_label_array(np.zeros((2, 2, 2)), "empty_label.nii.gz")
    assert "only background" in caplog.text

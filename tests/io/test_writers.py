"""Tests for medrefine.io.writers: atomic writes and NIfTI saving that never overwrites an input."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.errors import InputError
from medrefine.io import Volume, atomic_write, load_image, save_nifti


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_success_renames_temp(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.name.endswith(".csv") and tmp != target
        tmp.write_text("a,b\n")
        assert not target.exists()
    assert target.read_text() == "a,b\n"
    assert _files(target.parent) == ["table.csv"]


def test_atomic_write_keeps_compound_suffix(tmp_path):
    with atomic_write(tmp_path / "case.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz")
        tmp.write_bytes(b"x")


def test_atomic_write_exception_leaves_no_file(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise RuntimeError("boom")
    assert _files(tmp_path) == []


def test_atomic_write_exception_keeps_previous_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as tmp:
            tmp.write_text("new, unfinished")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert _files(tmp_path) == ["out.txt"]


def test_atomic_write_body_that_writes_nothing_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="did not write the temporary file"):
        with atomic_write(tmp_path / "x.txt"):
            pass
    assert _files(tmp_path) == []


def test_save_nifti_round_trip_keeps_array_and_affine(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.normal(size=(5, 6, 7)).astype(np.float32)
    affine = np.array([[0, 0, -2.5, 10], [1.5, 0, 0, -4], [0, 0.8, 0, 33], [0, 0, 0, 1]], dtype=float)
    path = save_nifti(Volume(arr, affine), tmp_path / "deep" / "er" / "vol.nii.gz")
    assert path == tmp_path / "deep" / "er" / "vol.nii.gz"
    vol = load_image(path)
    np.testing.assert_array_equal(vol.array, arr)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
    assert vol.orientation == "ASL"
    assert _files(path.parent) == ["vol.nii.gz"]


def test_save_nifti_uncompressed_and_affine_argument(tmp_path):
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    path = save_nifti(np.ones((2, 3, 4), np.int16), tmp_path / "v.nii", affine=affine)
    vol = load_image(path)
    np.testing.assert_allclose(vol.affine, affine)
    assert vol.array.dtype == np.int16


@pytest.mark.parametrize(
    ("array", "dtype", "expected"),
    [
        (np.ones((2, 2, 2), bool), None, np.uint8),
        (np.full((2, 2, 2), 300, np.int64), None, np.int16),
        (np.ones((2, 2, 2), np.float16), None, np.float32),
        (np.ones((2, 2, 2), np.float64), np.float32, np.float32),
    ],
)
def test_save_nifti_dtypes(tmp_path, array, dtype, expected):
    path = save_nifti(array, tmp_path / "v.nii.gz", dtype=dtype)
    vol = load_image(path)
    assert vol.array.dtype == expected
    np.testing.assert_array_equal(vol.array, array.astype(expected))


def test_save_nifti_refuses_to_overwrite_its_input(tmp_path):
    src = save_nifti(np.ones((2, 2, 2), np.float32), tmp_path / "in.nii.gz")
    before = src.read_bytes()
    vol = load_image(src)
    with pytest.raises(InputError, match=r"in\.nii\.gz: refusing to overwrite an input file"):
        save_nifti(vol.with_array(vol.array * 2), src, protect=[src])
    with pytest.raises(InputError, match=r"refusing to overwrite an input file"):
        save_nifti(vol, tmp_path / "." / "in.nii.gz")  # the volume's own .path, spelled differently
    assert src.read_bytes() == before
    assert _files(tmp_path) == ["in.nii.gz"]


def test_save_nifti_protect_list_for_arrays(tmp_path):
    src = save_nifti(np.ones((2, 2, 2), np.float32), tmp_path / "image.nii.gz")
    with pytest.raises(InputError, match=r"image\.nii\.gz: refusing to overwrite an input file"):
        save_nifti(np.zeros((2, 2, 2), np.uint8), src, protect=[tmp_path / "other.nii.gz", str(src)])


def test_save_nifti_overwrites_a_non_input(tmp_path):
    out = save_nifti(np.ones((2, 2, 2), np.float32), tmp_path / "out.nii.gz")
    save_nifti(np.zeros((2, 2, 2), np.float32), out)
    assert load_image(out).array.max() == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"path": "out.nrrd"}, r"out\.nrrd: expected an output path ending in \.nii\.gz or \.nii"),
        ({"data": [1, 2, 3]}, r"`data` must be a Volume or a numpy array, got list"),
        ({"affine": np.zeros((4, 4))}, r"expected an invertible affine"),
        ({"data": np.zeros((0, 2, 2))}, r"expected a 2D or 3D array to save, got shape \(0, 2, 2\)"),
    ],
)
def test_save_nifti_bad_arguments(tmp_path, kwargs, match):
    args = {"data": np.ones((2, 2, 2), np.float32), "path": "out.nii.gz"}
    args.update(kwargs)
    args["path"] = tmp_path / args["path"]
    with pytest.raises(InputError, match=match):
        save_nifti(args.pop("data"), args.pop("path"), **args)
    assert _files(tmp_path) == []

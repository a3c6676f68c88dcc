"""Tests for medrefine.data.prepare: crop + cube resampling and the way back."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medrefine.data.datalist import datalist_from_folders, load_datalist, write_datalist
from medrefine.data.layouts import read_multinear
from medrefine.data.prepare import (
    apply_prepare,
    crop_box,
    cube_affine,
    load_prepare_info,
    normalize_appearance,
    prepare_case,
    restore_to_original,
)
from medrefine.data.prepare_dataset import prepare_dataset
from medrefine.errors import GeometryError, InputError
from medrefine.io import Volume, load_image, load_label

SHAPE = (80, 70, 50)
SPACING = (0.8, 1.0, 2.5)


def _affine(spacing=SPACING):
    """A flipped-axis, shifted affine so orientation mistakes show."""
    affine = np.diag([-spacing[0], spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [30.0, -20.0, 5.0]
    return affine


def _ellipsoids(shape=SHAPE, spacing=SPACING, shift=0.0):
    """Two large ellipsoids (classes 1, 2) in mm coordinates."""
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"))
    label = np.zeros(shape, np.uint8)
    c1 = np.array([24.0 + shift, 30.0, 55.0])
    c2 = np.array([42.0, 36.0, 70.0])
    label[(((grid - c1[:, None, None, None]) / np.array([10, 12, 18])[:, None, None, None]) ** 2).sum(0) <= 1] = 1
    label[(((grid - c2[:, None, None, None]) / np.array([9, 10, 15])[:, None, None, None]) ** 2).sum(0) <= 1] = 2
    return label


def _case(shape=SHAPE, spacing=SPACING):
    label = _ellipsoids(shape, spacing)
    rng = np.random.default_rng(0)
    image = (label * 300.0 - 100.0 + rng.normal(0, 5, shape)).astype(np.float32)
    return Volume(image, _affine(spacing)), Volume(label, _affine(spacing))


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_crop_box_hand_computed():
    label = np.zeros((10, 10, 10), np.uint8)
    label[4:6, 4:6, 4:6] = 1
    assert crop_box(label, (1.0, 1.0, 2.0), margin_mm=2) == [[2, 8], [2, 8], [3, 7]]
    assert crop_box(label, (1.0, 1.0, 1.0), margin_mm=100) == [[0, 10]] * 3
    assert crop_box([label, np.pad(label[:-1], ((1, 0), (0, 0), (0, 0)))], (1, 1, 1), margin_mm=0)[0] == [4, 7]


@pytest.mark.parametrize(
    "labels, kwargs, match",
    [
        (np.zeros((4, 4, 4)), {}, "label is empty"),
        (np.ones((4, 4)), {}, "must be 3D"),
        (np.ones((4, 4, 4)), {"margin_mm": -1}, "`margin_mm` must be >= 0"),
        (np.ones((4, 4, 4)), {"margin_mm": (1, 2)}, "one number or three"),
    ],
)
def test_crop_box_errors(labels, kwargs, match):
    with pytest.raises(InputError, match=match):
        crop_box(labels, (1, 1, 1), **kwargs)


def test_cube_affine_covers_the_box_edge_to_edge():
    affine = _affine()
    box = [[10, 50], [5, 45], [2, 30]]
    cube = cube_affine(affine, box, (20, 20, 14))
    # the outer corner of cube voxel 0 is the outer corner of original voxel `start`
    corner_cube = cube @ np.array([-0.5, -0.5, -0.5, 1.0])
    corner_orig = affine @ np.array([9.5, 4.5, 1.5, 1.0])
    np.testing.assert_allclose(corner_cube, corner_orig)
    far_cube = cube @ np.array([19.5, 19.5, 13.5, 1.0])
    np.testing.assert_allclose(far_cube, affine @ np.array([49.5, 44.5, 29.5, 1.0]))
    np.testing.assert_allclose(np.linalg.norm(cube[:3, :3], axis=0), [0.8 * 2, 1.0 * 2, 2.5 * 2])


def test_prepare_case_shapes_geometry_and_values():
    image, label = _case()
    image_cube, label_cube, info = prepare_case(image, label, size=32, margin_mm=5.0, case="c0")
    assert image_cube.shape == label_cube.shape == (32, 32, 32)
    assert image_cube.array.dtype == np.float32 and label_cube.array.dtype == np.uint8
    assert set(np.unique(label_cube.array)) == {0, 1, 2}
    np.testing.assert_allclose(image_cube.affine, info["cube_affine"])
    assert image_cube.orientation == image.orientation == "LAS"
    assert info["case"] == "c0" and info["original_shape"] == list(SHAPE)
    assert info["margin_voxels"] == [7, 5, 2]
    json.dumps(info)  # JSON-ready
    # every crop box edge lies within the margin of the foreground
    fg = np.argwhere(label.array > 0)
    for axis, (start, stop) in enumerate(info["crop_box"]):
        pad = info["margin_voxels"][axis]
        assert start == max(0, fg[:, axis].min() - pad) and stop == min(SHAPE[axis], fg[:, axis].max() + 1 + pad)


def test_prepare_case_linear_image_is_exact_inside():
    """Trilinear resampling reproduces a linear ramp exactly (away from the clamped border)."""
    _, label = _case()
    ii, jj, kk = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in SHAPE], indexing="ij")
    ramp = Volume((2.0 * ii - 3.0 * jj + 5.0 * kk).astype(np.float32), label.affine)
    cube, _, info = prepare_case(ramp, label, size=24, margin_mm=3.0)
    index_map = np.linalg.inv(np.asarray(info["original_affine"])) @ np.asarray(info["cube_affine"])
    c = np.stack(np.meshgrid(*[np.arange(24.0)] * 3, indexing="ij"), -1)[2:-2, 2:-2, 2:-2]
    x = c @ index_map[:3, :3].T + index_map[:3, 3]
    expected = 2.0 * x[..., 0] - 3.0 * x[..., 1] + 5.0 * x[..., 2]
    np.testing.assert_allclose(cube.array[2:-2, 2:-2, 2:-2], expected, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("label_interpolation", ["linear", "nearest"])
def test_restore_round_trip_dice_and_geometry(label_interpolation):
    image, label = _case()
    _, label_cube, info = prepare_case(image, label, size=64, margin_mm=10.0, label_interpolation=label_interpolation)
    restored = restore_to_original(label_cube, info)
    assert restored.shape == SHAPE and restored.dtype == label.array.dtype
    restored_volume = Volume(restored, np.asarray(info["original_affine"]))
    np.testing.assert_allclose(restored_volume.affine, label.affine)
    assert restored_volume.spacing == pytest.approx(SPACING)
    for value in (1, 2):
        assert _dice(restored == value, label.array == value) > 0.95
    start = [b[0] for b in info["crop_box"]]
    assert not restored[: start[0]].any()  # outside the crop box -> 0


def test_restore_accepts_json_info_and_linear_mode():
    image, label = _case()
    _, label_cube, info = prepare_case(image, label, size=48, margin_mm=0.0)
    info = json.loads(json.dumps(info))
    restored = restore_to_original(label_cube.array, info, label_interpolation="linear")
    assert _dice(restored == 1, label.array == 1) > 0.95


def test_restore_errors():
    image, label = _case()
    _, label_cube, info = prepare_case(image, label, size=16)
    with pytest.raises(InputError, match=r"cube shape \(16, 16, 16\), got \(8, 8, 8\)"):
        restore_to_original(np.zeros((8, 8, 8), np.uint8), info)
    with pytest.raises(InputError, match="lacks"):
        restore_to_original(label_cube, {"cube_shape": [16] * 3})
    with pytest.raises(InputError, match="Did you mean 'nearest'"):
        restore_to_original(label_cube, info, label_interpolation="nearst")


def test_apply_prepare_matches_prepare_case():
    image, label = _case()
    image_cube, label_cube, info = prepare_case(image, label, size=20)
    np.testing.assert_array_equal(apply_prepare(label, info, is_label=True).array, label_cube.array)
    np.testing.assert_allclose(apply_prepare(image, info, is_label=False).array, image_cube.array)
    with pytest.raises(InputError, match="not on the prepared case's original grid"):
        apply_prepare(Volume(label.array[:-1], label.affine), info, is_label=True)


def test_extra_labels_enlarge_the_box():
    image, label = _case()
    extra = label.with_array(np.zeros(SHAPE, np.uint8))
    extra.array[0:3, 0:3, 0:3] = 1
    _, _, info = prepare_case(image, label, size=8, margin_mm=0, extra_labels={"label_clean": extra})
    assert [b[0] for b in info["crop_box"]] == [0, 0, 0]


def test_prepare_case_errors():
    image, label = _case()
    with pytest.raises(InputError, match="label is empty"):
        prepare_case(image, label.with_array(np.zeros(SHAPE, np.uint8)))
    with pytest.raises(GeometryError):
        prepare_case(image, Volume(label.array, np.eye(4)))
    with pytest.raises(InputError, match="`size` must be >= 1"):
        prepare_case(image, label, size=0)
    with pytest.raises(InputError, match="`size` must be whole numbers"):
        prepare_case(image, label, size=(8, 8, 8.5))
    with pytest.raises(InputError, match="Did you mean 'linear'"):
        prepare_case(image, label, label_interpolation="liner")


def test_normalize_appearance():
    values = np.array([-2000.0, -1000.0, 0.0, 1000.0, 3000.0])
    np.testing.assert_allclose(normalize_appearance(values), [0, 0, 0.5, 1, 1])
    out = normalize_appearance(np.arange(1000.0), window=None)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert not normalize_appearance(np.ones(5), window=None).any()
    with pytest.raises(InputError, match="high > low"):
        normalize_appearance(values, window=(1, 1))


# ---------------------------------------------------------------------------------- datasets


def _write_dataset(root, n=2, shape=(40, 35, 25), spacing=(1.6, 2.0, 5.0)):
    """A small cohort: images/, labels/, labels_clean/ and datalist.json."""
    for i in range(n):
        image, label = _case(shape, spacing)
        for folder, vol in (("images", image), ("labels", label), ("labels_clean", label)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(vol.array, vol.affine), str(root / folder / f"case_{i}.nii.gz"))
    dl = datalist_from_folders(root / "images", root / "labels", extra={"label_clean": root / "labels_clean"},
                               name="tiny", labels={0: "background", 1: "a", 2: "b"})
    return write_datalist(dl, root / "datalist.json")


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_prepare_dataset_nifti_and_multinear(tmp_path):
    datalist = _write_dataset(tmp_path / "cohort")
    out = prepare_dataset(datalist, tmp_path / "prepared", size=16, margin_mm=4.0, layout="multinear")
    root = tmp_path / "prepared"
    assert out == root / "datalist.json"
    assert _listing(root) == ["appearance", "classes.json", "datalist.json", "images", "info.csv", "label_clean",
                              "labels", "prepare_info.json", "shape"]
    entries = load_datalist(out)
    assert [e["case"] for e in entries] == ["case_0", "case_1"]
    meta = load_prepare_info(root)
    assert meta["size"] == [16, 16, 16] and set(meta["cases"]) == {"case_0", "case_1"}
    info = meta["cases"]["case_0"]
    assert info["label"] == str((tmp_path / "cohort" / "labels" / "case_0.nii.gz").resolve())
    cube = load_label(entries[0]["label"])
    np.testing.assert_allclose(cube.affine, info["cube_affine"], atol=1e-4)
    assert cube.shape == (16, 16, 16)
    clean = load_label(entries[0]["label_clean"])
    np.testing.assert_array_equal(clean.array, cube.array)
    assert load_image(entries[0]["image"]).array.dtype == np.float32
    original = load_label(info["label"])
    restored = restore_to_original(cube, info)
    assert restored.shape == original.shape
    assert _dice(restored == 2, original.array == 2) > 0.85  # coarse 16^3 cube
    near = read_multinear(root)
    assert [c["case"] for c in near] == ["case_0", "case_1"]
    assert near[0]["shape"].dtype == np.uint8 and near[0]["appearance"].dtype == np.float32
    assert 0.0 <= near[0]["appearance"].min() and near[0]["appearance"].max() <= 1.0
    np.testing.assert_array_equal(near[0]["shape"], cube.array)
    assert json.loads((root / "datalist.json").read_text())["labels"]["2"] == "b"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_prepare_dataset_from_folders_dict(tmp_path):
    _write_dataset(tmp_path / "cohort", n=1)
    dl = datalist_from_folders(tmp_path / "cohort" / "images", tmp_path / "cohort" / "labels")
    out = prepare_dataset(dl, tmp_path / "out", size=8)
    assert _listing(tmp_path / "out") == ["datalist.json", "images", "labels", "prepare_info.json"]
    assert load_datalist(out)[0]["case"] == "case_0"


def _no_output(tmp_path, name="prepared"):
    return not (tmp_path / name).exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(f".{name}")]


def test_prepare_dataset_missing_file_leaves_nothing(tmp_path):
    datalist = _write_dataset(tmp_path / "cohort")
    (tmp_path / "cohort" / "labels" / "case_1.nii.gz").unlink()
    with pytest.raises(InputError, match=r"datalist\.json: file not found: .*case_1\.nii\.gz .*case 'case_1', key 'label'"):
        prepare_dataset(datalist, tmp_path / "prepared", size=8)
    assert _no_output(tmp_path)


def test_prepare_dataset_bad_case_midway_leaves_nothing(tmp_path):
    datalist = _write_dataset(tmp_path / "cohort")
    for folder in ("labels", "labels_clean"):
        path = tmp_path / "cohort" / folder / "case_1.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((40, 35, 25), np.uint8), _affine((1.6, 2.0, 5.0))), str(path))
    with pytest.raises(InputError, match=r"case 'case_1': .*case_1\.nii\.gz: label is empty"):
        prepare_dataset(datalist, tmp_path / "prepared", size=8)
    assert _no_output(tmp_path)


def test_prepare_dataset_refuses_input_folders_and_non_empty(tmp_path):
    datalist = _write_dataset(tmp_path / "cohort", n=1)
    for out in (tmp_path / "cohort", tmp_path / "cohort" / "labels", tmp_path / "cohort" / "images" / "sub", tmp_path):
        with pytest.raises(InputError, match="input folder"):
            prepare_dataset(datalist, out, size=8)
    assert _listing(tmp_path / "cohort" / "images") == ["case_0.nii.gz"]
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("keep")
    with pytest.raises(InputError, match="exists and is not empty"):
        prepare_dataset(datalist, tmp_path / "busy", size=8)
    assert _listing(tmp_path / "busy") == ["x.txt"]
    prepare_dataset(datalist, tmp_path / "busy", size=8, overwrite=True)
    assert "x.txt" not in _listing(tmp_path / "busy")
    prepare_dataset(datalist, tmp_path / "cohort" / "prepared", size=8)  # a new folder beside the inputs is fine


@pytest.mark.parametrize(
    "kwargs, match",
    [({"layout": "nifit"}, "Did you mean 'nifti'"), ({"key": "validation"}, "no list 'validation'"),
     ({"size": -1}, "`size` must be >= 1")],
)
def test_prepare_dataset_bad_arguments(tmp_path, kwargs, match):
    datalist = _write_dataset(tmp_path / "cohort", n=1)
    with pytest.raises(InputError, match=match):
        prepare_dataset(datalist, tmp_path / "prepared", **kwargs)
    assert _no_output(tmp_path)


def test_prepare_dataset_entries_need_label(tmp_path):
    _write_dataset(tmp_path / "cohort", n=1)
    entries = [{"case": "case_0", "image": str(tmp_path / "cohort" / "images" / "case_0.nii.gz")}]
    with pytest.raises(InputError, match="has no 'label'"):
        prepare_dataset(entries, tmp_path / "prepared", size=8)
    with pytest.raises(InputError, match="no cases to prepare"):
        prepare_dataset([], tmp_path / "prepared", size=8)

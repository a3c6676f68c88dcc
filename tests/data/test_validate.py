"""Tests for medrefine.data.validate."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medrefine.data.layouts import write_multinear
from medrefine.data.validate import COLUMNS, format_problems, has_errors, validate_dataset
from medrefine.errors import InputError

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
SHAPE = (12, 10, 8)


def _label(value=1):
    label = np.zeros(SHAPE, np.uint8)
    label[3:8, 3:7, 2:6] = value
    return label


def _save(array, path, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def _good_folder(root, n=2):
    for i in range(n):
        _save(np.random.default_rng(i).normal(size=SHAPE).astype(np.float32), root / "images" / f"c{i}.nii.gz")
        _save(_label(), root / "labels" / f"c{i}.nii.gz")
    return root


def _problems(df, case=None):
    rows = df if case is None else df[df["case"] == case]
    return " | ".join(rows["problem"])


def test_clean_folder_has_no_problems(tmp_path):
    df = validate_dataset(_good_folder(tmp_path / "ds"))
    assert list(df.columns) == COLUMNS and df.empty
    assert format_problems(df) == "no problems found" and not has_errors(df)


def test_folder_problems_one_row_each(tmp_path):
    root = _good_folder(tmp_path / "ds", n=6)
    # c0: grid mismatch; c1: NaN image; c2: non-integer label; c3: empty label; c4: too many classes
    _save(_label(), root / "labels" / "c0.nii.gz", affine=np.diag([1.0, 1.0, 3.0, 1.0]))
    image = np.zeros(SHAPE, np.float32)
    image[0, 0, 0] = np.nan
    _save(image, root / "images" / "c1.nii.gz")
    _save(_label().astype(np.float32) * 0.5, root / "labels" / "c2.nii.gz")
    _save(np.zeros(SHAPE, np.uint8), root / "labels" / "c3.nii.gz")
    _save(_label(7), root / "labels" / "c4.nii.gz")
    # unmatched files and an unreadable one
    _save(_label(), root / "labels" / "orphan.nii.gz")
    _save(np.zeros(SHAPE, np.float32), root / "images" / "lonely.nii.gz")
    (root / "images" / "c5.nii.gz").write_bytes(b"not a nifti")
    df = validate_dataset(root, num_classes=3)
    assert "expected the voxel grid of the image (c0.nii.gz), found" in _problems(df, "c0")
    assert "nan" in _problems(df, "c1").lower()
    assert "expected integer label values" in _problems(df, "c2")
    assert (df[df["case"] == "c3"]["severity"] == "warning").all() and "label is empty" in _problems(df, "c3")
    assert "expected label values in 0..2 (num_classes=3), found 7" in _problems(df, "c4")
    assert "label has no image" in _problems(df, "orphan")
    assert "image has no label" in _problems(df, "lonely")
    assert "expected a NIfTI image, found content that could not be read" in _problems(df, "c5")
    assert set(df[df["case"] == "c5"]["file"]) == {"images/c5.nii.gz"}
    assert has_errors(df)
    text = format_problems(df)
    assert "c4" in text and text.splitlines()[-1].endswith("in 8 case(s)")


def test_warnings_only_is_not_an_error(tmp_path):
    root = _good_folder(tmp_path / "ds", n=1)
    _save(np.zeros(SHAPE, np.uint8), root / "labels" / "c0.nii.gz")
    df = validate_dataset(root)
    assert len(df) == 1 and not has_errors(df)


def test_datalist_missing_file_and_labels_table(tmp_path):
    root = _good_folder(tmp_path / "ds")
    _save(_label(2), root / "labels" / "c1.nii.gz")
    entries = [{"case": f"c{i}", "image": f"images/c{i}.nii.gz", "label": f"labels/c{i}.nii.gz"} for i in range(2)]
    entries.append({"case": "c9", "image": "images/c9.nii.gz", "label": "labels/c9.nii.gz"})
    entries.append(dict(entries[0]))
    (root / "datalist.json").write_text(json.dumps({"labels": {"0": "background", "1": "a"}, "training": entries}))
    for target in (root, root / "datalist.json"):
        df = validate_dataset(target)
        assert "expected the image file, found no file" in _problems(df, "c9") and "expected the label file, found no file" in _problems(df, "c9")
        assert "expected label values in 0..1 (num_classes=2), found 2" in _problems(df, "c1")  # from the datalist's labels table
        assert "listed 2 times" in _problems(df, "c0")
    assert validate_dataset(root, num_classes=3, key="training").query("case == 'c1'").empty
    with pytest.raises(InputError, match="Did you mean 'training'"):
        validate_dataset(root, key="trainig")


def test_multinear_folder(tmp_path):
    shape = np.zeros((6, 6, 6), np.uint8)
    shape[1:4, 1:4, 1:4] = 2
    root = write_multinear(tmp_path / "near", [
        {"case": "a", "appearance": np.zeros((6, 6, 6)), "shape": shape},
        {"case": "b", "appearance": np.zeros((6, 6, 6)), "shape": shape},
    ])
    assert validate_dataset(root).empty
    (root / "shape" / "b.npy").unlink()
    np.save(root / "shape" / "extra.npy", shape)
    appearance = np.zeros((6, 6, 6), np.float32)
    appearance[0, 0, 0] = np.inf
    np.save(root / "appearance" / "a.npy", appearance)
    df = validate_dataset(root, num_classes=2)
    assert "NaN or Inf" in _problems(df, "a") and "found 2" in _problems(df, "a")
    assert "found no file" in _problems(df, "b")
    assert "not listed in info.csv" in _problems(df, "extra")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p.mkdir(), "found an empty folder"),
        (lambda p: (p / "other").mkdir(parents=True), "not a dataset"),
        (lambda p: None, "found no such file or folder"),
        (lambda p: [(p / "images").mkdir(parents=True), (p / "labels").mkdir()], "are empty"),
    ],
)
def test_bad_paths(tmp_path, make, match):
    target = tmp_path / "ds"
    make(target)
    with pytest.raises(InputError, match=match):
        validate_dataset(target)


def test_bad_num_classes(tmp_path):
    with pytest.raises(InputError, match="`num_classes` must be >= 1"):
        validate_dataset(_good_folder(tmp_path / "ds"), num_classes=0)


def test_real_example(shared_data, tmp_path):
    """The real CT and its TotalSegmentator label pass as a one-case datalist."""
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [{"case": "ct", "image": str(shared_data / "ct.nii.gz"),
                                              "label": str(shared_data / "ct_seg.nii.gz")}]}))
    assert validate_dataset(path).empty


def test_empty_label_folder_reports_every_image(tmp_path):
    root = _good_folder(tmp_path / "ds")
    for path in (root / "labels").iterdir():
        path.unlink()
    (root / "labels" / "README.txt").write_text("labels go here")
    df = validate_dataset(root)
    assert sorted(df["case"]) == ["c0", "c1"] and set(df["problem"].str[:18]) == {"image has no label"}

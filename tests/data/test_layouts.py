"""Tests for medrefine.data.layouts (MultiNeAR and TotalSegmentator)."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medrefine.data.layouts import (
    is_multinear,
    list_totalseg_cases,
    multilabel_to_totalseg,
    read_multinear,
    totalseg_structures,
    totalseg_to_multilabel,
    write_multinear,
)
from medrefine.errors import GeometryError, InputError
from medrefine.io import Volume

AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])
AFFINE[:3, 3] = [-10.0, 5.0, 20.0]


def _cube_case(case, seed=0, size=8):
    rng = np.random.default_rng(seed)
    shape = np.zeros((size,) * 3, np.uint8)
    shape[2:5, 2:6, 1:4] = 1
    shape[5:7, 5:7, 5:7] = 2
    return {"case": case, "appearance": rng.random((size,) * 3).astype(np.float32), "shape": shape}


# ------------------------------------------------------------------------------------- MultiNeAR


def test_multinear_round_trip(tmp_path):
    cases = [_cube_case("case_001", 0), _cube_case("case_002", 1)]
    cases[1]["info"] = {"site": "A"}
    root = write_multinear(tmp_path / "near", cases)
    assert is_multinear(root)
    assert sorted(p.name for p in (root / "appearance").iterdir()) == ["case_001.npy", "case_002.npy"]
    assert pd.read_csv(root / "info.csv").columns.tolist()[0] == "id"
    back = read_multinear(root)
    assert [c["case"] for c in back] == ["case_001", "case_002"]
    for a, b in zip(cases, back):
        np.testing.assert_array_equal(a["appearance"], b["appearance"])
        np.testing.assert_array_equal(a["shape"], b["shape"])
        assert b["appearance"].dtype == np.float32 and b["shape"].dtype == np.uint8
    assert back[1]["info"]["site"] == "A"
    lazy = read_multinear(root, lazy=True)
    assert isinstance(lazy[0]["shape"], np.memmap)


def test_multinear_numeric_ids_stay_strings(tmp_path):
    root = write_multinear(tmp_path / "near", [_cube_case("001")])
    assert read_multinear(root)[0]["case"] == "001"


def test_write_multinear_refuses_non_empty_and_leaves_nothing_on_error(tmp_path):
    root = write_multinear(tmp_path / "near", [_cube_case("a")])
    with pytest.raises(InputError, match="exists and is not empty"):
        write_multinear(root, [_cube_case("b")])
    write_multinear(root, [_cube_case("b")], overwrite=True)
    assert [c["case"] for c in read_multinear(root)] == ["b"]
    bad = _cube_case("c")
    bad["shape"] = bad["shape"].astype(np.int16) - 1
    with pytest.raises(InputError, match=r"must be in 0\.\.255"):
        write_multinear(tmp_path / "other", [_cube_case("ok"), bad])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["near"]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda c: c.update(case="a/b"), "cannot be a file name"),
        (lambda c: c.update(shape=c["shape"][:4]), "one shape"),
        (lambda c: c.update(shape=c["shape"] + 0.5), "must be integers"),
    ],
)
def test_write_multinear_bad_cases(tmp_path, mutate, match):
    case = _cube_case("x")
    mutate(case)
    with pytest.raises(InputError, match=match):
        write_multinear(tmp_path / "near", [case])


def test_write_multinear_no_cases(tmp_path):
    with pytest.raises(InputError, match="no cases"):
        write_multinear(tmp_path / "near", [])
    assert list(tmp_path.iterdir()) == []


def test_read_multinear_errors(tmp_path):
    with pytest.raises(InputError, match="info.csv not found"):
        read_multinear(tmp_path)
    root = write_multinear(tmp_path / "near", [_cube_case("a"), _cube_case("b")])
    (root / "shape" / "b.npy").unlink()
    with pytest.raises(InputError, match=r"file not found: .*shape/b\.npy"):
        read_multinear(root)
    (root / "info.csv").write_text("name\na\n")
    with pytest.raises(InputError, match="needs a column 'id'"):
        read_multinear(root)
    (root / "info.csv").write_text("id\na\n")
    np.save(root / "appearance" / "a.npy", np.zeros((4, 4, 4), np.float32))
    with pytest.raises(InputError, match="appearance shape"):
        read_multinear(root)
    (root / "appearance" / "a.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"a\.npy: cannot read"):
        read_multinear(root)


# ------------------------------------------------------------------------------ TotalSegmentator


def _save(array, path, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def _totalseg_case(root, *, overlap=False):
    shape = (12, 10, 8)
    _save(np.random.default_rng(0).normal(size=shape).astype(np.float32), root / "ct.nii.gz")
    masks = {name: np.zeros(shape, np.uint8) for name in ("liver", "spleen", "kidney_left")}
    masks["liver"][1:5, 1:5, 1:4] = 1
    masks["spleen"][6:10, 5:9, 4:7] = 1
    masks["kidney_left"][(4 if overlap else 5) : 6, 1:3, 1:3] = 1
    for name, mask in masks.items():
        _save(mask, root / "segmentations" / f"{name}.nii.gz")
    return masks


def test_totalseg_to_multilabel_all(tmp_path):
    masks = _totalseg_case(tmp_path / "s0000")
    label, classes = totalseg_to_multilabel(tmp_path / "s0000")
    assert classes == {0: "background", 1: "kidney_left", 2: "liver", 3: "spleen"}
    assert label.array.dtype == np.uint8 and label.shape == (12, 10, 8)
    np.testing.assert_allclose(label.affine, AFFINE)
    for value, name in classes.items():
        if value:
            np.testing.assert_array_equal(label.array == value, masks[name] > 0)


def test_totalseg_subset_and_class_table(tmp_path):
    _totalseg_case(tmp_path / "s0000")
    label, classes = totalseg_to_multilabel(tmp_path / "s0000", structures=["spleen", "liver"])
    assert classes == {0: "background", 1: "spleen", 2: "liver"}
    assert set(np.unique(label.array)) == {0, 1, 2}
    table = {1: "spleen", 5: "liver", 2: "kidney_right", 3: "kidney_left"}
    label, classes = totalseg_to_multilabel(tmp_path / "s0000", structures=["liver", "kidney_left"], classes=table)
    assert classes == {0: "background", 3: "kidney_left", 5: "liver"}
    assert set(np.unique(label.array)) == {0, 3, 5}


def test_totalseg_typo_did_you_mean(tmp_path):
    _totalseg_case(tmp_path / "s0000")
    with pytest.raises(InputError, match="no structure 'livr'. Did you mean 'liver'"):
        totalseg_to_multilabel(tmp_path / "s0000", structures=["livr"])
    with pytest.raises(InputError, match=r"not in the class table"):
        totalseg_to_multilabel(tmp_path / "s0000", classes={1: "liver"})
    with pytest.raises(InputError, match="selects no structure"):
        totalseg_to_multilabel(tmp_path / "s0000", structures=[])
    with pytest.raises(ValueError, match="`overlap` must be 'last' or 'error'"):
        totalseg_to_multilabel(tmp_path / "s0000", overlap="first")


def test_totalseg_overlap_later_wins_or_error(tmp_path, caplog):
    masks = _totalseg_case(tmp_path / "s0000", overlap=True)
    with caplog.at_level(logging.WARNING):
        label, classes = totalseg_to_multilabel(tmp_path / "s0000")
    assert "claimed by several structures" in caplog.text
    clash = (masks["liver"] > 0) & (masks["kidney_left"] > 0)
    assert clash.any() and np.all(label.array[clash] == 2)  # liver (2) painted after kidney_left (1)
    with pytest.raises(InputError, match=r"overlap \['kidney_left'\]"):
        totalseg_to_multilabel(tmp_path / "s0000", overlap="error")


def test_totalseg_grid_mismatch_and_missing(tmp_path):
    _totalseg_case(tmp_path / "s0000")
    _save(np.zeros((12, 10, 8), np.uint8), tmp_path / "s0000" / "segmentations" / "liver.nii.gz", affine=np.eye(4))
    with pytest.raises(GeometryError, match="liver.nii.gz"):
        totalseg_to_multilabel(tmp_path / "s0000")
    (tmp_path / "empty" / "segmentations").mkdir(parents=True)
    with pytest.raises(InputError, match="is empty"):
        totalseg_to_multilabel(tmp_path / "empty")
    with pytest.raises(InputError, match="not a TotalSegmentator case"):
        totalseg_structures(tmp_path)


def test_list_totalseg_cases(tmp_path):
    _totalseg_case(tmp_path / "b")
    _totalseg_case(tmp_path / "a")
    (tmp_path / "notes").mkdir()
    assert [p.name for p in list_totalseg_cases(tmp_path)] == ["a", "b"]
    with pytest.raises(InputError, match="no TotalSegmentator cases"):
        list_totalseg_cases(tmp_path / "notes")


def test_multilabel_to_totalseg_round_trip(tmp_path):
    _totalseg_case(tmp_path / "s0000")
    label, classes = totalseg_to_multilabel(tmp_path / "s0000")
    classes[7] = "aorta"  # absent: written empty
    image = Volume(np.ones(label.shape, np.float32), label.affine)
    seg_dir = multilabel_to_totalseg(label, classes, tmp_path / "out", image=image)
    assert sorted(p.name for p in seg_dir.iterdir()) == ["aorta.nii.gz", "kidney_left.nii.gz", "liver.nii.gz", "spleen.nii.gz"]
    assert (tmp_path / "out" / "ct.nii.gz").is_file()
    back, back_classes = totalseg_to_multilabel(tmp_path / "out", classes=classes)
    np.testing.assert_array_equal(back.array, label.array)
    np.testing.assert_allclose(back.affine, label.affine)
    with pytest.raises(InputError, match="exists and is not empty"):
        multilabel_to_totalseg(label, classes, tmp_path / "out")
    seg_dir = multilabel_to_totalseg(label, classes, tmp_path / "out", include_empty=False, overwrite=True)
    assert "aorta.nii.gz" not in [p.name for p in seg_dir.iterdir()]


@pytest.mark.parametrize(
    "classes, match",
    [
        ({1: "a", 2: "a", 3: "b"}, "unique names"),
        ({1: "a/b", 2: "c", 3: "d"}, "file-safe"),
        ({1: "a", 2: "b"}, r"label values \[3\] are not in `classes`"),
    ],
)
def test_multilabel_to_totalseg_bad_classes(tmp_path, classes, match):
    label = Volume(np.arange(4, dtype=np.uint8).reshape(4, 1, 1).repeat(2, 1).repeat(2, 2))
    with pytest.raises(InputError, match=match):
        multilabel_to_totalseg(label, classes, tmp_path / "out")
    assert not (tmp_path / "out" / "segmentations").exists()


def test_totalseg_real_example(shared_data, tmp_path):
    """Split the real TotalSegmentator label into masks and merge them back."""
    from medrefine.data.classes import load_classes
    from medrefine.io import load_label

    label = load_label(shared_data / "ct_seg.nii.gz")
    classes = load_classes(shared_data / "classes.json", task="total")
    present = {int(v) for v in np.unique(label.array)}
    subset = {v: n for v, n in classes.items() if v in present}
    multilabel_to_totalseg(label, subset, tmp_path / "case", include_empty=False)
    back, _ = totalseg_to_multilabel(tmp_path / "case", classes=subset)
    np.testing.assert_array_equal(back.array, label.array)

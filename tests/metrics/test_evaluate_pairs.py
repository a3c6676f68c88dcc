"""Tests of medrefine.metrics.evaluate: folder matching, file evaluation, grids, sources."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medrefine.errors import GeometryError, InputError
from medrefine.io import Volume, save_nifti
from medrefine.metrics import (
    build_sources,
    case_id,
    compute_case_metrics,
    evaluate_pairs,
    match_folders,
    write_sources,
)
from medrefine.metrics.evaluate import list_cases, unmatched_references

AFFINE = np.diag([0.8, 1.2, 2.5, 1.0])


def labels(seed: int, shape=(16, 14, 8)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.uint8)
    out[2:9, 3:10, 1:6] = 1
    out[9:14, 2:8, 3:7] = 2
    shift = tuple(int(s) for s in rng.integers(-1, 2, 3))
    return np.roll(out, shift, axis=(0, 1, 2)) if seed else out


@pytest.fixture()
def folders(tmp_path):
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    for i, case in enumerate(["case_000", "case_001"]):
        save_nifti(Volume(labels(0), AFFINE), ref_dir / f"{case}.nii.gz")
        save_nifti(Volume(labels(i + 1), AFFINE), pred_dir / f"{case}.nii.gz")
    (ref_dir / "notes.txt").write_text("ignored")
    return pred_dir, ref_dir


def test_case_id():
    assert case_id("a/b/ct_1.nii.gz") == "ct_1"
    assert case_id("x.NRRD") == "x"
    assert case_id("case.v2.mha") == "case.v2"


def test_match_folders(folders):
    pred_dir, ref_dir = folders
    pairs = match_folders(pred_dir, ref_dir)
    assert [c for c, _, _ in pairs] == ["case_000", "case_001"]
    assert pairs[0][1] == (pred_dir / "case_000.nii.gz").resolve() and pairs[0][2].is_absolute()
    # one file against a folder: its partner by case id
    single = match_folders(pred_dir / "case_001.nii.gz", ref_dir)
    assert single == [("case_001", pairs[1][1], pairs[1][2])]
    # two files always pair, whatever their names
    assert match_folders(pred_dir / "case_000.nii.gz", ref_dir / "case_001.nii.gz")[0][0] == "case_000"


def test_match_folders_unmatched_lists_cases(folders):
    pred_dir, ref_dir = folders
    save_nifti(Volume(labels(0), AFFINE), pred_dir / "case_009.nii.gz")
    save_nifti(Volume(labels(0), AFFINE), ref_dir / "case_007.nii.gz")
    with pytest.raises(InputError, match=r"(?s)2 matched.*expected a reference in .*ref for every prediction, "
                                         r"found none for: .*pred/case_009.nii.gz.*no prediction in .*pred for: case_007"):
        match_folders(pred_dir, ref_dir)


def test_match_folders_subset(folders):
    pred_dir, ref_dir = folders
    for case in ("case_007", "case_008"):
        save_nifti(Volume(labels(0), AFFINE), ref_dir / f"{case}.nii.gz")
    with pytest.raises(InputError, match=r"to score only the 2 case\(s\) that have a prediction, pass --subset"):
        match_folders(pred_dir, ref_dir)
    pairs = match_folders(pred_dir, ref_dir, subset=True)
    assert [c for c, _, _ in pairs] == ["case_000", "case_001"]
    assert unmatched_references(dict.fromkeys(["case_000", "case_001"]), list_cases(ref_dir)) == ["case_007", "case_008"]
    save_nifti(Volume(labels(0), AFFINE), pred_dir / "case_009.nii.gz")  # a prediction without a reference
    with pytest.raises(InputError, match=r"found none for: .*case_009.nii.gz"):
        match_folders(pred_dir, ref_dir, subset=True)


def test_match_folders_errors(tmp_path, folders):
    pred_dir, ref_dir = folders
    with pytest.raises(InputError, match="prediction folder not found: .*missing"):
        match_folders(tmp_path / "missing", ref_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="reference folder .*empty is empty: no image files"):
        match_folders(pred_dir, tmp_path / "empty")
    save_nifti(Volume(labels(0), AFFINE), pred_dir / "case_000.nii")
    with pytest.raises(InputError, match="two prediction files for case 'case_000'"):
        match_folders(pred_dir, ref_dir)


def test_evaluate_pairs_equals_compute_case_metrics(folders):
    pairs = match_folders(*folders)
    df = evaluate_pairs(pairs, classes={1: "liver", 2: "spleen"})
    assert df["case"].unique().tolist() == ["case_000", "case_001"]
    for case, i in (("case_000", 1), ("case_001", 2)):
        expected = compute_case_metrics(labels(i), labels(0), spacing=(0.8, 1.2, 2.5), classes={1: "liver", 2: "spleen"}, case=case)
        got = df[df["case"] == case].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected)


def test_evaluate_pairs_fills_absent_classes_without_table(tmp_path):
    pred_dir, ref_dir = tmp_path / "p", tmp_path / "r"
    a = labels(0)
    b = a.copy()
    b[b == 2] = 5  # case b: class 5 instead of 2 in both
    for case, arr in (("a", a), ("b", b)):
        save_nifti(Volume(arr, AFFINE), pred_dir / f"{case}.nii.gz")
        save_nifti(Volume(arr, AFFINE), ref_dir / f"{case}.nii.gz")
    df = evaluate_pairs(match_folders(pred_dir, ref_dir))
    assert sorted(df["class_id"].unique()) == [1, 2, 5]
    assert len(df) == 2 * 3 * 5
    row = df[(df["case"] == "a") & (df["class_id"] == 5)]
    assert (row["status"] == "absent_both").all() and row["value"].isna().all()
    assert df["class_name"].tolist()[:1] == ["class_1"]


def test_grid_mismatch_names_both_files(tmp_path):
    pred = save_nifti(Volume(labels(0), AFFINE), tmp_path / "pred.nii.gz")
    flipped = AFFINE.copy()
    flipped[1, 1] = -1.2  # same shape and spacing, other orientation
    flipped[1, 3] = 13 * 1.2
    ref = save_nifti(Volume(np.flip(labels(0), axis=1).copy(), flipped), tmp_path / "ref.nii.gz")
    with pytest.raises(GeometryError, match=r"(?s)pred\.nii\.gz and .*ref\.nii\.gz .*share one voxel grid.*`resample=True`"):
        evaluate_pairs([("c", pred, ref)])
    df = evaluate_pairs([("c", pred, ref)], resample=True)
    # the flipped copy is the same label in world space: resampling recovers a perfect match
    assert (df.loc[df["metric"] == "dice", "value"] == 1.0).all()
    assert (df.loc[df["metric"] == "hd95", "value"] == 0.0).all()


def test_evaluate_pairs_validation(folders):
    pairs = match_folders(*folders)
    with pytest.raises(ValueError, match=r"unique case ids, got duplicates \['case_000'\]"):
        evaluate_pairs([pairs[0], pairs[0]])
    with pytest.raises(ValueError, match="`workers` must be >= 1, got 0"):
        evaluate_pairs(pairs, workers=0)
    assert evaluate_pairs([]).empty


@pytest.mark.slow
def test_parallel_workers_same_result(folders):
    pairs = match_folders(*folders)
    serial = evaluate_pairs(pairs, classes=3)
    parallel = evaluate_pairs(pairs, classes=3, workers=2)
    pd.testing.assert_frame_equal(serial, parallel)


def test_sources(folders, tmp_path):
    pairs = match_folders(*folders)
    sources = build_sources(pairs, {0: "background", 1: "liver"}, images={"case_001": tmp_path / "img.nii.gz"})
    assert sources["classes"] == {"1": "liver"}
    assert sources["cases"]["case_000"] == {"pred": str(pairs[0][1]), "ref": str(pairs[0][2]), "image": None}
    assert sources["cases"]["case_001"]["image"] == str((tmp_path / "img.nii.gz").resolve())
    path = write_sources(sources, tmp_path / "m.sources.json")
    assert json.loads(path.read_text()) == sources

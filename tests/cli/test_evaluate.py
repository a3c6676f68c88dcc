"""Tests of ``medrefine evaluate`` through click's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from medrefine.cli import cli
from medrefine.io import Volume, save_nifti

AFFINE = np.diag([0.8, 1.2, 2.5, 1.0])


def labels(shift: int = 0) -> np.ndarray:
    out = np.zeros((16, 14, 8), np.uint8)
    out[2:9, 3:10, 1:6] = 1
    out[9:14, 2:8, 3:7] = 2
    return np.roll(out, shift, axis=0)


@pytest.fixture()
def cohort(tmp_path):
    """cohort/{labels, labels_noisy, images}/case_00{0,1}.nii.gz + cohort/classes.json."""
    root = tmp_path / "cohort"
    for i, case in enumerate(["case_000", "case_001"]):
        save_nifti(Volume(labels(), AFFINE), root / "labels" / f"{case}.nii.gz")
        save_nifti(Volume(labels(i), AFFINE), root / "labels_noisy" / f"{case}.nii.gz")
        save_nifti(Volume(np.zeros((16, 14, 8), np.float32), AFFINE), root / "images" / f"{case}.nii.gz")
    (root / "classes.json").write_text(json.dumps({"0": "background", "1": "liver", "2": "spleen"}))
    return root


def invoke(*args: str):
    return CliRunner().invoke(cli, ["evaluate", *args], catch_exceptions=False)


def test_evaluate_writes_csv_sources_and_summary(cohort, tmp_path):
    out = tmp_path / "res" / "metrics.csv"
    result = invoke("--pred", str(cohort / "labels_noisy"), "--ref", str(cohort / "labels"),
                    "--images", str(cohort / "images"), "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    assert list(df.columns) == ["case", "class_id", "class_name", "metric", "value", "status"]
    assert len(df) == 2 * 2 * 5
    assert set(df["class_name"]) == {"liver", "spleen"}  # from cohort/classes.json
    case0 = df[df["case"] == "case_000"]
    assert (case0.loc[case0["metric"] == "dice", "value"] == 1).all()
    case1_dice = df[(df["case"] == "case_001") & (df["metric"] == "dice")].set_index("class_name")["value"]
    assert case1_dice["liver"] == pytest.approx(2 * 6 / 14, abs=1e-6)  # 7 slabs shifted by one: 6 shared

    sources = json.loads((out.parent / "metrics.sources.json").read_text())
    assert sources["classes"] == {"1": "liver", "2": "spleen"}
    assert sources["cases"]["case_001"] == {
        "pred": str((cohort / "labels_noisy" / "case_001.nii.gz").resolve()),
        "ref": str((cohort / "labels" / "case_001.nii.gz").resolve()),
        "image": str((cohort / "images" / "case_001.nii.gz").resolve()),
    }
    assert "dice mean" in result.output and "liver" in result.output
    lines = result.output.splitlines()
    # sorted by mean Dice, best first: liver (6/7 after the shift) before spleen (4/5)
    assert lines.index(next(l for l in lines if "liver" in l)) < lines.index(next(l for l in lines if "spleen" in l))
    assert "wrote" in result.output


def test_evaluate_classes_option_and_metrics(cohort, tmp_path):
    table = tmp_path / "ts.json"
    table.write_text(json.dumps({"total": {"1": "spleen_ts", "2": "kidney_ts"}, "total_mr": {"1": "x"}}))
    out = tmp_path / "m.csv"
    result = invoke("--pred", str(cohort / "labels_noisy"), "--ref", str(cohort / "labels"), "--classes", str(table),
                    "--task", "total", "--metrics", "dice,hd95", "--nsd-tolerance", "2", "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    assert set(df["class_name"]) == {"spleen_ts", "kidney_ts"}
    assert set(df["metric"]) == {"dice", "hd95"}
    result = invoke("--pred", str(cohort / "labels_noisy"), "--ref", str(cohort / "labels"), "--classes", str(table),
                    "--task", "totl", "--out", str(out))
    assert result.exit_code == 3 and "Did you mean 'total'" in result.output


def test_evaluate_bad_metric_and_unknown_option(cohort, tmp_path):
    args = ["--pred", str(cohort / "labels_noisy"), "--ref", str(cohort / "labels"), "--out", str(tmp_path / "m.csv")]
    result = invoke(*args, "--metrics", "dice,hausdorf")
    assert result.exit_code == 3 and "unknown metric 'hausdorf'" in result.output
    result = invoke(*args, "--resampel")
    assert result.exit_code == 2 and "--resampel" in result.output
    assert not (tmp_path / "m.csv").exists()


def test_evaluate_unmatched_cases(cohort, tmp_path):
    save_nifti(Volume(labels(), AFFINE), cohort / "labels_noisy" / "case_005.nii.gz")
    result = invoke("--pred", str(cohort / "labels_noisy"), "--ref", str(cohort / "labels"), "--out", str(tmp_path / "m.csv"))
    assert result.exit_code == 3
    assert "found none for:" in result.output and "case_005.nii.gz" in result.output


def test_evaluate_mismatched_grid_needs_resample(tmp_path):
    pred = save_nifti(Volume(labels(), AFFINE), tmp_path / "pred" / "c.nii.gz")
    other = np.diag([1.6, 2.4, 2.5, 1.0])  # half the in-plane resolution
    coarse = labels()[::2, ::2]
    save_nifti(Volume(coarse, other), tmp_path / "ref" / "c.nii.gz")
    out = tmp_path / "m.csv"
    result = invoke("--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--out", str(out), "--no-progress")
    assert result.exit_code == 3
    assert str(pred) in result.output and str(tmp_path / "ref" / "c.nii.gz") in result.output
    assert "--resample" in result.output and not out.exists()
    result = invoke("--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--out", str(out), "--resample", "--no-progress")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["value"].notna().all()


def test_evaluate_parallel_workers(cohort, tmp_path):
    out1, out2 = tmp_path / "a.csv", tmp_path / "b.csv"
    base = ["--pred", str(cohort / "labels_noisy"), "--ref", str(cohort / "labels"), "--no-progress"]
    assert invoke(*base, "--out", str(out1)).exit_code == 0
    assert invoke(*base, "--out", str(out2), "--workers", "2").exit_code == 0
    assert out1.read_text() == out2.read_text()


def test_command_module_imports_only_click():
    code = "import sys, medrefine.cli.evaluate; print(sorted(m for m in ('numpy', 'pandas', 'torch', 'scipy') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.shared_data
def test_dicom_seg_against_series_grid(shared_data, tmp_path):
    """ct_dicom_seg.nii.gz is not on the DICOM series' grid: refused naming both files, unless --resample."""
    from medrefine.io import load_image, load_label, resample_to

    seg = shared_data / "ct_dicom_seg.nii.gz"
    series = load_image(shared_data / "ct_dicom")
    on_series = resample_to(load_label(seg), series, order=0)
    ref = save_nifti(on_series, tmp_path / "series_label.nii.gz")
    out = tmp_path / "m.csv"
    result = invoke("--pred", str(seg), "--ref", str(ref), "--out", str(out), "--no-progress")
    assert result.exit_code == 3  # a refused input (INPUT_ERROR_EXIT_CODE)
    assert str(seg.resolve()) in result.output and str(ref.resolve()) in result.output  # paths are shown resolved
    assert "share one voxel grid" in result.output and "--resample" in result.output
    result = invoke("--pred", str(seg), "--ref", str(ref), "--out", str(out), "--resample", "--no-progress",
                    "--classes", str(shared_data / "classes.json"), "--task", "total", "--metrics", "dice,hd95")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    present = df[df["status"] == "present"]
    assert present["class_id"].nunique() == 31
    # the reference is the segmentation itself moved onto the series grid: a perfect match
    assert np.allclose(present.loc[present["metric"] == "dice", "value"], 1.0)
    assert np.allclose(present.loc[present["metric"] == "hd95", "value"], 0.0)


@pytest.fixture()
def sixteen_references(tmp_path):
    """ref/case_000..case_015 and pred/ holding predictions for case_002, case_005, case_009, case_013 only."""
    for i in range(16):
        save_nifti(Volume(labels(), AFFINE), tmp_path / "ref" / f"case_{i:03d}.nii.gz")
    for i in (2, 5, 9, 13):
        save_nifti(Volume(labels(1), AFFINE), tmp_path / "pred" / f"case_{i:03d}.nii.gz")
    return tmp_path / "pred", tmp_path / "ref"


def test_evaluate_without_subset_refuses_and_suggests_it(sixteen_references, tmp_path):
    pred, ref = sixteen_references
    out = tmp_path / "m.csv"
    result = invoke("--pred", str(pred), "--ref", str(ref), "--out", str(out), "--no-progress")
    assert result.exit_code == 3
    assert "(4 matched)" in result.output and "no prediction in" in result.output
    assert "case_000, case_001, case_003" in result.output and "case_002," not in result.output
    assert "to score only the 4 case(s) that have a prediction, pass --subset" in result.output
    assert not out.exists()


def test_evaluate_subset_scores_the_predicted_cases_and_names_the_skipped(sixteen_references, tmp_path):
    pred, ref = sixteen_references
    out = tmp_path / "m.csv"
    result = invoke("--pred", str(pred), "--ref", str(ref), "--out", str(out), "--subset", "--no-progress",
                    "--metrics", "dice")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    assert sorted(df["case"].unique()) == ["case_002", "case_005", "case_009", "case_013"]
    assert len(df) == 4 * 2  # 4 cases x 2 classes x dice
    notes = [line for line in result.output.splitlines() if line.startswith("--subset:")]
    assert notes == ["--subset: scoring 4 of 16 reference case(s); skipped 12 without a prediction: "
                     "case_000, case_001, case_003, ..., case_015"]
    assert "4 case(s), 2 class(es)" in result.output
    # every prediction is shifted by one slab: liver 2*6/14 in each of the four cases
    liver = df[(df["class_id"] == 1) & (df["metric"] == "dice")]["value"]
    assert np.allclose(liver, 2 * 6 / 14)


def test_evaluate_subset_of_all_cases_prints_no_note(cohort, tmp_path):
    result = invoke("--pred", str(cohort / "labels_noisy"), "--ref", str(cohort / "labels"),
                    "--out", str(tmp_path / "m.csv"), "--subset", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "--subset:" not in result.output and "2 case(s)" in result.output


def test_evaluate_subset_against_a_dataset_ref(cohort, tmp_path):
    """--ref a dataset (images/ + labels/): the same subset rule over the cohort's cases."""
    pred = tmp_path / "pred"
    save_nifti(Volume(labels(), AFFINE), pred / "case_001.nii.gz")
    out = tmp_path / "m.csv"
    result = invoke("--pred", str(pred), "--ref", str(cohort), "--out", str(out), "--no-progress")
    assert result.exit_code == 3 and "--subset" in result.output and "case_000" in result.output
    result = invoke("--pred", str(pred), "--ref", str(cohort), "--out", str(out), "--subset", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "--subset: scoring 1 of 2 reference case(s); skipped 1 without a prediction: case_000" in result.output
    assert set(pd.read_csv(out)["case"]) == {"case_001"}


def test_evaluate_prediction_without_reference_is_refused_even_with_subset(sixteen_references, tmp_path):
    pred, ref = sixteen_references
    extra = save_nifti(Volume(labels(), AFFINE), pred / "case_099.nii.gz")
    out = tmp_path / "m.csv"
    for flags in ((), ("--subset",)):
        result = invoke("--pred", str(pred), "--ref", str(ref), "--out", str(out), "--no-progress", *flags)
        assert result.exit_code == 3
        assert f"expected a reference in {ref.resolve()} for every prediction, found none for: {extra.resolve()}" in result.output
        assert not out.exists()

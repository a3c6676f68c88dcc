"""CLI tests for `medrefine prepare` and `medrefine validate` (exit codes, messages, outputs)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from medrefine.cli import cli

SHAPE = (24, 20, 12)
AFFINE = np.diag([1.2, 1.0, 2.5, 1.0])


def _cohort(root, n=2):
    for i in range(n):
        label = np.zeros(SHAPE, np.uint8)
        label[5:15, 4:12, 3:8] = 1
        label[15:20, 12:17, 5:9] = 2
        image = (label * 200.0 + np.random.default_rng(i).normal(0, 5, SHAPE)).astype(np.float32)
        for folder, array in (("images", image), ("labels", label)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, AFFINE), str(root / folder / f"case_{i}.nii.gz"))
    entries = [{"case": f"case_{i}", "image": f"images/case_{i}.nii.gz", "label": f"labels/case_{i}.nii.gz"} for i in range(n)]
    (root / "datalist.json").write_text(json.dumps({"labels": {"0": "background", "1": "a", "2": "b"}, "training": entries}))
    return root


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _leftovers(parent, name):
    return [p.name for p in parent.iterdir() if p.name == name or p.name.startswith(f".{name}")]


def test_prepare_from_datalist(tmp_path):
    root = _cohort(tmp_path / "cohort")
    result = _run("prepare", "--datalist", root / "datalist.json", "--out", tmp_path / "prep", "--size", 16,
                  "--margin", 3, "--layout", "multinear")
    assert result.exit_code == 0, result.output
    out = tmp_path / "prep"
    assert (out / "prepare_info.json").is_file() and (out / "info.csv").is_file()
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["case_0.nii.gz", "case_1.nii.gz"]
    assert nib.load(str(out / "images" / "case_0.nii.gz")).shape == (16, 16, 16)
    assert json.loads((out / "prepare_info.json").read_text())["margin_mm"] == [3.0, 3.0, 3.0]
    # the prepared folder validates cleanly
    result = _run("validate", out)
    assert result.exit_code == 0 and "no problems found" in result.output


def test_prepare_from_folders(tmp_path):
    root = _cohort(tmp_path / "cohort")
    result = _run("prepare", "--images", root / "images", "--labels", root / "labels", "--out", tmp_path / "prep",
                  "--size", 8)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "prep" / "datalist.json").read_text())["training"][0]["image"] == "images/case_0.nii.gz"


def test_prepare_missing_file_in_datalist(tmp_path):
    root = _cohort(tmp_path / "cohort")
    (root / "labels" / "case_1.nii.gz").unlink()
    result = _run("prepare", "--datalist", root / "datalist.json", "--out", tmp_path / "prep", "--size", 8)
    assert result.exit_code == 3
    assert "Error:" in result.output and "file not found" in result.output and "case_1.nii.gz" in result.output
    assert _leftovers(tmp_path, "prep") == []


def test_prepare_empty_folders(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    result = _run("prepare", "--images", tmp_path / "images", "--labels", tmp_path / "labels", "--out", tmp_path / "prep")
    assert result.exit_code == 3 and "is empty" in result.output
    assert _leftovers(tmp_path, "prep") == []


def test_prepare_unmatched_files(tmp_path):
    root = _cohort(tmp_path / "cohort")
    (root / "labels" / "case_1.nii.gz").rename(root / "labels" / "case_9.nii.gz")
    result = _run("prepare", "--images", root / "images", "--labels", root / "labels", "--out", tmp_path / "prep")
    assert result.exit_code == 3 and "unmatched" in result.output and "case_9" in result.output


@pytest.mark.parametrize("out", ["cohort", "cohort/images"])
def test_prepare_refuses_input_folder(tmp_path, out):
    root = _cohort(tmp_path / "cohort")
    before = sorted(p.name for p in (root / "images").iterdir())
    result = _run("prepare", "--datalist", root / "datalist.json", "--out", tmp_path / out, "--size", 8)
    assert result.exit_code == 3 and "input folder" in result.output
    assert sorted(p.name for p in (root / "images").iterdir()) == before


def test_prepare_bad_case_midway_leaves_nothing(tmp_path):
    root = _cohort(tmp_path / "cohort")
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), np.eye(4)), str(root / "labels" / "case_1.nii.gz"))
    result = _run("prepare", "--datalist", root / "datalist.json", "--out", tmp_path / "prep", "--size", 8)
    assert result.exit_code == 3 and "case 'case_1'" in result.output
    assert _leftovers(tmp_path, "prep") == []


@pytest.mark.parametrize(
    "args, match",
    [
        (["--out", "x"], "give --datalist, or both --images and --labels"),
        (["--datalist", "{dl}", "--images", "{img}", "--out", "x"], "not both"),
        (["--datalist", "{dl}"], "Missing option '--out'"),
        (["--datalist", "{dl}", "--out", "x", "--layout", "nifit"], "Invalid value for '--layout'"),
        (["--datalist", "{dl}", "--out", "x", "--size", "0"], "Invalid value for '--size'"),
        (["--datalist", "nope.json", "--out", "x"], "does not exist"),
        (["--datalist", "{dl}", "--out", "x", "--bogus"], "No such option"),
    ],
)
def test_prepare_usage_errors(tmp_path, args, match):
    root = _cohort(tmp_path / "cohort", n=1)
    args = [a.format(dl=root / "datalist.json", img=root / "images") for a in args]
    result = _run("prepare", *args)
    assert result.exit_code == 2 and match in result.output
    assert not (tmp_path / "x").exists()


def test_validate_reports_problems_and_exit_code(tmp_path):
    root = _cohort(tmp_path / "cohort", n=3)
    nib.save(nib.Nifti1Image(np.full(SHAPE, 5, np.uint8), AFFINE), str(root / "labels" / "case_1.nii.gz"))
    (root / "labels" / "case_2.nii.gz").unlink()
    result = _run("validate", root)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].split() == ["case", "file", "severity", "problem"]
    assert any("case_1" in l and "num_classes=3" in l for l in lines)
    assert any("case_2" in l and "found no file" in l for l in lines)
    assert "2 error(s), 0 warning(s) in 2 case(s)" in result.output
    result = _run("validate", root / "datalist.json", "--num-classes", 6, "--key", "training")
    assert result.exit_code == 1 and "num_classes" not in result.output


def test_validate_warning_only_exits_zero(tmp_path):
    root = _cohort(tmp_path / "cohort", n=1)
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), AFFINE), str(root / "labels" / "case_0.nii.gz"))
    result = _run("validate", root)
    assert result.exit_code == 0 and "warning" in result.output and "label is empty" in result.output


def test_validate_empty_folder_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _run("validate", tmp_path / "empty")
    assert result.exit_code == 3 and "Error:" in result.output and "found an empty folder" in result.output
    result = _run("validate", tmp_path / "nope")
    assert result.exit_code == 2 and "does not exist" in result.output
    result = _run("validate", tmp_path / "empty", "--num-classes", 0)
    assert result.exit_code == 2


@pytest.mark.parametrize("how", ["folders", "datalist"])
def test_prepared_datalist_paths_hold_after_the_rename(tmp_path, monkeypatch, how):
    """Regression: with a relative --out the datalist pointed into `.prep.tmp-xxxx/`."""
    from medrefine.data.cohort import load_cohort
    from medrefine.data.validate import validate_dataset
    from medrefine.workflows.near import load_refinement_cases

    _cohort(tmp_path / "raw")
    monkeypatch.chdir(tmp_path)
    args = ["--images", "raw/images", "--labels", "raw/labels"] if how == "folders" else ["--datalist", "raw/datalist.json"]
    result = _run("prepare", *args, "--out", "prep", "--size", 12, "--margin", 2)
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "prep" / "datalist.json").read_text())["training"]
    assert [e["image"] for e in stored] == ["images/case_0.nii.gz", "images/case_1.nii.gz"]
    assert not any(".tmp-" in v for e in stored for v in e.values())
    cohort = load_cohort(tmp_path / "prep")
    assert cohort.case_ids == ["case_0", "case_1"]
    assert cohort.cases[1]["label"] == str((tmp_path / "prep" / "labels" / "case_1.nii.gz").resolve())
    assert validate_dataset(tmp_path / "prep").empty
    cases = load_refinement_cases(tmp_path / "prep", size=8, num_classes=3)
    assert cases[0]["info"]["original_shape"] == [12, 12, 12]  # the prepared cube is the input now


@pytest.mark.slow
def test_refinement_bundle_trains_on_a_prepared_folder(tmp_path, monkeypatch):
    """`medrefine prepare` output is data the annotation_refinement bundle trains on (1 epoch)."""
    import shutil

    from medrefine.bundle import find_bundle, run_workflow

    _cohort(tmp_path / "raw")
    monkeypatch.chdir(tmp_path)
    assert _run("prepare", "--images", "raw/images", "--labels", "raw/labels", "--out", "prep", "--size", 16).exit_code == 0
    root = tmp_path / "bundle"
    shutil.copytree(find_bundle("annotation_refinement").path, root, ignore=shutil.ignore_patterns("models", "eval"))
    run_workflow(root, "train", {"dataset_dir": str(tmp_path / "prep"), "device": "cpu", "epochs": 1, "num_classes": 3, "work_dir": str(root)},
                 extra_configs=[root / "configs" / "smoke.json"])
    assert (root / "models" / "model.pt").is_file()

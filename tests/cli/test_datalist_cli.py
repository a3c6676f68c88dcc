"""Tests of ``medrefine datalist`` through click's CliRunner: pairing by case name, exit codes."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from medrefine.cli import cli
from medrefine.data.cohort import load_cohort
from medrefine.errors import INPUT_ERROR_EXIT_CODE
from medrefine.io import Volume, save_nifti


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _write(folder, *names):
    label = np.zeros((6, 5, 4), np.uint8)
    label[1:4, 1:3, 1:3] = 1
    for name in names:
        save_nifti(Volume(label, np.eye(4)), folder / name)


def test_datalist_pairs_by_case_name(tmp_path):
    # images named the nnU-Net way, a .nii label, a class table beside the labels' folder
    _write(tmp_path / "ds" / "imagesTr", "la_003_0000.nii.gz", "la_007_0000.nii.gz")
    _write(tmp_path / "ds" / "labelsTr", "la_003.nii.gz", "la_007.nii")
    _write(tmp_path / "ds" / "clean", "la_003.nii.gz", "la_007.nii.gz")
    (tmp_path / "ds" / "classes.json").write_text(json.dumps({"0": "background", "1": "atrium"}))
    out = tmp_path / "lists" / "datalist.json"
    result = _run("datalist", tmp_path / "ds" / "imagesTr", tmp_path / "ds" / "labelsTr", "--out", out,
                  "--ref", tmp_path / "ds" / "clean")
    assert result.exit_code == 0, result.output
    assert "2 case(s)" in result.output
    data = json.loads(out.read_text())
    first = data["training"][0]
    assert first == {"case": "la_003", "image": "../ds/imagesTr/la_003_0000.nii.gz",
                     "label": "../ds/labelsTr/la_003.nii.gz", "label_clean": "../ds/clean/la_003.nii.gz"}
    assert data["labels"] == {"0": "background", "1": "atrium"}
    cohort = load_cohort(out)  # the cohort loader reads what it wrote
    assert cohort.case_ids == ["la_003", "la_007"] and cohort.classes == {0: "background", 1: "atrium"}
    assert cohort.cases[1]["label"].endswith("labelsTr/la_007.nii")


def test_datalist_other_key(tmp_path):
    _write(tmp_path / "i", "a.nii.gz")
    _write(tmp_path / "l", "a.nii.gz")
    result = _run("datalist", tmp_path / "i", tmp_path / "l", "--out", tmp_path / "d.json", "--key", "test")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "d.json").read_text())
    assert "training" not in data and data["test"][0]["case"] == "a"


def test_datalist_unpaired_files_one_line(tmp_path):
    _write(tmp_path / "i", "a.nii.gz", "b.nii.gz")
    _write(tmp_path / "l", "a.nii.gz")
    (tmp_path / "l" / "c.nrrd").write_bytes(b"")  # paired by name only: never opened
    result = _run("datalist", tmp_path / "i", tmp_path / "l", "--out", tmp_path / "d.json")
    assert result.exit_code == INPUT_ERROR_EXIT_CODE
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and len(result.output.strip().splitlines()) == 1
    assert "2 unmatched" in errors[0] and "b.nii.gz" in errors[0] and "c.nrrd" in errors[0]
    assert not (tmp_path / "d.json").exists()

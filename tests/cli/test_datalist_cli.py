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


def _totalseg(root, cases=("s1", "s0")):
    """TotalSegmentator cases: liver x 0..2, spleen x 4..5, aorta x 7..8 (aorta empty in s0)."""
    shape = (10, 9, 8)
    for cid in cases:
        save_nifti(Volume(np.zeros(shape, np.float32), np.diag([1.5, 1.5, 2.0, 1.0])), root / cid / "ct.nii.gz")
        for name, rows in (("liver", slice(0, 3)), ("spleen", slice(4, 6)), ("aorta", slice(7, 9))):
            mask = np.zeros(shape, np.uint8)
            if not (cid == "s0" and name == "aorta"):
                mask[rows] = 1
            save_nifti(Volume(mask, np.diag([1.5, 1.5, 2.0, 1.0])), root / cid / "segmentations" / f"{name}.nii.gz")
    return root


def test_datalist_from_totalsegmentator_cases(tmp_path):
    import nibabel as nib

    root = _totalseg(tmp_path / "ts")
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    result = _run("datalist", root, "--out", tmp_path / "lists" / "ts.json")
    assert result.exit_code == 0, result.output
    assert "2 case(s)" in result.output and "3 structures merged" in result.output
    data = json.loads((tmp_path / "lists" / "ts.json").read_text())
    assert data["labels"] == {"0": "background", "1": "aorta", "2": "liver", "3": "spleen"}  # alphabetical
    assert data["training"][0] == {"case": "s0", "image": "../ts/s0/ct.nii.gz", "label": "ts_labels/labels/s0.nii.gz"}
    merged = np.asarray(nib.load(str(tmp_path / "lists" / "ts_labels" / "labels" / "s1.nii.gz")).dataobj)
    assert merged[1, 0, 0] == 2 and merged[5, 0, 0] == 3 and merged[8, 0, 0] == 1 and merged[3, 0, 0] == 0
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before  # nothing written into the cases
    cohort = load_cohort(tmp_path / "lists" / "ts.json")
    assert cohort.case_ids == ["s0", "s1"] and cohort.classes[3] == "spleen"


def test_datalist_from_totalsegmentator_structure_subset_and_refused_target(tmp_path):
    root = _totalseg(tmp_path / "ts")
    result = _run("datalist", root, "--out", tmp_path / "ts.json", "--structures", "spleen", "--structures", "liver")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ts.json").read_text())["labels"] == {"0": "background", "1": "spleen", "2": "liver"}
    result = _run("datalist", root, "--out", tmp_path / "x.json", "--structures", "livr")
    assert result.exit_code == INPUT_ERROR_EXIT_CODE and "did you mean 'liver'" in result.output.lower()
    result = _run("datalist", root, "--out", tmp_path / "y.json", "--merged-labels", root / "s0" / "merged")
    assert result.exit_code == INPUT_ERROR_EXIT_CODE and "outside the case folders" in result.output
    assert not (root / "s0" / "merged").exists()


def _dicom_series(folder, depth=3):
    import locale

    import SimpleITK as sitk

    folder.mkdir(parents=True)
    for z in range(depth):
        slab = sitk.GetImageFromArray(np.full((1, 6, 5), z, np.int16))[:, :, 0]
        for tag, value in (("0008|0060", "CT"), ("0020|000e", "1.2.3.4"), ("0020|0013", str(z + 1)),
                           ("0020|0032", f"0\\0\\{2.0 * z}"), ("0020|0037", "1\\0\\0\\0\\1\\0")):
            slab.SetMetaData(tag, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"{z}.dcm"))
        before = locale.setlocale(locale.LC_CTYPE)
        writer.Execute(slab)
        locale.setlocale(locale.LC_CTYPE, before)  # GDCM's writer sets LC_CTYPE to "C" for the whole process


def test_datalist_with_dicom_series_images(tmp_path):
    _dicom_series(tmp_path / "dicom" / "ct_a")
    _dicom_series(tmp_path / "dicom" / "ct_b")
    _write(tmp_path / "labels", "ct_a.nii.gz", "ct_b.nii.gz")
    result = _run("datalist", tmp_path / "dicom", tmp_path / "labels", "--out", tmp_path / "d.json")
    assert result.exit_code == 0, result.output
    entries = json.loads((tmp_path / "d.json").read_text())["training"]
    assert entries == [{"case": "ct_a", "image": "dicom/ct_a", "label": "labels/ct_a.nii.gz"},
                       {"case": "ct_b", "image": "dicom/ct_b", "label": "labels/ct_b.nii.gz"}]
    # without labels: images only (for inference), from series folders or from one series
    result = _run("datalist", tmp_path / "dicom", "--out", tmp_path / "infer.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "infer.json").read_text())["training"][1] == {"case": "ct_b", "image": "dicom/ct_b"}
    result = _run("datalist", tmp_path / "dicom" / "ct_a", "--out", tmp_path / "one.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "one.json").read_text())["training"] == [{"case": "ct_a", "image": "dicom/ct_a"}]

"""``medrefine segment`` through click's CliRunner, with a model the bundle's smoke config trains on phantoms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from medrefine.bundle import find_bundle, run_workflow
from medrefine.cli import cli
from medrefine.errors import INPUT_ERROR_EXIT_CODE

BUNDLE = find_bundle("multiorgan_ct_segmentation")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(phantom cohort, model folder): two 32^3 cardiac phantoms, one smoke epoch of the bundle's train."""
    from medrefine.data.phantoms import make_cardiac_cohort

    base = tmp_path_factory.mktemp("segment")
    cohort = base / "cohort"
    make_cardiac_cohort(cohort, cases=2, size=32, noise="none", seed=5)
    root = base / "bundle"
    shutil.copytree(BUNDLE.path, root, ignore=shutil.ignore_patterns("models", "eval", "inference", "logs"))
    run_workflow(root, "train", {"dataset_dir": str(cohort), "device": "cpu", "epochs": 1, "bundle_root": str(root),
                                 "model_dir": str(root / "models"), "log_dir": str(root / "logs"),
                                 "output_dir": str(root / "eval")},
                 extra_configs=[root / "configs" / "smoke.json"])
    return cohort, root / "models"


def _run(*args, cwd: Path):
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=cwd):
        result = runner.invoke(cli, ["segment", *[str(a) for a in args]])
        outputs = {p.relative_to(Path.cwd()).as_posix() for p in Path.cwd().rglob("*") if p.is_file()}
        return result, Path.cwd(), outputs


def _geometry(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
    img = nib.load(str(path))
    return img.shape, img.affine


def _model_classes(model_dir: Path) -> dict[str, str]:
    return json.loads((model_dir / "model.json").read_text())["classes"]


def test_one_file_keeps_geometry_and_classes(trained, tmp_path):
    cohort, model = trained
    image = cohort / "images" / "case_000.nii.gz"
    result, cwd, outputs = _run("-i", image.resolve(), "-o", "seg", "--model", model, "--device", "cpu", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert outputs == {"seg/case_000.nii.gz", "seg/classes.json"}
    shape, affine = _geometry(cwd / "seg" / "case_000.nii.gz")
    in_shape, in_affine = _geometry(image)
    assert shape == in_shape
    np.testing.assert_allclose(affine, in_affine, atol=1e-5)
    classes = json.loads((cwd / "seg" / "classes.json").read_text())
    assert classes == _model_classes(model) and classes["1"] == "myocardium" and len(classes) == 11
    values = set(np.unique(np.asarray(nib.load(str(cwd / "seg" / "case_000.nii.gz")).dataobj)).tolist())
    assert values <= {int(k) for k in classes}
    assert "segmented 1 case(s) into 10 structure(s)" in result.output


def test_folder_with_roi_subset_and_non_ras_input(trained, tmp_path):
    """A folder of two images, one of them LPS-oriented with anisotropic voxels; two structures kept."""
    cohort, model = trained
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(cohort / "images" / "case_001.nii.gz", folder / "a.nii.gz")
    src = nib.load(str(cohort / "images" / "case_000.nii.gz"))
    lps = np.array([[-1.2, 0, 0, 20.0], [0, -0.9, 0, 15.0], [0, 0, 1.7, -4.0], [0, 0, 0, 1]])
    data = np.asarray(src.dataobj)[:, :30, :27]
    nib.save(nib.Nifti1Image(data, lps), str(folder / "b.nii.gz"))
    names = [_model_classes(model)[k] for k in ("1", "3")]
    result, cwd, outputs = _run("-i", folder, "-o", "seg", "--model", model, "--roi-subset", *names, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert outputs == {"seg/a.nii.gz", "seg/b.nii.gz", "seg/classes.json"}
    assert json.loads((cwd / "seg" / "classes.json").read_text()) == {"0": "background", "1": names[0], "3": names[1]}
    shape, affine = _geometry(cwd / "seg" / "b.nii.gz")
    assert shape == data.shape
    np.testing.assert_allclose(affine, lps, atol=1e-5)
    for case in ("a", "b"):
        values = set(np.unique(np.asarray(nib.load(str(cwd / "seg" / f"{case}.nii.gz")).dataobj)).tolist())
        assert values <= {0, 1, 3}


def test_one_file_per_structure_matches_the_label_map(trained, tmp_path):
    cohort, model = trained
    image = (cohort / "images" / "case_000.nii.gz").resolve()
    result, cwd, outputs = _run("-i", image, "-o", "multi", "--model", model, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    label = np.asarray(nib.load(str(cwd / "multi" / "case_000.nii.gz")).dataobj)
    result, cwd2, outputs = _run("-i", image, "-o", "per", "--model", model, "--one-file-per-structure",
                                 "--roi-subset", "myocardium", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert outputs == {"per/case_000/myocardium.nii.gz", "per/classes.json"}
    mask = np.asarray(nib.load(str(cwd2 / "per" / "case_000" / "myocardium.nii.gz")).dataobj)
    np.testing.assert_array_equal(mask, (label == 1).astype(np.uint8))


def test_low_memory_gives_the_same_labels(trained, tmp_path):
    cohort, model = trained
    image = (cohort / "images" / "case_001.nii.gz").resolve()
    maps = []
    for flag, said in (("--low-memory", True), ("--no-low-memory", False)):
        result, cwd, _ = _run("-i", image, "-o", "seg", "--model", model, flag, cwd=tmp_path)
        assert result.exit_code == 0, result.output
        assert ("1 with low-memory inference" in result.output) is said
        maps.append(np.asarray(nib.load(str(cwd / "seg" / "case_001.nii.gz")).dataobj))
    assert len(np.unique(maps[1])) > 2  # the trained model tells structures apart: the comparison means something
    np.testing.assert_array_equal(maps[0], maps[1])


def _write_dicom_series(folder: Path, array: np.ndarray, spacing, origin) -> None:
    """A CT series, one file per axial slice, written with SimpleITK (array indexed (x, y, z))."""
    import SimpleITK as sitk

    folder.mkdir(parents=True)
    volume = sitk.GetImageFromArray(np.transpose(array, (2, 1, 0)).astype(np.int16))
    volume.SetSpacing([float(s) for s in spacing])
    volume.SetOrigin([float(o) for o in origin])
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1.42"
    for z in range(volume.GetDepth()):
        slab = volume[:, :, z]
        for tag, value in (("0008|0060", "CT"), ("0020|000e", series), ("0020|000d", series + ".1"),
                           ("0020|0013", str(z + 1)), ("0008|0018", f"{series}.2.{z + 1}"),
                           ("0020|0032", "\\".join(str(v) for v in volume.TransformIndexToPhysicalPoint((0, 0, z)))),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0028|0030", f"{spacing[1]}\\{spacing[0]}"),
                           ("0018|0050", str(spacing[2]))):
            slab.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{z:03d}.dcm"))
        _execute_keeping_locale(writer, slab)


def _execute_keeping_locale(writer, image) -> None:
    """GDCM's DICOM writer sets the process's LC_CTYPE to "C" (ASCII text I/O for every later test); put it back."""
    import locale

    before = locale.setlocale(locale.LC_CTYPE)
    try:
        writer.Execute(image)
    finally:
        locale.setlocale(locale.LC_CTYPE, before)


def test_dicom_series_output_has_the_series_geometry(trained, tmp_path):
    from medrefine.io import load_image

    cohort, model = trained
    array = np.asarray(nib.load(str(cohort / "images" / "case_000.nii.gz")).dataobj)[:, :, :12]
    series = tmp_path / "series" / "ct_dicom"
    _write_dicom_series(series, array, spacing=(1.1, 1.1, 2.0), origin=(-10.0, 5.0, 30.0))
    expected = load_image(series)
    result, cwd, outputs = _run("-i", series, "-o", "seg", "--model", model, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert outputs == {"seg/ct_dicom.nii.gz", "seg/classes.json"}
    shape, affine = _geometry(cwd / "seg" / "ct_dicom.nii.gz")
    assert shape == expected.shape == array.shape
    np.testing.assert_allclose(affine, expected.affine, atol=1e-4)
    np.testing.assert_allclose(np.abs(np.diag(affine))[:3], (1.1, 1.1, 2.0), atol=1e-4)


def test_missing_model_gives_the_training_command(tmp_path, trained):
    cohort, _ = trained
    result, _, outputs = _run("-i", (cohort / "images").resolve(), "-o", "seg", cwd=tmp_path)
    assert result.exit_code == INPUT_ERROR_EXIT_CODE
    assert "medrefine run multiorgan_ct_segmentation train --set dataset_dir=" in result.output
    assert outputs == set()
    empty = tmp_path / "empty_model"
    empty.mkdir()
    result, _, _ = _run("-i", (cohort / "images").resolve(), "-o", "seg", "--model", empty, cwd=tmp_path)
    assert result.exit_code == INPUT_ERROR_EXIT_CODE and "model.json: model description not found" in result.output


def test_unknown_structure_and_output_among_inputs_are_refused_before_writing(trained, tmp_path):
    cohort, model = trained
    images = (cohort / "images").resolve()
    result, _, outputs = _run("-i", images, "-o", "seg", "--model", model, "--roi-subset", "myocardum", cwd=tmp_path)
    assert result.exit_code == INPUT_ERROR_EXIT_CODE
    assert "'myocardum' (did you mean 'myocardium'?)" in result.output and outputs == set()
    before = sorted(p.name for p in images.iterdir())
    result, _, _ = _run("-i", images, "-o", images, "--model", model, cwd=tmp_path)
    assert result.exit_code == INPUT_ERROR_EXIT_CODE and "the input folder itself" in result.output
    assert sorted(p.name for p in images.iterdir()) == before


def test_same_labels_as_the_bundles_inference(trained, tmp_path):
    """The verb and the bundle's inference.json pre-process, infer and invert alike."""
    cohort, model = trained
    out = tmp_path / "bundle_out"
    run_workflow(BUNDLE.path, "inference", {"dataset_dir": str((cohort / "images").resolve()), "device": "cpu",
                                            "model_dir": str(model), "output_dir": str(out), "num_workers": 0},
                 extra_configs=[BUNDLE.path / "configs" / "smoke.json"])
    result, cwd, _ = _run("-i", (cohort / "images").resolve(), "-o", "seg", "--model", model, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    for case in ("case_000", "case_001"):
        ours = nib.load(str(cwd / "seg" / f"{case}.nii.gz"))
        theirs = nib.load(str(out / f"{case}_seg.nii.gz"))
        np.testing.assert_array_equal(np.asarray(ours.dataobj), np.asarray(theirs.dataobj))
        np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-5)


def test_bundle_name_finds_the_default_run_here(trained, tmp_path, monkeypatch):
    """--model BUNDLE reads ./medrefine_runs/BUNDLE/default/models, where `medrefine run BUNDLE train` writes."""
    cohort, model = trained
    run_models = tmp_path / "medrefine_runs" / "multiorgan_ct_segmentation" / "default" / "models"
    shutil.copytree(model, run_models)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["segment", "-i", str(cohort / "images" / "case_001.nii.gz"), "-o", "seg",
                                      "--model", "multiorgan_ct_segmentation", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "seg" / "case_001.nii.gz").is_file()
    shutil.rmtree(tmp_path / "medrefine_runs")
    result = CliRunner().invoke(cli, ["segment", "-i", str(cohort / "images" / "case_001.nii.gz"), "-o", "seg2",
                                      "--model", "multiorgan_ct_segmentation", "--device", "cpu"])
    assert result.exit_code == INPUT_ERROR_EXIT_CODE
    assert "holds no trained model" in result.output and "medrefine_runs/multiorgan_ct_segmentation/default/models" in result.output

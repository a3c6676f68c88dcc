"""`medrefine validate X` passes if and only if every bundle's case loader accepts X.

A few layouts of one tiny phantom cohort, good and broken, go through ``validate_dataset`` and
through the case loaders of the three bundles (refinement, multi-organ segmentation, point
supervision with simulated points); the loaders must accept exactly the ones without error rows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medrefine.data.validate import has_errors, validate_dataset
from medrefine.errors import InputError
from medrefine.io import load_label, save_nifti
from medrefine.workflows import point_supervision, segmentation
from medrefine.workflows.near import load_refinement_cases

LOADERS = {
    "refinement": lambda src: load_refinement_cases(src, size=8, num_classes=11),
    "segmentation": lambda src: segmentation.load_cases(src),
    "point_supervision": lambda src: point_supervision.load_cases(src, simulate_points=True),
}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    from medrefine.data.phantoms import make_cardiac_cohort

    out = tmp_path_factory.mktemp("agree") / "cohort"
    make_cardiac_cohort(out, cases=2, size=16, noise="mild", seed=4)
    return out


def _pairs(phantom: Path, dest: Path, images: str = "images", labels: str = "labels") -> Path:
    shutil.copytree(phantom / "images", dest / images)
    shutil.copytree(phantom / "labels", dest / labels)
    shutil.copy(phantom / "classes.json", dest / "classes.json")
    return dest


def _datalist_folder(phantom, dest):
    shutil.copytree(phantom, dest)
    return dest


def _datalist_file(phantom, dest):
    return _datalist_folder(phantom, dest) / "datalist.json"


def _images_labels(phantom, dest):
    return _pairs(phantom, dest)


def _nnunet_folders(phantom, dest):
    return _pairs(phantom, dest, "imagesTr", "labelsTr")


def _unpaired_image(phantom, dest):
    root = _pairs(phantom, dest)
    (root / "labels" / "case_001.nii.gz").unlink()
    return root


def _missing_file(phantom, dest):
    root = _datalist_folder(phantom, dest)
    (root / "labels_noisy" / "case_000.nii.gz").unlink()
    return root


def _grid_mismatch(phantom, dest):
    root = _pairs(phantom, dest)
    label = load_label(root / "labels" / "case_000.nii.gz")
    affine = label.affine.copy()
    affine[0, 3] += 7.0
    save_nifti(label.array, root / "labels" / "case_000.nii.gz", affine=affine)
    return root


def _class_beyond_table(phantom, dest):
    root = _pairs(phantom, dest)
    (root / "classes.json").write_text(json.dumps({"0": "background", "1": "myocardium"}))
    return root


LAYOUTS = {
    "datalist_folder": (_datalist_folder, True),
    "datalist_file": (_datalist_file, True),
    "images_labels": (_images_labels, True),
    "imagesTr_labelsTr": (_nnunet_folders, True),
    "unpaired_image": (_unpaired_image, False),
    "missing_file": (_missing_file, False),
    "grid_mismatch": (_grid_mismatch, False),
    "class_beyond_table": (_class_beyond_table, False),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_validate_passes_iff_every_loader_accepts(phantom, tmp_path, name):
    make, expected_valid = LAYOUTS[name]
    source = make(phantom, tmp_path / name)
    problems = validate_dataset(source)
    valid = not has_errors(problems)
    assert valid == expected_valid, f"{name}: validate found {problems.to_dict(orient='records')}"
    for loader_name, loader in LOADERS.items():
        if valid:
            cases = loader(source)
            assert cases, f"{loader_name} read no case of {name}"
            assert {c["case"] for c in cases} <= {"case_000", "case_001"}
        else:
            with pytest.raises(InputError):
                loader(source)

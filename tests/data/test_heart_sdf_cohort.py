"""Tests of medrefine.data.heart_sdf_cohort: the SDF family on disk, readable like the first one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medrefine.data.cohort import load_cohort
from medrefine.data.heart_sdf_cohort import make_heart_sdf_cohort
from medrefine.data.phantoms import CARDIAC_CLASSES
from medrefine.errors import InputError
from medrefine.workflows.near import load_refinement_cases

SMALL = {"size": 24, "spacing_mm": 4.0, "supersample": 1}


def test_layout_loads_with_cohort_and_near_readers(tmp_path):
    datalist = make_heart_sdf_cohort(tmp_path / "sdf", cases=2, noise="moderate", noise_model="slicewise", seed=3,
                                     **SMALL)
    out = tmp_path / "sdf"
    assert datalist == out / "datalist.json"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["classes.json", "datalist.json", "images", "labels", "labels_noisy"]
    assert not list(tmp_path.glob(".sdf.*"))  # no temporary folder left behind
    table = json.loads(datalist.read_text())
    assert table["numTraining"] == 2
    assert table["training"][0] == {"case": "case_000", "image": "images/case_000.nii.gz",
                                    "label": "labels_noisy/case_000.nii.gz", "label_clean": "labels/case_000.nii.gz"}
    cohort = load_cohort(datalist)
    assert len(cohort.cases) == 2
    assert {int(k): v for k, v in json.loads((out / "classes.json").read_text()).items()} == CARDIAC_CLASSES
    cases = load_refinement_cases(datalist, size=24)
    assert [c["case"] for c in cases] == ["case_000", "case_001"]
    assert not np.array_equal(np.asarray(cases[0]["label"]), np.asarray(cases[0]["label_clean"]))


def test_noise_none_copies_the_clean_label(tmp_path):
    import nibabel as nib

    make_heart_sdf_cohort(tmp_path / "c", cases=1, noise="none", **SMALL)
    clean = nib.load(tmp_path / "c" / "labels" / "case_000.nii.gz")
    noisy = nib.load(tmp_path / "c" / "labels_noisy" / "case_000.nii.gz")
    np.testing.assert_array_equal(np.asarray(clean.dataobj), np.asarray(noisy.dataobj))
    np.testing.assert_allclose(clean.affine[:3, :3], np.diag([4.0, 4.0, 4.0]))


def test_refuses_non_empty_folder_unless_overwrite(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        make_heart_sdf_cohort(out, cases=1, **SMALL)
    assert (out / "notes.txt").read_text() == "mine"
    make_heart_sdf_cohort(out, cases=1, overwrite=True, **SMALL)
    assert not (out / "notes.txt").exists() and (out / "datalist.json").is_file()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"noise_model": "slice"}, "Did you mean 'slicewise'"),
    ({"noise": "moderat"}, "Did you mean 'moderate'"),
    ({"noise": 2.0}, "`noise` must be one of"),
    ({"cases": 0}, "`cases` must be a positive integer"),
    ({"spacing_mm": -1.0}, "`spacing_mm` must be"),
])
def test_bad_arguments_write_nothing(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        make_heart_sdf_cohort(tmp_path / "x", **{"cases": 1, **SMALL, **kwargs})
    assert not list(tmp_path.iterdir())

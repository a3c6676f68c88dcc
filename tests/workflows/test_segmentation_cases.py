"""medrefine.workflows.segmentation.load_cases on a cohort whose classes.json holds several tables."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medrefine.errors import InputError
from medrefine.workflows.segmentation import class_table, load_cases


@pytest.fixture
def two_table_cohort(tmp_path):
    """images/ + labels/ and TotalSegmentator's two-table classes.json ("total" for CT, "total_mr")."""
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
    label = np.zeros((12, 10, 8), np.uint8)
    label[2:6, 2:6, 2:6] = 1
    label[7:10, 4:8, 3:7] = 5
    for case in ("a", "b"):
        nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=label.shape).astype(np.float32), np.eye(4)),
                 str(tmp_path / "images" / f"{case}.nii.gz"))
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(tmp_path / "labels" / f"{case}.nii.gz"))
    (tmp_path / "classes.json").write_text(json.dumps({"total": {"1": "spleen", "5": "liver"},
                                                       "total_mr": {"1": "spleen", "2": "kidney_right"}}))
    return tmp_path


def test_task_picks_the_table(two_table_cohort):
    cases = load_cases(two_table_cohort, task="total")
    assert [c["case"] for c in cases] == ["a", "b"]
    assert class_table(two_table_cohort, task="total") == {0: "background", 1: "spleen", 5: "liver"}


def test_without_task_the_two_tables_are_named(two_table_cohort):
    with pytest.raises(InputError, match=r"several class tables \['total', 'total_mr'\]; choose one"):
        load_cases(two_table_cohort)

"""Tests for medrefine.data.splits."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.data.splits import kfold_splits, split_cases, split_datalist
from medrefine.errors import InputError

CASES = [f"case_{i:02d}" for i in range(10)]


def test_split_sizes_and_partition():
    parts = split_cases(CASES, val=0.2, test=0.1, seed=3)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [7, 2, 1]
    assert sorted(sum(parts.values(), [])) == CASES
    for part in parts.values():  # input order kept
        assert part == sorted(part)


def test_split_reproducible_and_seed_dependent():
    assert split_cases(CASES, seed=1) == split_cases(CASES, seed=1)
    assert any(split_cases(CASES, seed=s)["val"] != split_cases(CASES, seed=0)["val"] for s in range(1, 5))


def test_split_counts_and_at_least_one():
    assert len(split_cases(CASES, val=3)["val"]) == 3
    assert len(split_cases(CASES[:3], val=0.01)["val"]) == 1
    assert split_cases(CASES, val=0)["val"] == []


def test_split_entries():
    entries = [{"case": c, "image": f"{c}.nii.gz"} for c in CASES]
    parts = split_cases(entries, val=0.5)
    assert len(parts["val"]) == 5 and all(isinstance(e, dict) for e in parts["val"])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"val": 1.5}, InputError, r"`val` must be a fraction in \[0, 1\)"),
        ({"val": -0.1}, InputError, "`val` must be"),
        ({"val": 0.5, "test": 0.5}, InputError, "leaves none for training"),
        ({"val": "a"}, TypeError, "`val` must be a fraction"),
    ],
)
def test_split_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        split_cases(CASES, **kwargs)


def test_split_repeated_cases_and_string():
    with pytest.raises(InputError, match=r"repeated: \['a'\]"):
        split_cases(["a", "b", "a"])
    with pytest.raises(TypeError, match="got the string"):
        split_cases("abc")


@pytest.mark.parametrize("folds", [2, 3, 5, 10])
def test_kfold_each_case_validated_once(folds):
    splits = kfold_splits(CASES, folds=folds, seed=7)
    assert len(splits) == folds
    vals = sum((s["val"] for s in splits), [])
    assert sorted(vals) == CASES
    sizes = [len(s["val"]) for s in splits]
    assert max(sizes) - min(sizes) <= 1
    for s in splits:
        assert sorted(s["train"] + s["val"]) == CASES and not set(s["train"]) & set(s["val"])


def test_kfold_reproducible():
    assert kfold_splits(CASES, seed=2) == kfold_splits(CASES, seed=2)
    assert [len(f["val"]) for f in kfold_splits(list("abcdefg"), folds=3)] == [3, 2, 2]


@pytest.mark.parametrize("folds", [1, 11, 2.5, True])
def test_kfold_bad_folds(folds):
    with pytest.raises(InputError, match="`folds` must be a whole number"):
        kfold_splits(CASES, folds=folds)


def test_split_datalist():
    dl = {"name": "x", "training": [{"case": c} for c in CASES], "test": [{"case": "t"}]}
    out = split_datalist(dl, val=0.3, seed=0)
    assert out["numTraining"] == 7 and len(out["validation"]) == 3 and out["test"] == [{"case": "t"}]
    assert len(dl["training"]) == 10  # input untouched
    with pytest.raises(InputError, match="no list 'validation'"):
        split_datalist(dl, key="validation")


def test_grouped_folds_keep_patients_together_and_balance_classes():
    from medrefine.data.splits import grouped_kfold_splits

    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, 120).tolist()
    strata = rng.integers(0, 3, 120).tolist()
    cases = [f"l{i}" for i in range(120)]
    splits = grouped_kfold_splits(cases, groups=groups, strata=strata, folds=5, seed=1)
    fold_of_patient: dict = {}
    for k, split in enumerate(splits):
        for case in split["val"]:
            patient = groups[cases.index(case)]
            assert fold_of_patient.setdefault(patient, k) == k, f"patient {patient} in two folds"
        assert set(split["train"]) | set(split["val"]) == set(cases)
    assert sorted(c for s in splits for c in s["val"]) == sorted(cases)
    for split in splits:
        counts = np.bincount([strata[cases.index(c)] for c in split["val"]], minlength=3)
        assert counts.min() >= 4  # every class in every fold
    again = grouped_kfold_splits(cases, groups=groups, strata=strata, folds=5, seed=1)
    assert again == splits
    assert grouped_kfold_splits(cases, groups=groups, strata=strata, folds=5, seed=2) != splits


def test_grouped_folds_errors():
    from medrefine.data.splits import grouped_kfold_splits

    with pytest.raises(InputError, match=r"`folds` must be a whole number in \[2, 2\]"):
        grouped_kfold_splits(["a", "b", "c"], groups=[1, 1, 2], folds=3)
    with pytest.raises(InputError, match="one entry per case"):
        grouped_kfold_splits(["a", "b"], groups=[1], folds=2)

"""Lesion classification workflow: nested folds, the leak test, ensembles, refusal before writing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medrefine.bundle import run_workflow
from medrefine.bundle.discovery import bundles_root
from medrefine.data.lesion_phantoms import make_lesion_cohort
from medrefine.data.lesions import load_lesions
from medrefine.errors import InputError
from medrefine.workflows.lesion import fold_split, routing_matrix
from medrefine.workflows.lesion_evaluation import ensemble

BUNDLE = bundles_root() / "lesion_classification"
SMOKE = BUNDLE / "configs" / "smoke.json"


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory) -> Path:
    return make_lesion_cohort(tmp_path_factory.mktemp("lesions") / "lesions", patients=8, seed=11)


def test_nested_split_never_touches_the_test_fold(cohort_dir, tmp_path):
    cohort = load_lesions(cohort_dir)
    patients = dict(zip(cohort.case_ids, cohort.patients()))
    for fold in range(3):
        split = fold_split(cohort, fold=fold, folds=3, seed=0, folds_file=tmp_path / "folds.json", inner_folds=3)
        names = {k: {r["case"] for r in v} for k, v in split.items()}
        assert not names["test"] & (names["train"] | names["val"])
        assert not names["train"] & names["val"] and names["val"]
        test_patients = {patients[c] for c in names["test"]}
        assert not test_patients & {patients[c] for c in names["train"] | names["val"]}
    reference = fold_split(cohort, fold=0, folds=3, folds_file=tmp_path / "folds.json", selection="test")
    assert reference["val"] == reference["test"]


def test_routing_matrix_from_lists():
    assert routing_matrix(["T1", "ART"], ["a", "b"], {"a": ["ART"], "b": ["T1", "ART"]}) == [[0, 1], [1, 1]]
    with pytest.raises(InputError, match="names no modality 'ARt'.* Did you mean 'ART'"):
        routing_matrix(["T1", "ART"], ["a"], {"a": ["ARt"]})


def test_ensemble_by_hand():
    p = np.array([  # 3 models, 2 lesions, targets of 2 and 3 classes
        [[0.6, 0.4, 0.1, 0.2, 0.7], [0.2, 0.8, 0.5, 0.3, 0.2]],
        [[0.3, 0.7, 0.1, 0.8, 0.1], [0.4, 0.6, 0.2, 0.5, 0.3]],
        [[0.8, 0.2, 0.2, 0.7, 0.1], [0.1, 0.9, 0.1, 0.1, 0.8]],
    ])
    out = ensemble(p, [2, 3])
    assert np.allclose(out["mean"][0], [17 / 30, 13 / 30, 0.4 / 3, 1.7 / 3, 0.9 / 3])
    assert out["vote"].tolist() == [[0, 1], [1, 2]]  # lesion 2, target 2: votes 0, 1, 2 tie; mean 1.3/3 for 2 decides
    assert np.allclose(out["vote_share"], [[2 / 3, 2 / 3], [1.0, 1 / 3]])


def _train(root: Path, dataset: Path, folds_file: Path, **settings) -> Path:
    shutil.copytree(BUNDLE, root, ignore=shutil.ignore_patterns("models", "eval"))
    run_workflow(root, "train", {"dataset_dir": str(dataset), "device": "cpu", "folds_file": str(folds_file), "work_dir": str(root),
                                 "epochs": 3, "num_folds": 3, "inner_folds": 2, **settings}, extra_configs=[SMOKE])
    return root / "models"


@pytest.mark.slow
def test_changing_test_labels_changes_no_selected_checkpoint(cohort_dir, tmp_path):
    """The leak test: flip every label of the test fold; the nested run chooses the same weights."""
    folds_file = tmp_path / "folds.json"
    cohort = load_lesions(cohort_dir)
    split = fold_split(cohort, fold=0, folds=3, folds_file=folds_file, inner_folds=2)
    flipped = tmp_path / "flipped"
    shutil.copytree(cohort_dir, flipped)
    for record in split["test"]:
        path = flipped / Path(record["source"]).relative_to(cohort_dir)
        data = json.loads(path.read_text())
        data["0"]["enhancement"] = str((int(data["0"]["enhancement"]) + 1) % 3)
        data["0"]["diffusion"] = str(1 - int(data["0"]["diffusion"]))
        path.write_text(json.dumps(data))
    histories, weights = {}, {}
    for name, data in (("original", cohort_dir), ("flipped", flipped)):
        for selection in ("nested", "test"):
            models = _train(tmp_path / f"{name}_{selection}", data, folds_file, selection=selection)
            weights[name, selection] = torch.load(models / "model.pt", weights_only=True)
            histories[name, selection] = pd.read_csv(models.parent / "logs" / "history.csv")
    a, b = weights["original", "nested"], weights["flipped", "nested"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert histories["original", "nested"]["val_balanced_accuracy"].tolist() == histories["flipped", "nested"]["val_balanced_accuracy"].tolist()
    # the reference way reads the test labels to choose: its validation scores move with them
    assert histories["original", "test"]["val_balanced_accuracy"].tolist() != histories["flipped", "test"]["val_balanced_accuracy"].tolist()


def test_bad_input_stops_before_anything_is_written(cohort_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(cohort_dir, broken)
    path = sorted(broken.glob("*/annotations.json"))[0]
    data = json.loads(path.read_text())
    data["0"]["distance"] = "large"
    path.write_text(json.dumps(data))
    root = tmp_path / "run"
    shutil.copytree(BUNDLE, root)
    with pytest.raises(InputError, match=rf"^{path}: expected a diameter"):
        run_workflow(root, "train", {"dataset_dir": str(broken), "device": "cpu", "work_dir": str(root)}, extra_configs=[SMOKE])
    assert not (root / "models").exists() and not (root / "folds.json").exists()

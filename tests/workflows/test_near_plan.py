"""Tests of the one-command refinement's plan (near_plan) and input handling (near_pipeline)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medrefine.bundle.discovery import find_bundle
from medrefine.errors import InputError
from medrefine.io import Volume, save_nifti
from medrefine.workflows.near_pipeline import check_output_dir, input_folders, per_case_dice, refinement_entries
from medrefine.workflows.near_plan import RECIPE_KEYS, RefinePlan, bundle_recipe, plan_epochs, query_points


def test_bundle_recipe_is_the_bundles_train_json():
    configs = find_bundle("annotation_refinement").path / "configs"
    train = json.loads((configs / "train.json").read_text())
    evaluate = json.loads((configs / "evaluate.json").read_text())
    recipe = bundle_recipe()
    for key in ("learning_rate", "lambda_dice", "lambda_latent", "class_weight_cap", "hidden_channels", "latent_dim",
                "grid_sizes", "grid_channels", "num_points", "batch_size"):
        assert recipe[key] == train[key], key
    assert recipe["fit_steps"] == evaluate["fit_steps"] and recipe["fit_lr"] == evaluate["fit_lr"]
    assert set(recipe) <= set(RECIPE_KEYS) | {"fit_steps", "fit_lr"}
    assert "max_epochs" not in recipe  # a `$` expression is not a value


def test_plan_epochs_presets():
    assert plan_epochs(16) == 200 and plan_epochs(16, preset="fast") == 100 and plan_epochs(16, preset="quality") == 300
    assert plan_epochs(4) == 400 and plan_epochs(4, epochs=7, preset="fast") == 7
    with pytest.raises(InputError, match="Did you mean 'quality'"):
        plan_epochs(16, preset="qualty")


def test_query_points_capped_by_the_grid():
    cases = [{"image": np.zeros((1, 24, 24, 24), np.float32)}]
    assert query_points(cases, {"num_points": 4096}) == 12**3
    assert query_points([{"image": np.zeros((1, 64, 64, 64))}], {"num_points": 4096}) == 4096


def test_plan_estimate_adds_up():
    plan = RefinePlan(num_cases=16, cube_edge=64, query_resolution=32, num_points=4096, epochs=200, batch_size=8,
                      steps_per_epoch=2, threads=2, device="cpu", refine_mode="transductive", preset="default",
                      seconds_per_step=0.5, seconds_per_case=3.0, seconds_so_far=12.0)
    assert plan.training_seconds == 200.0
    assert plan.estimated_seconds == pytest.approx(12 + 200 + 48)
    text = "\n".join(plan.lines())
    assert "200 epochs (default) x 2 steps of 8 cases" in text and "estimated time: 4.3 min" in text


def test_per_case_dice(tmp_path):
    rows = [("a", 1, "dice", 0.8), ("a", 2, "dice", 0.6), ("a", 1, "hd95", 3.0), ("b", 1, "dice", 1.0)]
    for name, shift in (("change", 0.0), ("input", -0.1), ("refined", 0.0)):
        pd.DataFrame([{"case": c, "class_id": k, "class_name": f"c{k}", "metric": m, "value": v + (shift if m == "dice" else 0)}
                      for c, k, m, v in rows]).to_csv(tmp_path / f"{name}.csv", index=False)
    table = per_case_dice({n: tmp_path / f"{n}.csv" for n in ("change", "input", "refined")})
    assert list(table["case"]) == ["a", "b"]
    np.testing.assert_allclose(table["dice_refined_vs_input"], [0.7, 1.0])
    np.testing.assert_allclose(table["dice_gain"], [0.1, 0.1])
    only = per_case_dice({"change": tmp_path / "change.csv"})
    assert list(only.columns) == ["case", "dice_refined_vs_input"]


def _label(path):
    array = np.zeros((6, 5, 4), np.uint8)
    array[1:4, 1:3, 1:3] = 1
    save_nifti(Volume(array, np.eye(4)), path)


def test_refinement_entries_files_and_reference(tmp_path):
    for name in ("img.nii.gz", "lab.nii.gz", "ref.nii.gz"):
        _label(tmp_path / name)
    entries, classes = refinement_entries(tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz", ref=tmp_path / "ref.nii.gz")
    assert entries == [{"case": "lab", "image": str(tmp_path / "img.nii.gz"), "label": str(tmp_path / "lab.nii.gz"),
                        "label_clean": str(tmp_path / "ref.nii.gz")}]
    assert classes is None
    with pytest.raises(InputError, match="two folders or two files"):
        refinement_entries(tmp_path, tmp_path / "lab.nii.gz")


def test_refinement_entries_missing_reference(tmp_path):
    for folder in ("i", "l", "r"):
        (tmp_path / folder).mkdir()
        _label(tmp_path / folder / "a.nii.gz")
        if folder != "r":
            _label(tmp_path / folder / "b.nii.gz")
    with pytest.raises(InputError, match=r"no reference label for 1 case\(s\).*: b$"):
        refinement_entries(tmp_path / "i", tmp_path / "l", ref=tmp_path / "r")


def test_check_output_dir(tmp_path):
    folders = input_folders([{"case": "a", "image": str(tmp_path / "c" / "images" / "a.nii.gz")}])
    assert folders == {(tmp_path / "c" / "images").resolve()}
    assert check_output_dir(tmp_path / "c" / "refined", folders) == (tmp_path / "c" / "refined").resolve()
    with pytest.raises(InputError, match="inside the input folder"):
        check_output_dir(tmp_path / "c" / "images" / "out", folders)
    (tmp_path / "f").write_text("")
    with pytest.raises(InputError, match="found a file"):
        check_output_dir(tmp_path / "f", folders)

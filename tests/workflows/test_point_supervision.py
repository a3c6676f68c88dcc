"""Glue of the point-supervision bundle: selection metric, model files, batches, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from medrefine.errors import InputError
from medrefine.losses import UNLABELED
from medrefine.workflows import point_supervision as ps


def test_seed_dice_counts_only_labeled_voxels():
    seeds = torch.full((1, 1, 4, 4, 1), UNLABELED)
    seeds[0, 0, 0, :, 0] = 0  # 4 background seeds
    seeds[0, 0, 1, :2, 0] = 1  # 2 foreground seeds
    pred = torch.zeros(1, 4, 4, 1, dtype=torch.long)
    pred[0, 1, :, 0] = 1  # predicts row 1 foreground: hits 2 fg seeds, 2 more voxels are unlabeled
    pred[0, 0, 0, 0] = 1  # and one background seed: a false positive
    pred[0, 3, :, 0] = 1  # unlabeled only: ignored
    onehot = torch.cat([(pred == 0), (pred == 1)]).float()[None]
    from medrefine.metrics import SeedDiceMetric

    metric = SeedDiceMetric()
    metric(y_pred=onehot, y=seeds)
    # P = 2 (row 1 on labeled) + 1 (bg seed) = 3, S = 2, |P & S| = 2 -> 4 / 5
    assert float(metric.aggregate()) == pytest.approx(0.8)


def test_label_map_and_values():
    assert ps.label_map([5], ["liver"]) == {0: "background", 5: "liver"}
    assert ps.label_map(None) == {0: "background", 1: "target"}
    assert ps.class_values([5, 1]) == {5: 1, 1: 2}
    convert = ps.to_label_values({0: "background", 5: "liver"})
    logits = torch.zeros(2, 2, 2, 1)
    logits[1, 0, 0] = 1.0
    assert convert(logits).squeeze().tolist() == [[5, 0], [0, 0]]
    index = ps.index_labels([5])(torch.tensor([[0, 5, 3]]))
    assert index.tolist() == [[0, 1, 0]]
    with pytest.raises(InputError, match="target_classes"):
        ps.class_values([0])


def test_point_batch_packs_the_image():
    batch = {"image": torch.rand(1, 1, 4, 4, 4), "seeds": torch.ones(1, 1, 4, 4, 4, dtype=torch.uint8)}
    image, target = ps.PointBatch(pack_image=True)(batch, "cpu")
    assert target.shape == (1, 2, 4, 4, 4) and torch.equal(target[:, 1:], image)
    with pytest.raises(InputError, match="'label'"):
        ps.PointBatch(label_key="label")(batch, "cpu")


def test_missing_stage1_model_says_how_to_make_it(tmp_path):
    net = torch.nn.Conv3d(1, 2, 1)
    path = ps.stage1_model_file(tmp_path, "attention_unet")
    with pytest.raises(InputError, match=r"stage1_attention_unet\.pt.*run stage 1"):
        ps.load_weights(net, path, what="stage-1 model", hint="run stage 1 first")
    torch.save({"model": torch.nn.Conv3d(1, 3, 1).state_dict()}, path)
    with pytest.raises(InputError, match="does not fit"):
        ps.load_weights(net, path)
    torch.save({"model": net.state_dict()}, path)
    assert ps.load_weights(torch.nn.Conv3d(1, 2, 1), path) is not None
    assert ps.model_file(tmp_path, "unet").endswith("stage1_unet.pt")
    (tmp_path / "model.pt").write_bytes(b"")
    assert ps.model_file(tmp_path, "unet").endswith("model.pt")


def _tiny_nifti(path, value=0):
    import nibabel as nib
    import numpy as np

    nib.save(nib.Nifti1Image(np.full((4, 4, 4), value, np.uint8), np.eye(4)), str(path))


def test_load_cases_names_what_is_missing(tmp_path):
    _tiny_nifti(tmp_path / "img.nii.gz")
    (tmp_path / "datalist.json").write_text(json.dumps({"training": [{"image": "img.nii.gz"}]}))
    with pytest.raises(InputError, match=r"datalist\.json.*points"):
        ps.load_cases(tmp_path)
    cases = ps.load_cases(tmp_path, points_key=None)
    assert cases[0]["case"] == "img"
    with pytest.raises(InputError, match="label"):
        ps.load_cases(tmp_path, points_key=None, require_labels=True)
    with pytest.raises(InputError, match="full labels"):
        ps.labelled_cases(cases)


@pytest.mark.slow
def test_stage2_without_the_second_stage1_model_fails_clearly(tmp_path):
    """Stage 2 needs a stage-1 model per architecture; the error names the file and the command."""
    import shutil

    from medrefine.bundle import find_bundle, run_workflow
    from medrefine.data.phantoms import make_cardiac_cohort

    make_cardiac_cohort(tmp_path / "cohort", cases=2, size=32, seed=1)
    root = tmp_path / "bundle"
    shutil.copytree(find_bundle("point_supervised_segmentation").path, root)
    smoke = root / "configs" / "smoke.json"
    common = {"dataset_dir": str(tmp_path / "cohort"), "device": "cpu", "work_dir": str(root)}
    run_workflow(root, "train", common, extra_configs=[smoke])
    assert (root / "models" / "stage1_unet.pt").is_file()
    with pytest.raises(Exception) as info:
        run_workflow(root, "stage2", {**common, "network2_name": "attention_unet"}, extra_configs=[smoke])
    error = info.value
    while error.__cause__ is not None and not isinstance(error, InputError):  # MONAI wraps config errors
        error = error.__cause__
    assert isinstance(error, InputError)
    assert "stage1_attention_unet.pt" in str(error) and "network_name=attention_unet" in str(error)


def test_points_dir_fills_entries_without_points(tmp_path):
    _tiny_nifti(tmp_path / "img.nii.gz", 1)
    _tiny_nifti(tmp_path / "clean.nii.gz", 1)
    (tmp_path / "pts").mkdir()
    point = {"world": [1.0, 1.0, 1.0], "label": "foreground", "class": 1}
    (tmp_path / "pts" / "case_7.json").write_text(json.dumps({"format": "medrefine-points", "points": [point]}))
    entry = {"case": "case_7", "image": "img.nii.gz", "label": "img.nii.gz", "label_clean": "clean.nii.gz"}
    (tmp_path / "datalist.json").write_text(json.dumps({"training": [entry]}))
    cases = ps.load_cases(tmp_path, points_dir=tmp_path / "pts", label_key="label_clean")
    assert cases[0]["points"].endswith("pts/case_7.json")
    assert cases[0]["label"].endswith("clean.nii.gz")


@pytest.mark.slow
def test_stage2_resumes_from_its_checkpoint(tmp_path):
    """An interrupted stage 2 continues from models/stage2/ instead of starting again from stage 1.

    Run 2 epochs, then run again asking for the same 2: a resumed run has nothing left to do, so
    both networks and both teachers equal the checkpoint's; a fresh start would retrain them.
    """
    import shutil

    import torch

    from medrefine.bundle import find_bundle, run_workflow
    from medrefine.data.phantoms import make_cardiac_cohort

    make_cardiac_cohort(tmp_path / "cohort", cases=2, size=32, seed=2)
    root = tmp_path / "bundle"
    shutil.copytree(find_bundle("point_supervised_segmentation").path, root)
    smoke = [root / "configs" / "smoke.json"]
    common = {"dataset_dir": str(tmp_path / "cohort"), "device": "cpu", "work_dir": str(root)}
    run_workflow(root, "train", common, extra_configs=smoke)
    run_workflow(root, "stage2", {**common, "epochs": 2}, extra_configs=smoke)
    (checkpoint,) = (root / "models" / "stage2").glob("latest*.pt")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    workflow = run_workflow(root, "stage2", {**common, "epochs": 2}, extra_configs=smoke)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2
    for key, module in (("model", trainer.networks[0]), ("model2", trainer.networks[1]), ("teacher1", trainer.teachers[0])):
        for name, value in module.state_dict().items():
            assert torch.equal(value, saved[key][name]), f"{key}.{name} differs from the checkpoint"
    # and the stage-1 weights it would start from differ (so the check above can fail)
    stage1 = torch.load(root / "models" / "stage1_unet.pt", map_location="cpu", weights_only=True)
    stage1 = stage1.get("model", stage1)
    assert any(not torch.equal(v, stage1[k]) for k, v in saved["model"].items())


def test_stage2_crf_and_teacher_flips_come_from_the_config():
    """``stage2_weight_crf`` > 0 builds the gated CRF loss from the ``crf_*`` keys; 0 (default) builds none."""
    from monai.bundle import ConfigParser

    from medrefine.bundle import find_bundle
    from medrefine.losses import GatedCRFLoss
    from medrefine.transforms import CRFLabelRefiner

    configs = find_bundle("point_supervised_segmentation").path / "configs"
    parser = ConfigParser()
    parser.read_config([configs / "train.json", configs / "stage2.json"])
    parser.update({"intensity": "zscore"})  # the recipe without reading a cohort
    assert parser.get_parsed_content("stage2_crf") is None and parser["teacher_flips"] == []
    parser = ConfigParser()
    parser.read_config([configs / "train.json", configs / "stage2.json"])
    parser.update({"stage2_weight_crf": 0.5, "crf_sigma_intensity": 0.07, "crf_radius": 2})
    crf = parser.get_parsed_content("stage2_crf")
    assert isinstance(crf, GatedCRFLoss) and crf.sigma_intensity == (0.07,) and crf.radius == (2, 2, 2)
    trainer_config = parser["train"]["trainer"]
    assert trainer_config["regulariser"] == "@stage2_crf" and trainer_config["weight_regulariser"] == "@stage2_weight_crf"
    assert trainer_config["teacher_flips"] == "@teacher_flips"
    assert trainer_config["label_refiner"] == "@label_refiner"
    assert isinstance(parser.get_parsed_content("label_refiner"), CRFLabelRefiner)  # refine_labels defaults to true
    parser = ConfigParser()
    parser.read_config([configs / "train.json", configs / "stage2.json"])
    parser.update({"intensity": "zscore", "refine_labels": True, "refine_steps": 7, "refine_radius": 3, "crf_sigma_intensity": 0.05})
    refiner = parser.get_parsed_content("label_refiner")
    assert isinstance(refiner, CRFLabelRefiner) and refiner.steps == 7 and refiner.unary_weight == 0.05
    assert refiner.crf.radius == (3, 3, 3) and refiner.crf.sigma_intensity == (0.05,)


def test_override_files_only_set_keys_the_configs_define():
    """smoke.json must not carry keys the bundle ignores (a misspelt key would be silently dropped); every recipe
    sets the same keys, each a top-level key that reads it."""
    from medrefine.bundle import find_bundle

    configs = find_bundle("point_supervised_segmentation").path / "configs"
    known = set()
    for name in ("train.json", "stage2.json", "evaluate.json", "inference.json"):
        known |= set(json.loads((configs / name).read_text()))
    extra = set(json.loads((configs / "smoke.json").read_text())) - known
    assert not extra, f"smoke.json sets keys no config defines: {sorted(extra)}"
    train = json.loads((configs / "train.json").read_text())
    recipes = train["recipes"]
    assert sorted(recipes) == ["ct", "percentile", "zscore"]
    for name, recipe in recipes.items():
        assert set(recipe) == set(recipes["ct"]), name
        assert all(train[key] == f"$@recipe['{key}']" for key in recipe), name
    ct = recipes["ct"]
    assert ct["background_threshold"] > ct["threshold"] and ct["smooth_mm"] > 0

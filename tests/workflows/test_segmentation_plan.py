"""Planning the multi-organ segmentation bundle: fingerprint, plan, plan JSON, and the bundle reading it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from medrefine.errors import InputError
from medrefine.workflows import segmentation_plan as sp
from medrefine.workflows.segmentation_fingerprint import fingerprint, label_values

TABLE = {0: "background", 1: "liver", 2: "spleen", 3: "aorta"}


def _cohort(root: Path, size: int = 24) -> Path:
    """Two cases with a classes.json of 3 structures of which 'spleen' (2) occurs in no label.

    Case a: RAS, spacing (1, 1, 2); case b: voxel axes (y, x, z) with spacing (2, 1, 3) along them,
    so its RAS spacing is (1, 2, 3). Intensity 100 in liver, 300 in aorta, -500 elsewhere.
    """
    for case, affine in (("a", np.diag([1.0, 1.0, 2.0, 1.0])),
                         ("b", np.array([[0, 1.0, 0, 0], [2.0, 0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]]))):
        label = np.zeros((size, size, size // 2), np.uint8)
        label[2:8, 2:8, 2:6] = 1  # 144 voxels
        label[12:14, 12:14, 2:4] = 3  # 8 voxels
        image = np.where(label == 1, 100.0, np.where(label == 3, 300.0, -500.0)).astype(np.float32)
        for folder, data in (("images", image), ("labels", label)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(data, affine), str(root / folder / f"{case}.nii.gz"))
    (root / "classes.json").write_text(json.dumps({str(k): v for k, v in TABLE.items()}))
    return root


def _cases(root: Path) -> list[dict]:
    return [{"case": c, "image": str(root / "images" / f"{c}.nii.gz"), "label": str(root / "labels" / f"{c}.nii.gz")}
            for c in ("a", "b")]


def test_fingerprint_by_hand(tmp_path):
    root = _cohort(tmp_path / "ds")
    fp = fingerprint(_cases(root), TABLE)
    assert fp["spacings"] == [[1.0, 1.0, 2.0], [1.0, 2.0, 3.0]]  # case b reordered to R, A, S
    assert fp["shapes"] == [[24, 24, 12], [24, 24, 12]]
    assert fp["present"] == [1, 3] and fp["class_voxels"]["1"] == 288 and fp["class_voxels"]["3"] == 16
    assert fp["class_volumes_ml"]["1"] == pytest.approx(144 * 2 / 1000 + 144 * 6 / 1000)
    # foreground: 288 voxels at 100, 16 at 300 -> the 99.5th percentile lies between them
    assert fp["intensity"]["p00_5"] == 100.0 and 100.0 < fp["intensity"]["p99_5"] <= 300.0
    assert label_values(_cases(root)) == {0, 1, 3}


def test_target_spacing_channels_and_memory_by_hand():
    assert sp.target_spacing([[1, 1, 2], [1, 2, 3]]) == [1.0, 1.5, 2.5]
    assert sp.target_spacing([[0.8, 0.8, 5], [0.8, 0.8, 5], [0.8, 0.8, 1.5]]) == [0.8, 0.8, 2.2]  # 10th percentile
    assert sp.network_channels([128, 104, 32]) == [16, 32, 64, 128]
    assert sp.network_channels([8, 8, 8]) == [16, 32, 64]
    # 8^3 voxels, one level of 16 channels: 4 bytes x (24 x 16 x 512 + 4 x 3 x 512)
    assert sp.training_bytes((8, 8, 8), (16,), 3, 1) == 4 * (24 * 16 * 512 + 4 * 3 * 512)


@pytest.mark.parametrize("text, seconds", [("30m", 1800.0), ("2h", 7200.0), ("1h30m", 5400.0), ("90s", 90.0), ("5", 300.0)])
def test_parse_duration(text, seconds):
    assert sp.parse_duration(text) == seconds


def test_parse_duration_refuses_showing_the_value():
    with pytest.raises(InputError, match=r"`time budget` must look like 30m.*got '30 minutes'"):
        sp.parse_duration("30 minutes")


def test_plan_classes_patch_batch_and_epochs(tmp_path):
    fp = fingerprint(_cases(_cohort(tmp_path / "ds")), TABLE)
    plan = sp.make_plan(fp, num_samples=2, num_val=1, val_interval=10, time_budget_s=600, probe=False,
                        memory_budget_bytes=2**30)
    assert plan.classes == {0: "background", 1: "liver", 3: "aorta"} and plan.out_channels == 3
    assert plan.pixdim == [1.0, 1.5, 2.5]
    # at 1 x 1.5 x 2.5 mm case a is (24, 16, 9.6), case b (24, 32, 14.4): median (24, 24, 12), up to multiples of 8
    assert plan.roi_size == [24, 24, 16] and plan.value("channels") == [16, 32, 64]
    assert plan.batch_size == 1  # one training case
    assert plan.value("hu_window")[0] == 100.0
    # 1 s per iteration (not measured), 1 iteration per epoch; validating case b (24, 32, 14.4) takes
    # 2 windows of (24, 24, 16) along y (stride 18 at overlap 0.25), every `interval` epochs
    timing = plan.data["timing"]
    assert timing["iterations_per_epoch"] == 1 and timing["validation_windows"] == 2
    interval = plan.value("val_interval")
    assert plan.seconds_per_epoch == pytest.approx(1 + 2 / interval)
    assert plan.epochs == int(600 // plan.seconds_per_epoch) and interval == 10
    assert plan.estimated_seconds == pytest.approx(plan.epochs * plan.seconds_per_epoch)
    small = sp.make_plan(fp, time_budget_s=600, probe=False, memory_budget_bytes=60 * 2**20)
    assert np.prod(small.roi_size) < np.prod(plan.roi_size)  # a smaller budget, a smaller patch
    assert sp.training_bytes(small.roi_size, small.value("channels"), 3, 4) <= 60 * 2**20


def test_short_budget_validates_more_often(tmp_path):
    fp = fingerprint(_cases(_cohort(tmp_path / "ds")), TABLE)
    plan = sp.make_plan(fp, time_budget_s=20, probe=False, memory_budget_bytes=2**30)
    assert plan.epochs >= 4 and plan.value("val_interval") <= plan.epochs // 4


def test_time_probe_measures_a_tiny_network():
    per_step, per_window = sp.time_probe((16, 16, 16), (4, 8), 3, 2, num_res_units=0)
    assert 0 < per_step < 30 and 0 < per_window < 30


def test_training_classes(tmp_path):
    root = _cohort(tmp_path / "ds")
    assert sp.training_classes(TABLE, _cases(root)) == {0: "background", 1: "liver", 3: "aorta"}
    assert sp.training_classes(TABLE, _cases(root), drop_absent=False) == TABLE
    plan = sp.SegmentationPlan({"config": {}, "classes": {"0": "background", "2": "spleen"}}, path=tmp_path / "p.json")
    assert sp.training_classes(TABLE, _cases(root), plan=plan) == {0: "background", 2: "spleen"}
    other = sp.SegmentationPlan({"config": {}, "classes": {"0": "background", "2": "kidney"}}, path=tmp_path / "p.json")
    with pytest.raises(InputError, match=r"p\.json: planned classes \{2: 'kidney'\} are not in the data's class table"):
        sp.training_classes(TABLE, _cases(root), plan=other)


def test_read_plan(tmp_path):
    empty = sp.read_plan(None)
    assert not empty and empty.value("pixdim", [1.5]) == [1.5] and empty.classes == {}
    with pytest.raises(InputError, match=r"nope\.json: plan file not found"):
        sp.read_plan(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(InputError, match=r"bad\.json: expected a segmentation plan with 'config' and 'classes'"):
        sp.read_plan(tmp_path / "bad.json")


def _train(root: Path, cohort: Path, overrides: dict) -> dict:
    from medrefine.bundle import find_bundle, run_workflow

    bundle = root / "bundle"
    if not bundle.exists():
        shutil.copytree(find_bundle("multiorgan_ct_segmentation").path, bundle,
                        ignore=shutil.ignore_patterns("models", "eval", "inference", "logs"))
    fast = root / "fast.json"  # smoke's keys that the plan does not set
    fast.write_text(json.dumps({"num_workers": 0, "num_threads": 1, "prob_elastic": 0.0, "sw_batch_size": 2}))
    models = root / overrides.pop("name")
    run_workflow(bundle, "train", {"dataset_dir": str(cohort), "device": "cpu", "epochs": 1, "bundle_root": str(bundle),
                                   "model_dir": str(models), "log_dir": str(models / "logs"),
                                   "output_dir": str(models / "eval"), **overrides}, extra_configs=[fast])
    return json.loads((models / "model.json").read_text())


@pytest.mark.slow
def test_plan_command_then_training_reads_the_plan(tmp_path):
    from medrefine.cli import cli

    cohort = _cohort(tmp_path / "ds", size=16)
    result = CliRunner().invoke(cli, ["plan", "multiorgan_ct_segmentation", "--set", f"dataset_dir={cohort}",
                                      "--time-budget", "2m", "--device", "cpu", "-o", str(tmp_path / "plan.json")])
    assert result.exit_code == 0, result.output
    assert "2 structures present (out_channels 3; 1 absent from the data dropped)" in result.output
    assert "estimated" in result.output and f"--set plan={tmp_path / 'plan.json'}" in result.output
    plan = sp.read_plan(tmp_path / "plan.json")
    assert plan.data["timing"]["seconds_per_iteration"] > 0 and plan.data["dataset_dir"] == str(cohort.resolve())
    model = _train(tmp_path, cohort, {"name": "planned", "plan": str(tmp_path / "plan.json")})
    assert model["classes"] == {"0": "background", "1": "liver", "3": "aorta"}
    assert model["network"]["out_channels"] == 3 and model["network"]["channels"] == plan.value("channels")
    assert model["preprocessing"] == {"pixdim": plan.pixdim, "hu_window": plan.value("hu_window"),
                                      "roi_size": plan.roi_size}
    # without a plan: the bundle's defaults, but the classes of the data; all of the table on request
    model = _train(tmp_path, cohort, {"name": "default", "roi_size": [16, 16, 16], "channels": [4, 8, 16]})
    assert model["classes"] == {"0": "background", "1": "liver", "3": "aorta"}
    assert model["preprocessing"]["pixdim"] == [1.5, 1.5, 2.0]
    model = _train(tmp_path, cohort, {"name": "all", "roi_size": [16, 16, 16], "channels": [4, 8, 16],
                                      "drop_absent_classes": False})
    assert model["network"]["out_channels"] == 4

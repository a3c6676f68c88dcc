"""medrefine.bundle.runner: MONAI's required properties per workflow type; config-level training defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
import shutil

import pytest

from medrefine.bundle import config_files, find_bundle
from medrefine.bundle.discovery import WORKFLOW_TYPES, list_bundles
from medrefine.bundle.runner import create_workflow
from medrefine.errors import InputError

REFINEMENT = find_bundle("annotation_refinement")


@pytest.mark.parametrize("mode, config, key, expected", [
    ("train", "train.json", ("train", "inferer"), r"train\.json\): the config lacks what MONAI requires of a train workflow: 'train#inferer' \(train_inferer\)$"),
    ("inference", "inference.json", ("evaluator",), r"inference\.json\): the config lacks what MONAI requires of a infer workflow: 'evaluator' \(evaluator\)$"),
])
def test_missing_required_property_fails_with_one_line(tmp_path, mode, config, key, expected):
    root = tmp_path / "bundle"
    shutil.copytree(REFINEMENT.path, root, ignore=shutil.ignore_patterns("models", "logs", "eval"))
    path = root / "configs" / config
    data = json.loads(path.read_text())
    parent = data
    for k in key[:-1]:
        parent = parent[k]
    del parent[key[-1]]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=expected) as info:
        create_workflow(root, mode, {"dataset_dir": str(tmp_path / "nowhere")})
    assert "\n" not in str(info.value) and f"bundle 'bundle' mode {mode!r}" in str(info.value)


@pytest.mark.parametrize("bundle", list_bundles(), ids=lambda b: b.name)
def test_every_mode_declares_the_required_properties(bundle):
    """What the runner checks before running, without running: every key MONAI requires is there."""
    from monai.bundle import ConfigParser
    from monai.bundle.properties import InferProperties, TrainProperties

    for mode, kind in WORKFLOW_TYPES.items():
        if mode not in bundle.modes:
            continue
        parser = ConfigParser()
        parser.read_config([str(f) for f in config_files(bundle, mode)])
        props = TrainProperties if kind == "train" else InferProperties
        missing = [p["id"] for p in props.values() if p["required"] and p["id"] not in parser]
        assert not missing, f"{bundle.name} {mode}: lacks {missing}"
        if kind == "train":
            targets = [h["_target_"] for h in parser["train#handlers"]]
            assert "medrefine.handlers.ResumeHandler" in targets and "medrefine.handlers.HistoryCSV" in targets, targets
            assert targets.index("medrefine.handlers.ResumeHandler") > targets.index("LrScheduleHandler")


def test_workflow_types_of_the_modes():
    assert {m: WORKFLOW_TYPES.get(m) for m in ("train", "stage2", "multi_gpu_train", "evaluate", "inference", "smoke")} == {
        "train": "train", "stage2": "train", "multi_gpu_train": "train", "evaluate": "infer", "inference": "infer",
        "smoke": None,
    }


@pytest.mark.parametrize("overrides, expected", [
    ({"epochs": 50, "cases": "$[None]"}, [30, 42]),  # epochs given: the case count does not matter
    ({"cases": "$[None] * 16"}, [120, 170]),  # epochs null, 16 cases: 200 epochs, NeAR's recipe
    ({"cases": "$[None]"}, [960, 1360]),  # one case: 1,600 epochs (at least 1,600 case visits)
    ({"epochs": 50, "lr_milestones": [10, 20], "cases": "$[None]"}, [10, 20]),
])
def test_refinement_lr_milestones_follow_epochs_unless_set(overrides, expected):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files(REFINEMENT, "train")])
    parser.update(overrides)
    assert parser.get_parsed_content("lr_scheduler#milestones") == expected


def test_failed_cache_fill_ends_without_sigabrt(tmp_path):
    """An error while CacheDataset's threads still run torch code once aborted the process (exit 134)."""
    script = tmp_path / "fail.py"
    script.write_text(
        "import torch, monai\n"
        "from monai.data import CacheDataset\n"
        "from medrefine.bundle.runner import medrefine_errors\n"
        "def item(x):\n"
        "    if x['i'] == 0:\n"
        "        raise ValueError('broken case')\n"
        "    t = torch.randn(1, 1, 48, 48, 48)\n"
        "    for _ in range(10):\n"
        "        t = torch.nn.functional.avg_pool3d(t, 3, 1, 1)\n"
        "    return x\n"
        "with medrefine_errors():\n"
        "    CacheDataset([{'i': i} for i in range(8)], transform=monai.transforms.Compose([monai.transforms.Lambda(item)]),\n"
        "                 num_workers=2, progress=False)\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 1, result.stderr[-500:]
    assert "terminate called" not in result.stderr


def test_extra_config_by_the_bundle_config_name():
    from medrefine.bundle.discovery import config_files

    files = config_files("multiorgan_ct_segmentation", "train", ["smoke"])
    assert [f.name for f in files] == ["train.json", "smoke.json"]
    assert files[1].parent == files[0].parent  # the bundle's own configs/smoke.json


def test_extra_config_unknown_name_has_a_did_you_mean():
    from medrefine.bundle.discovery import config_files
    from medrefine.errors import InputError

    with pytest.raises(InputError, match=r"smok: expected an extra config file or the name of one of bundle "
                                         r"'multiorgan_ct_segmentation''s configs .*Did you mean 'smoke'"):
        config_files("multiorgan_ct_segmentation", "train", ["smok"])

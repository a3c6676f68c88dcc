"""The bundle harness: every bundle under ``bundles/`` is checked and run here.

A bundle is covered by being added to the folder. For each one this module

1. validates ``configs/metadata.json`` with MONAI's ``verify_metadata`` (offline schema copy);
2. runs each of its modes (train, evaluate, inference) through ``monai.bundle.ConfigWorkflow``
   on a tiny cardiac phantom cohort, layering the bundle's ``configs/smoke.json`` (the bundle's
   own "make it tiny" override: few epochs, small grids) and pointing ``dataset_dir``,
   ``bundle_root``, ``work_dir`` and ``device`` at the test's folders;
3. checks that ``multi_gpu_train`` (when present) merges with train and names a distributed
   sampler or DDP wrapper.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medrefine.bundle import config_files, list_bundles, run_workflow, verify_bundle_metadata
from medrefine.bundle.discovery import bundles_root

BUNDLES = list_bundles(bundles_root())
IDS = [b.name for b in BUNDLES]
RUN_ORDER = ("train", "stage2", "evaluate", "inference")


def test_bundles_folder_is_found():
    assert bundles_root().is_dir(), f"no bundles folder at {bundles_root()}"


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_metadata_verifies(bundle):
    verify_bundle_metadata(bundle.path / "configs" / "metadata.json")


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_bundle_layout(bundle):
    configs = bundle.path / "configs"
    for required in ("metadata.json", "logging.conf", "smoke.json"):
        assert (configs / required).is_file(), f"{bundle.name}: configs/{required} is missing"
    assert (bundle.path / "docs" / "README.md").is_file(), f"{bundle.name}: docs/README.md is missing"
    assert (bundle.path / "LICENSE").is_file(), f"{bundle.name}: LICENSE is missing"
    assert not (bundle.path / "scripts").exists(), f"{bundle.name}: bundles hold no scripts/ (code lives in medrefine)"
    for mode in ("train", "inference", "evaluate"):
        assert mode in bundle.modes, f"{bundle.name}: no {mode} config"


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_bundle_configs_run(bundle, smoke_cohort, tmp_path):
    tiny_cohort = smoke_cohort(bundle)
    root = tmp_path / bundle.name
    shutil.copytree(bundle.path, root, ignore=shutil.ignore_patterns("models", "eval", "__pycache__"))
    for mode in (m for m in RUN_ORDER if m in bundle.modes):
        run_workflow(root, mode, {"dataset_dir": str(tiny_cohort), "device": "cpu", "work_dir": str(root)},
                     extra_configs=[root / "configs" / "smoke.json"])
        if mode == "train":
            assert any((root / "models").glob("*.pt")), f"{bundle.name}: train wrote no models/*.pt"
            # TensorBoard is the default tracker; MLflow only with configs/mlflow.json (tests/bundles/test_tracking.py)
            assert any((root / "logs").rglob("events.out.tfevents.*")), f"{bundle.name}: train wrote no TensorBoard events"
            assert not (root / "mlruns").exists(), f"{bundle.name}: an MLflow store without configs/mlflow.json"
    # every trained model describes itself, and inference refuses a value that contradicts it
    from medrefine.errors import InputError
    from medrefine.workflows.models import read_model

    weights = sorted(p for p in (root / "models").glob("*.pt") if not p.name.startswith(("latest_", "best_")))
    assert weights, f"{bundle.name}: no trained model"
    for path in weights:
        model = read_model(path)  # <name>.json beside <name>.pt
        assert model.classes and model.network["_target_"].startswith("medrefine."), f"{bundle.name}: {path.name}"
    model = read_model(root / "models" / "model.pt") if (root / "models" / "model.json").is_file() else read_model(weights[0])
    key = next(k for k in ("window", "hu_window", "pixdim") if k in model.preprocessing)
    wrong = [v + 7.0 for v in model.preprocessing[key]]
    with pytest.raises(InputError, match=rf"\.json: config key `{key}` is .* but the model was trained with"):
        run_workflow(root, "inference", {"dataset_dir": str(tiny_cohort), "device": "cpu", "work_dir": str(root), key: wrong},
                     extra_configs=[root / "configs" / "smoke.json"])


@pytest.mark.parametrize("bundle", [b for b in BUNDLES if "multi_gpu_train" in b.modes],
                         ids=[b.name for b in BUNDLES if "multi_gpu_train" in b.modes])
def test_multi_gpu_override_merges(bundle):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files(bundle, "multi_gpu_train")])
    text = str(parser.get())
    assert any(k in text for k in ("DistributedSampler", "DistributedDataParallel", "init_process_group")), (
        f"{bundle.name}: multi_gpu_train sets up no process group, DistributedSampler or DDP"
    )

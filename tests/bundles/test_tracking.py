"""Every bundle's ``configs/mlflow.json`` layer: a tiny training run tracked in a local MLflow store.

The layer appends :class:`medrefine.handlers.MLflowTracker` to ``train#handlers``; the run must
land in ``<work_dir>/mlruns`` as one run of the experiment named after the bundle, with one
``train_loss`` point per epoch equal to the history CSV's, the learning rate, the validation
metric and the config's hyper-parameters. (That TensorBoard stays the default, with no store
written, is checked on the plain training runs of ``test_bundle_harness.py``.)
"""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from medrefine.bundle import list_bundles, run_workflow
from medrefine.bundle.discovery import bundles_root

pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")

BUNDLES = list_bundles(bundles_root())
IDS = [b.name for b in BUNDLES]


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_every_bundle_has_an_mlflow_layer_appending_the_tracker(bundle):
    from monai.bundle import ConfigParser

    layer = json.loads((bundle.path / "configs" / "mlflow.json").read_text())
    assert layer["experiment_name"] == bundle.name
    parser = ConfigParser()
    parser.read_config([str(bundle.path / "configs" / f) for f in ("train.json", "mlflow.json")])
    handlers = [h["_target_"] for h in parser["train#handlers"]]
    assert handlers[-1] == "medrefine.handlers.MLflowTracker", handlers
    assert handlers.index("ValidationHandler") < len(handlers) - 1  # validation has run when the epoch is logged
    assert "TensorBoardStatsHandler" in handlers  # MLflow comes on top of TensorBoard, not instead


def _history(log_dir):
    """The rows of the run's history CSV (point supervision names it after the stage-1 model)."""
    (path,) = sorted(log_dir.glob("history*.csv"))
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_training_with_the_mlflow_layer_tracks_every_epoch(bundle, smoke_cohort, tmp_path, monkeypatch):
    import mlflow

    from medrefine.handlers.tracking import store_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cohort = smoke_cohort(bundle)
    root = tmp_path / bundle.name
    shutil.copytree(bundle.path, root, ignore=shutil.ignore_patterns("models", "eval", "logs", "__pycache__"))
    configs = root / "configs"
    workflow = run_workflow(root, "train", {"dataset_dir": str(cohort), "device": "cpu", "work_dir": str(root)},
                            extra_configs=[configs / "smoke.json", configs / "mlflow.json"])
    epochs = workflow.parser.get_parsed_content("train#trainer").state.max_epochs

    assert (root / "mlruns" / "mlflow.db").is_file()
    client = mlflow.MlflowClient(tracking_uri=store_uri(root / "mlruns")[0])
    experiment = client.get_experiment_by_name(bundle.name)
    assert experiment is not None, f"{bundle.name}: no experiment named after the bundle"
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    loss = sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)
    assert [m.step for m in loss] == list(range(1, epochs + 1))  # one point per epoch, not per iteration

    rows = _history(root / "logs")
    assert [m.value for m in loss] == pytest.approx([float(r["train_loss"]) for r in rows])
    columns = {k for r in rows for k, v in r.items() if v not in ("", None)} - {"epoch", "iteration"}
    assert set(run.data.metrics) == columns  # the history CSV's numbers, nothing else
    assert "lr" in columns and any(k.startswith("val_") for k in columns), sorted(columns)
    assert run.data.params["seed"] == "0" and run.data.params["max_epochs"] == str(epochs)
    assert any((root / "logs").rglob("events.out.tfevents.*"))  # TensorBoard still written
    assert run.info.run_name == workflow.parser.get_parsed_content("tracking_run_name")
    if "stage2" in bundle.modes:  # point supervision: stage 2 is a run of its own beside stage 1's
        run_workflow(root, "stage2", {"dataset_dir": str(cohort), "device": "cpu", "work_dir": str(root)},
                     extra_configs=[configs / "smoke.json", configs / "mlflow.json"])
        names = sorted(r.info.run_name for r in client.search_runs([experiment.experiment_id]))
        assert names == ["default_stage1_unet", "default_stage2"]


@pytest.mark.slow
def test_torchrun_training_is_tracked_once_by_rank_zero(tmp_path, torchrun_train, monkeypatch):
    """``multi_gpu_train`` + ``mlflow`` under torchrun (2 processes): one run, one point per epoch."""
    import mlflow

    from medrefine.data.phantoms import make_cardiac_cohort
    from medrefine.handlers.tracking import store_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    make_cardiac_cohort(tmp_path / "cohort", cases=4, size=32, noise="moderate", seed=5)
    root = torchrun_train("point_supervised_segmentation", tmp_path / "cohort", "--batch_size", "2", layers=("mlflow.json",))
    client = mlflow.MlflowClient(tracking_uri=store_uri(root / "mlruns")[0])
    (run,) = client.search_runs([client.get_experiment_by_name("point_supervised_segmentation").experiment_id])
    assert run.info.status == "FINISHED"
    for metric in ("train_loss", "val_dice"):  # a second logging process would add its own point at each epoch
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, metric)) == [1, 2], metric


@pytest.mark.slow
def test_lesion_cross_validation_tracks_each_fold_as_a_run(tiny_lesions, tmp_path, monkeypatch):
    """``cross_validation`` + ``mlflow``: the layer reaches every fold's training (``fold_configs``)."""
    import mlflow

    from medrefine.bundle import find_bundle
    from medrefine.handlers.tracking import store_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bundle = find_bundle("lesion_classification")
    work = tmp_path / "work"
    run_workflow(bundle, "cross_validation", {"dataset_dir": str(tiny_lesions), "device": "cpu", "work_dir": str(work)},
                 extra_configs=["smoke", "mlflow"])
    client = mlflow.MlflowClient(tracking_uri=store_uri(work / "mlruns")[0])
    runs = client.search_runs([client.get_experiment_by_name("lesion_classification").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["default_fold0", "default_fold1"]  # smoke: 2 folds
    for run in runs:
        assert run.data.params["fold"] == run.info.run_name[-1]
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1]  # smoke: 1 epoch

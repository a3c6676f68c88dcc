"""Tests of medrefine.handlers.tracking: one MLflow step per epoch, the history CSV's numbers, resume."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from ignite.engine import Engine, Events

pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")

from medrefine.handlers import MLflowTracker  # noqa: E402
from medrefine.handlers.tracking import store_uri  # noqa: E402


def _trainer(losses, fail_at: int | None = None):
    """Iteration ``i`` (1-based) outputs ``losses[i - 1]`` as a MONAI trainer's per-sample list; raises at ``fail_at``."""

    def step(engine, batch):
        if engine.state.iteration == fail_at:
            raise RuntimeError("killed")
        return [{"loss": torch.tensor(losses[engine.state.iteration - 1]), "pred": torch.zeros(2)}]

    return Engine(step)


def _client(store):
    return _client_for(store_uri(store)[0])


def _client_for(uri):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def _history(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))]


def test_store_uri_folder_becomes_sqlite_inside_it(tmp_path):
    uri, artifacts = store_uri(tmp_path / "runs" / "mlruns")
    assert uri == f"sqlite:///{(tmp_path / 'runs' / 'mlruns' / 'mlflow.db').as_posix()}"
    assert artifacts == (tmp_path / "runs" / "mlruns" / "artifacts").as_uri()
    assert (tmp_path / "runs" / "mlruns").is_dir()
    assert store_uri("http://localhost:5000") == ("http://localhost:5000", None)


def test_file_store_uri_is_refused_with_the_folder_form(tmp_path):
    with pytest.raises(ValueError, match=r"file store, which MLflow 3 refuses; give the folder itself"):
        store_uri(f"file://{tmp_path}/mlruns")


def test_one_step_per_epoch_with_loss_means_lr_validation_and_params(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    engine = _trainer([1.0, 3.0, 5.0, 7.0, 9.0, 11.0])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.25)
    evaluator = SimpleNamespace(state=SimpleNamespace(epoch=0, metrics={}))

    @engine.on(Events.EPOCH_COMPLETED)
    def _validate(e):  # validates in epoch 2 only, as a ValidationHandler with interval 2
        if e.state.epoch == 2:
            evaluator.state.epoch, evaluator.state.metrics = 2, {"val_mean_dice": 0.5}

    store = tmp_path / "mlruns"
    MLflowTracker(store, evaluator=evaluator, optimizer=opt, experiment_name="toy", run_name="r1",
                  experiment_param={"learning_rate": 0.25, "channels": [4, 8]}).attach(engine)
    engine.run([0, 1], max_epochs=3)

    client = _client(store)
    experiment = client.get_experiment_by_name("toy")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == "r1" and runs[0].info.status == "FINISHED"
    run = runs[0].info.run_id
    assert _history(client, run, "train_loss") == [(1, 2.0), (2, 6.0), (3, 10.0)]  # epoch means, not iterations
    assert _history(client, run, "val_mean_dice") == [(2, 0.5)]
    assert _history(client, run, "lr") == [(1, 0.25), (2, 0.25), (3, 0.25)]
    assert "loss" not in runs[0].data.metrics and "Loss" not in runs[0].data.metrics  # no per-iteration series
    params = runs[0].data.params
    assert params["learning_rate"] == "0.25" and params["channels"] == "[4, 8]" and params["max_epochs"] == "3"


def test_resumed_run_continues_the_unfinished_mlflow_run(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = tmp_path / "mlruns"
    settings = dict(experiment_name="toy", run_name="r1", experiment_param={"epochs": 3})
    first = _trainer([1.0] * 6, fail_at=3)  # killed in epoch 2
    MLflowTracker(store, **settings).attach(first)
    with pytest.raises(RuntimeError, match="killed"):
        first.run([0, 1], max_epochs=3)

    resumed = _trainer([4.0] * 6)
    resumed.add_event_handler(Events.STARTED, lambda e: e.state.__dict__.update(epoch=1, iteration=2))  # as ResumeHandler
    MLflowTracker(store, **settings).attach(resumed)
    resumed.run([0, 1], max_epochs=3)

    client = _client(store)
    runs = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert _history(client, runs[0].info.run_id, "train_loss") == [(1, 1.0), (2, 4.0), (3, 4.0)]


def test_missing_sqlalchemy_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    from monai.utils import OptionalImportError

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sqlalchemy" else real(name, *a))
    with pytest.raises(OptionalImportError, match=r'sqlalchemy is not installed\. .*pip install "medrefine\[tracking\]"'):
        MLflowTracker(tmp_path / "mlruns")


def test_environment_uri_wins_and_no_folder_is_made(tmp_path, monkeypatch):
    uri = f"sqlite:///{(tmp_path / 'elsewhere.db').as_posix()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    engine = _trainer([1.0, 2.0])
    MLflowTracker(tmp_path / "mlruns", experiment_name="toy").attach(engine)
    engine.run([0, 1], max_epochs=1)
    assert not (tmp_path / "mlruns").exists()
    client = _client_for(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    assert run.data.metrics["train_loss"] == 1.5

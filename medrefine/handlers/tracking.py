"""MLflow tracking of a training run: one point per epoch, the numbers of the history CSV.

Built on MONAI's :class:`~monai.handlers.MLFlowHandler` (experiment and run bookkeeping, params,
artifacts, closing the run). Why a subclass and not the handler as configured:

- MONAI's handler logs the trainer's output every *iteration* and ``engine.state.metrics`` every
  epoch; a trainer has no ``state.metrics`` and the validation metrics live on the evaluator, whose
  epoch counter MONAI would have to be told about with a second handler. This one logs, at
  ``step = epoch``, exactly the row :class:`~medrefine.handlers.HistoryCSV` writes (through the
  shared :class:`~medrefine.handlers.history.EpochSummary`): the epoch-mean training outputs
  (``train_loss``, ...), ``lr``, ``seconds`` and the evaluator's metrics of the epochs that validated.
- MLflow 3 refuses the plain-folder ("file store") backend unless ``MLFLOW_ALLOW_FILE_STORE`` is
  set, and MONAI 1.6 rejects folder paths and ``file://`` URIs for that reason. A folder given as
  ``tracking_uri`` here becomes a SQLite store inside it (``<folder>/mlflow.db``, artifacts in
  ``<folder>/artifacts``): local, offline, no server; MLflow's recommended backend.
- A resumed run (``medrefine.handlers.ResumeHandler``) continues the unfinished MLflow run of the
  same name; parameters it already holds are not logged again (MLflow refuses to change one).

The SQLite store needs ``sqlalchemy`` and ``alembic`` besides ``mlflow-skinny``:
``pip install "medrefine[tracking]"``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.handlers import MLFlowHandler

from medrefine.handlers.history import EpochSummary

__all__ = ["MLflowTracker", "store_uri"]

#: Name of the SQLite database inside a store folder.
DB_NAME = "mlflow.db"

INSTALL_HINT = 'MLflow tracking needs mlflow-skinny, sqlalchemy and alembic: pip install "medrefine[tracking]"'


def store_uri(tracking_uri: str | os.PathLike) -> tuple[str, str | None]:
    """The MLflow tracking URI for ``tracking_uri``, and the artifact location that goes with it.

    A URI with a scheme (``sqlite:///...``, ``http://...``) is returned unchanged (artifact location
    ``None``: MLflow's choice; MONAI puts a SQLite store's beside the database). A folder path
    becomes ``sqlite:///<folder>/mlflow.db`` with artifacts in ``<folder>/artifacts``; the folder is
    created.

    Raises:
        ValueError: a ``file://`` URI (MLflow 3's file store), naming the folder form to use instead.

    Example:
        >>> store_uri("sqlite:////runs/mlflow.db")
        ('sqlite:////runs/mlflow.db', None)
    """
    text = str(tracking_uri)
    if text.startswith("file:"):
        raise ValueError(f"`tracking_uri` {text!r} is MLflow's file store, which MLflow 3 refuses; "
                         f"give the folder itself ({text.split(':', 1)[1].lstrip('/')!r} as a path) "
                         f"for a SQLite store in it, or a sqlite:/// or http(s):// URI")
    if "://" in text:
        return text, None
    from monai.utils import path_to_sqlite_uri, path_to_uri

    folder = Path(text).expanduser().absolute()
    folder.mkdir(parents=True, exist_ok=True)
    return path_to_sqlite_uri(folder / DB_NAME), path_to_uri(folder / "artifacts")


class MLflowTracker(MLFlowHandler):
    """Ignite handler logging a trainer's epochs to MLflow, one step per epoch.

    Attach it to the trainer after the ``ValidationHandler`` (append it to ``train#handlers``),
    as :class:`~medrefine.handlers.HistoryCSV`. Metrics, each at ``step = epoch``:
    ``train_<key>`` for every scalar of the trainer's output averaged over the epoch
    (``train_loss``, ...), ``lr``, ``seconds``, and the evaluator's metrics (``val_mean_dice``, ...)
    in the epochs it ran. Params: ``experiment_param`` plus MONAI's ``max_epochs`` and
    ``epoch_length``. The run is closed (FINISHED) when training completes.

    Args:
        tracking_uri: a folder (a SQLite store in it, see :func:`store_uri`) or an MLflow URI
            (``sqlite:///...``, ``http://host:5000``). ``$MLFLOW_TRACKING_URI``, when set, wins, as
            in MONAI's handler.
        evaluator: the validation engine whose metrics are logged in the epochs it ran.
        optimizer: optimiser whose learning rate (first parameter group) is logged.
        experiment_name: the MLflow experiment (the bundles: their own name).
        run_name: the run in the experiment; an unfinished run of that name is continued.
        experiment_param: parameters of the run (hyper-parameters); values are logged as strings.
        artifacts: files or folders logged as artifacts when training completes.

    Raises:
        ValueError: a ``file://`` ``tracking_uri``.
        OptionalImportError: mlflow (or, for SQLite, sqlalchemy) is not installed, with the install hint.

    Example:
        >>> MLflowTracker("runs/mlruns", evaluator=evaluator, optimizer=opt,
        ...               experiment_name="multiorgan_ct_segmentation").attach(trainer)  # doctest: +SKIP
    """

    def __init__(
        self,
        tracking_uri: str | os.PathLike,
        evaluator: Any = None,
        optimizer: Any = None,
        experiment_name: str = "medrefine",
        run_name: str | None = None,
        experiment_param: Mapping[str, Any] | None = None,
        artifacts: str | Sequence[str | os.PathLike] | None = None,
    ) -> None:
        _require("mlflow")
        from_env = os.environ.get("MLFLOW_TRACKING_URI")  # wins in MONAI's handler: make no folder for ours
        uri, artifact_location = (str(tracking_uri), None) if from_env else store_uri(tracking_uri)
        if (from_env or uri).startswith("sqlite:"):
            _require("sqlalchemy")
            _require("alembic")
        super().__init__(
            tracking_uri=uri,
            iteration_log=False,
            epoch_log=True,
            experiment_name=experiment_name,
            run_name=run_name,
            experiment_param=dict(experiment_param) if experiment_param else None,
            artifacts=artifacts,
            close_on_complete=True,
            artifact_location=artifact_location,
        )
        self.summary = EpochSummary(evaluator=evaluator, optimizer=optimizer)

    def attach(self, engine) -> None:
        """Start (or continue) the run at ``STARTED``, log every epoch, close the run at ``COMPLETED``."""
        from ignite.engine import Events

        super().attach(engine)
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.summary.start())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.summary.add)

    def epoch_completed(self, engine) -> None:
        """Log the epoch's row at ``step = epoch`` (replaces MONAI's ``state.metrics`` logging)."""
        import mlflow.entities

        if not self.cur_run:
            raise ValueError("MLflowTracker: no active run (the trainer's STARTED event was not seen)")
        row = self.summary.row(engine)
        epoch = int(row.pop("epoch"))
        row.pop("iteration", None)
        stamp = int(time.time() * 1000)
        metrics = [mlflow.entities.Metric(key, float(value), stamp, epoch) for key, value in row.items()]
        self.client.log_batch(run_id=self.cur_run.info.run_id, metrics=metrics, params=[], tags=[])

    def _log_params(self, params: dict[str, Any]) -> None:
        # MLflow refuses to change a logged param; a resumed run logs its params a second time
        params = dict(params)
        self._delete_exist_param_in_dict(params)
        if params:
            super()._log_params(params)


def _require(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        from monai.utils import OptionalImportError

        raise OptionalImportError(f"{module} is not installed. {INSTALL_HINT}")

"""One CSV row per epoch: training outputs averaged over the epoch, learning rate, validation metrics.

MONAI's :class:`~monai.handlers.MetricsSaver` writes an evaluator's final metrics, and TensorBoard
events need TensorBoard to read; a plain per-epoch table (pandas, a spreadsheet) of every trainer
— supervised, auto-decoder, two-network — is what is missing, and it must survive a resume: rows
of epochs after the resumed checkpoint are dropped, so the table never holds an epoch twice.
"""

from __future__ import annotations

import csv
import logging
import math
import numbers
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["EpochSummary", "HistoryCSV", "plot_history"]

logger = logging.getLogger(__name__)


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def _merge_ranks(sums: dict[str, list[float]]) -> dict[str, float]:
    """Every process's epoch values of each key, averaged over all of them (this process's alone without a group).

    The training outputs of a distributed run are each process's share of the global batch; with
    equal shares (a ``DistributedSampler`` with ``even_divisible``) the mean over processes of
    their mean losses is the loss of the global batch, as one process would have computed it.
    """
    totals = {key: (sum(values), len(values)) for key, values in sums.items()}
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, totals)
        totals = {}
        for part in gathered:
            for key, (total, count) in part.items():
                old = totals.get(key, (0.0, 0))
                totals[key] = (old[0] + total, old[1] + count)
    return {key: total / count for key, (total, count) in totals.items() if count}


def _scalars(output: Any) -> dict[str, float]:
    """The scalar numbers of an engine output (a dict, or a list of per-sample dicts, averaged)."""
    items = output if isinstance(output, list) else [output]
    sums: dict[str, list[float]] = {}
    for item in items:
        if not isinstance(item, Mapping):
            continue
        for key, value in item.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = float(value.detach())
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                sums.setdefault(str(key), []).append(float(value))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def plot_history(rows: Sequence[Mapping[str, Any]], path: str | Path, metric: str | None = None) -> Path:
    """Training-curve PNG: training loss and one validation metric per epoch.

    Args:
        rows: history rows (``epoch``, ``train_loss`` and metric columns).
        path: the PNG to write.
        metric: the metric column to draw; default the first ``val_*`` column found.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metric is None:
        names = [k for row in rows for k in row if str(k).startswith("val_")]
        metric = names[0] if names else "val_mean_dice"
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    loss = [(int(r["epoch"]), float(r["train_loss"])) for r in rows if r.get("train_loss") not in (None, "")]
    if loss:
        ax_loss.plot(*zip(*loss), marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    val = [(int(r["epoch"]), float(r[metric])) for r in rows if r.get(metric) not in (None, "")]
    if val:
        ax_metric.plot(*zip(*val), marker="o", color="tab:green")
    ax_metric.set(xlabel="epoch", ylabel=metric, title="validation")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class EpochSummary:
    """The numbers of one trainer epoch, as :class:`HistoryCSV` writes them and the MLflow tracker logs them.

    ``epoch``, ``iteration``, ``train_<key>`` for every scalar of the trainer's output averaged
    over the epoch, ``lr`` (first parameter group of ``optimizer``), ``seconds``, then the finite
    validation metrics of ``evaluator`` when it ran in this epoch.

    Args:
        evaluator: the validation engine whose ``state.metrics`` are recorded in the epochs it ran
            (``None``: the trainer's own ``state.metrics``).
        optimizer: optimiser whose learning rate is recorded (``None``: no ``lr`` value).
    """

    def __init__(self, evaluator: Any = None, optimizer: Any = None) -> None:
        self.evaluator = evaluator
        self.optimizer = optimizer
        self._sums: dict[str, list[float]] = {}
        self._epoch_start = time.perf_counter()

    def start(self) -> None:
        """Forget the previous epoch (call on ``EPOCH_STARTED``)."""
        self._sums = {}
        self._epoch_start = time.perf_counter()

    def add(self, engine) -> None:
        """Add the scalars of the engine's output (call on ``ITERATION_COMPLETED``)."""
        for key, value in _scalars(engine.state.output).items():
            self._sums.setdefault(key, []).append(value)

    def _metrics(self, engine) -> dict[str, Any]:
        if self.evaluator is None:
            return dict(engine.state.metrics)
        state = getattr(self.evaluator, "state", None)
        if state is None or getattr(state, "epoch", None) != engine.state.epoch:
            return {}  # the evaluator did not run in this epoch
        return dict(state.metrics)

    def row(self, engine, across_ranks: bool = False) -> dict[str, Any]:
        """The epoch's numbers (call on ``EPOCH_COMPLETED``, after the ``ValidationHandler``).

        ``across_ranks``: average the training values over every process of a distributed run (a
        collective call: every rank must make it); otherwise this process's own values.
        """
        row: dict[str, Any] = {"epoch": engine.state.epoch, "iteration": engine.state.iteration}
        sums = _merge_ranks(self._sums) if across_ranks else {k: sum(v) / len(v) for k, v in self._sums.items() if v}
        for key, value in sums.items():
            row[f"train_{key}"] = value
        if self.optimizer is not None:
            row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["seconds"] = round(time.perf_counter() - self._epoch_start, 3)
        for key, value in self._metrics(engine).items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = float(value)
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)):
                row[str(key)] = float(value)
        return row


class HistoryCSV:
    """Ignite handler writing ``csv_path`` with one row per epoch (and optionally a curve PNG).

    Columns: ``epoch``, ``iteration``, ``train_<key>`` for every scalar of the trainer's output
    averaged over the epoch (``train_loss``; NeAR also ``train_ce``, ``train_dice``,
    ``train_latent``), ``lr`` (first parameter group of ``optimizer``), ``seconds``, then the
    validation metrics of the epochs that validated (``val_mean_dice``, ...), empty otherwise.

    The file is rewritten atomically after every epoch (a kill never leaves half a row), only by
    the first process of a distributed run; attach the handler in every process there, as the
    ``train_*`` values are averaged over all processes' iterations (the global batch's loss). When the trainer resumes, the rows of epochs after the
    resumed one are dropped at the start of its first epoch. Attach it after the
    ``ValidationHandler`` so the epoch's validation has run.

    Args:
        csv_path: the CSV to write.
        evaluator: the validation engine whose ``state.metrics`` are recorded in the epochs it ran
            (``None``: the trainer's own ``state.metrics``).
        optimizer: optimiser whose learning rate is recorded (``None``: no ``lr`` values).
        png_path: a training-curve PNG redrawn after every epoch; ``None`` for none.

    Example:
        >>> HistoryCSV("logs/history.csv", evaluator=evaluator, optimizer=opt).attach(trainer)  # doctest: +SKIP
    """

    def __init__(self, csv_path: str | Path, evaluator: Any = None, optimizer: Any = None,
                 png_path: str | Path | None = None) -> None:
        self.csv_path = Path(csv_path)
        self.summary = EpochSummary(evaluator=evaluator, optimizer=optimizer)
        self.png_path = Path(png_path) if png_path else None
        self.rows: list[dict[str, Any]] = []
        self._started = False

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _read(self, before_epoch: int) -> list[dict[str, Any]]:
        if not self.csv_path.is_file():
            return []
        with open(self.csv_path, newline="") as fh:
            return [row for row in csv.DictReader(fh) if row.get("epoch", "").isdigit() and int(row["epoch"]) < before_epoch]

    def _epoch_started(self, engine) -> None:
        if not self._started:  # the first epoch of this process: keep the rows before it (a resume), drop the rest
            self._started = True
            self.rows = self._read(engine.state.epoch)
            if _rank() == 0 and self.csv_path.is_file():
                self._write()
        self.summary.start()

    def _iteration(self, engine) -> None:
        self.summary.add(engine)

    def _epoch_completed(self, engine) -> None:
        self.rows.append(self.summary.row(engine, across_ranks=True))
        if _rank() == 0:
            self._write()
            if self.png_path is not None:
                plot_history(self.rows, self.png_path)

    def _write(self) -> None:
        from medrefine.io import atomic_write

        fields: list[str] = []
        for row in self.rows:
            fields.extend(k for k in row if k not in fields)
        with atomic_write(self.csv_path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields or ["epoch"])
            writer.writeheader()
            writer.writerows(self.rows)

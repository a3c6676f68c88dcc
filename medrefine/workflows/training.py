"""Training bookkeeping for MONAI-engine bundles: threads, resuming, the CSV history and its plot.

Used by the segmentation bundle's configs (``medrefine.workflows.training.TrainingHistory`` etc.);
nothing here knows about a particular network or data set.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


__all__ = ["TrainingHistory", "latest_checkpoint", "plot_history", "resume_from_latest", "set_num_threads"]

logger = logging.getLogger(__name__)




def set_num_threads(num_threads: int | None) -> int:
    """Set torch's CPU threads (``None``/0: leave them) and return the previous count, to restore in ``finalize``."""
    before = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    return before


def latest_checkpoint(model_dir: str | Path, prefix: str = "checkpoint") -> Path | None:
    """The newest ``<prefix>*.pt`` in ``model_dir`` (by the epoch in its name, then mtime)."""
    import re

    found = list(Path(model_dir).glob(f"{prefix}*.pt"))
    if not found:
        return None

    def order(p: Path) -> tuple[int, float]:
        m = re.search(r"=(\d+)", p.name)
        return (int(m.group(1)) if m else -1, p.stat().st_mtime)

    return max(found, key=order)


def resume_from_latest(trainer, model_dir: str | Path, load_dict: Mapping[str, Any], prefix: str = "checkpoint") -> Path | None:
    """Attach MONAI's :class:`~monai.handlers.CheckpointLoader` when ``model_dir`` has a checkpoint.

    Training then continues from the saved epoch with the saved optimiser and scheduler states;
    the resumed file is removed once a newer checkpoint has been saved (attach the saver first).
    Returns the checkpoint used, or ``None`` (a fresh start).
    """
    from monai.handlers import CheckpointLoader

    path = latest_checkpoint(model_dir, prefix)
    if path is None:
        return None
    logger.info("resuming from %s", path)
    CheckpointLoader(load_path=str(path), load_dict=dict(load_dict), map_location="cpu").attach(trainer)

    def drop_resumed(engine) -> None:  # the new run's saver does not know the old file
        if path.is_file() and latest_checkpoint(model_dir, prefix) != path:
            path.unlink()

    from ignite.engine import Events

    trainer.add_event_handler(Events.EPOCH_COMPLETED, drop_resumed)
    return path


def plot_history(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Training-curve PNG: training loss and validation mean Dice per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [r["epoch"] for r in rows]
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    val = [(r["epoch"], r["val_mean_dice"]) for r in rows if r.get("val_mean_dice") not in (None, "")]
    if val:
        ax_dice.plot(*zip(*val), marker="o", color="tab:green")
    ax_dice.set(xlabel="epoch", ylabel="mean Dice", title="validation", ylim=(0, 1))
    for ax in (ax_loss, ax_dice):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class TrainingHistory:
    """Ignite handler writing a per-epoch CSV history and a training-curve PNG.

    MONAI's :class:`~monai.handlers.MetricsSaver` writes an evaluator's final metrics, and
    TensorBoard logs need TensorBoard to read; this keeps one plain CSV row per epoch
    (``epoch, train_loss, val_mean_dice, lr``) and redraws ``png_path`` after every epoch.
    Attach it to the trainer after the :class:`~monai.handlers.ValidationHandler`, so the
    validation of the epoch has run.

    Args:
        csv_path: the CSV to write (rewritten each epoch).
        png_path: the PNG to draw; ``None`` for none.
        evaluator: the validation engine whose ``key_metric`` is read (``None``: no Dice column values).
        optimizer: optimiser whose first group's learning rate is logged.
    """

    def __init__(self, csv_path: str | Path, png_path: str | Path | None = None, evaluator=None, optimizer=None,
                 metric_name: str = "val_mean_dice") -> None:
        self.csv_path = Path(csv_path)
        self.png_path = Path(png_path) if png_path else None
        self.evaluator = evaluator
        self.optimizer = optimizer
        self.metric_name = metric_name
        self.rows: list[dict[str, Any]] = []
        self._losses: list[float] = []
        self._seen_val_epoch = -1
        self._started = False

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._first_epoch)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch)

    def _first_epoch(self, engine) -> None:
        """On a resumed run, keep the rows of the epochs before the checkpoint."""
        if self._started:
            return
        self._started = True
        if self.csv_path.is_file() and not self.rows:
            with open(self.csv_path, newline="") as f:
                self.rows = [{k: (float(v) if v not in ("", None) and k != "epoch" else v) for k, v in row.items()}
                             for row in csv.DictReader(f) if int(row["epoch"]) < engine.state.epoch]
            for row in self.rows:
                row["epoch"] = int(row["epoch"])

    def _iteration(self, engine) -> None:
        out = engine.state.output
        items = out if isinstance(out, list) else [out]
        for item in items:
            loss = item.get("loss") if isinstance(item, Mapping) else None
            if loss is not None:
                self._losses.append(float(loss))

    def _epoch(self, engine) -> None:
        val = ""
        state = getattr(self.evaluator, "state", None)
        if state is not None and getattr(state, "epoch", 0) and state.metrics and state.epoch != self._seen_val_epoch:
            self._seen_val_epoch = state.epoch  # validated during this epoch
            value = state.metrics.get(self.metric_name)
            val = "" if value is None else float(value)
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else ""
        loss = float(np.mean(self._losses)) if self._losses else math.nan
        self.rows.append({"epoch": engine.state.epoch, "train_loss": loss, "val_mean_dice": val, "lr": lr})
        self._losses = []
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", "train_loss", "val_mean_dice", "lr"])
            writer.writeheader()
            writer.writerows(self.rows)
        if self.png_path is not None:
            plot_history(self.rows, self.png_path)

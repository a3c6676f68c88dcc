"""Ignite handlers shared by every bundle's trainer: resuming from the latest checkpoint, the
per-epoch history CSV (and the same numbers tracked in MLflow, optional), one progress bar over
the run, and a stop for collapsed runs.

Checkpoints are MONAI's ``CheckpointSaver`` writing atomically (:class:`AtomicCheckpointSaver`);
learning-rate steps, validation, console and TensorBoard logging are MONAI's own
handlers (``LrScheduleHandler``, ``ValidationHandler``, ``StatsHandler``,
``TensorBoardStatsHandler``); the bundles declare them, and these, under ``train#handlers``.
"""

from __future__ import annotations

from medrefine.handlers.checkpoint import AtomicCheckpointSaver
from medrefine.handlers.collapse import CollapseStop, TrainingCollapsed
from medrefine.handlers.history import HistoryCSV, plot_history
from medrefine.handlers.progress import CaseProgress, EpochProgress
from medrefine.handlers.resume import ResumeHandler, latest_checkpoint, load_checkpoint
from medrefine.handlers.tracking import MLflowTracker

__all__ = ["AtomicCheckpointSaver", "CaseProgress", "CollapseStop", "EpochProgress", "HistoryCSV", "MLflowTracker", "ResumeHandler", "latest_checkpoint", "load_checkpoint", "plot_history", "TrainingCollapsed"]

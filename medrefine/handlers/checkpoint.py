"""MONAI's ``CheckpointSaver`` with atomic writes: a checkpoint is complete or absent, never half.

MONAI builds its ignite ``DiskSaver`` with ``atomic=False`` (ignite's temporary file used to be
readable by its owner only); a run killed while ``torch.save`` writes then leaves a truncated
``model.pt`` or ``latest_checkpoint_*.pt`` that the next run or inference fails on. Current
ignite writes to a temporary file in the same folder, ``os.replace``-s it onto the name and
restores group/other read permission, so this class only switches that on for every checkpoint
kind the saver keeps (final, key metric, interval).

``min_key_metric`` adds what MONAI's saver lacks for model selection: ignite's ``Checkpoint``
always writes its first key-metric checkpoint, so a model whose validation scored 0 became
``model.pt`` ("best value: 0.0"); with ``min_key_metric`` a key metric at most that value is never
written (see :class:`~medrefine.handlers.CollapseStop`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from monai.handlers import CheckpointSaver as _MonaiCheckpointSaver

__all__ = ["AtomicCheckpointSaver"]

logger = logging.getLogger(__name__)


class AtomicCheckpointSaver(_MonaiCheckpointSaver):
    """:class:`monai.handlers.CheckpointSaver` whose files are written atomically (temporary name, then rename).

    Takes MONAI's arguments (``save_dir``, ``save_dict``, ``save_key_metric``,
    ``key_metric_filename``, ``save_interval``, ``n_saved``, ...) and one more:

    Args:
        min_key_metric: the key-metric checkpoint is written only when the key metric is above
            this (a model that never beat it is not exported as the selected one); ``None``
            (default) writes as MONAI does.

    Example:
        >>> AtomicCheckpointSaver("models", {"model": net}, save_key_metric=True, key_metric_filename="model.pt")  # doctest: +SKIP
    """

    def __init__(self, *args: Any, min_key_metric: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_key_metric = None if min_key_metric is None else float(min_key_metric)
        self.key_metric_name = kwargs.get("key_metric_name")
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler._atomic = True

    def metrics_completed(self, engine: Any) -> None:
        """Save the key-metric checkpoint as MONAI does, unless the metric is at most ``min_key_metric``."""
        if self.min_key_metric is not None:
            name = self.key_metric_name or getattr(engine.state, "key_metric_name", None)
            value = engine.state.metrics.get(name) if name else None
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = math.nan
            if not value > self.min_key_metric:
                logger.debug("%s = %s is not above %g: no key-metric checkpoint", name, value, self.min_key_metric)
                return
        super().metrics_completed(engine)

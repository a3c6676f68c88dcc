"""MONAI's ``CheckpointSaver`` with atomic writes: a checkpoint is complete or absent, never half.

MONAI builds its ignite ``DiskSaver`` with ``atomic=False`` (ignite's temporary file used to be
readable by its owner only); a run killed while ``torch.save`` writes then leaves a truncated
``model.pt`` or ``latest_checkpoint_*.pt`` that the next run or inference fails on. Current
ignite writes to a temporary file in the same folder, ``os.replace``-s it onto the name and
restores group/other read permission, so this class only switches that on for every checkpoint
kind the saver keeps (final, key metric, interval).
"""

from __future__ import annotations

from typing import Any

from monai.handlers import CheckpointSaver as _MonaiCheckpointSaver

__all__ = ["AtomicCheckpointSaver"]


class AtomicCheckpointSaver(_MonaiCheckpointSaver):
    """:class:`monai.handlers.CheckpointSaver` whose files are written atomically (temporary name, then rename).

    Takes exactly MONAI's arguments (``save_dir``, ``save_dict``, ``save_key_metric``,
    ``key_metric_filename``, ``save_interval``, ``n_saved``, ...).

    Example:
        >>> AtomicCheckpointSaver("models", {"model": net}, save_key_metric=True, key_metric_filename="model.pt")  # doctest: +SKIP
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler._atomic = True

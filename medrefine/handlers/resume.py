"""Keep the latest training state on disk and continue from it, reading it as plain data only.

MONAI's :class:`~monai.handlers.CheckpointSaver` writes checkpoints and its
:class:`~monai.handlers.CheckpointLoader` loads one file named in the config; resuming needs
more: find the newest ``<prefix>_checkpoint_epoch=<N>.pt`` an earlier run left (or none, a fresh
start), refuse a file that is not plain data with one line naming it, remove the resumed file once
the new run has saved a newer one (the new saver does not know the old file), and save the
trainer's own state although a config cannot name the trainer inside the trainer's handler list.
Checkpoints hold only tensors, numbers, strings, lists and dicts (state dicts, ignite's engine
state), so they are read with ``torch.load(weights_only=True)``: a file that needs more to
unpickle is refused, never executed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from medrefine.errors import InputError

__all__ = ["ResumeHandler", "latest_checkpoint", "load_checkpoint"]

logger = logging.getLogger(__name__)

_NUMBER = re.compile(r"(?:epoch=|_)(\d+)\.pt$")


def latest_checkpoint(checkpoint_dir: str | Path, prefix: str = "latest") -> Path | None:
    """The newest ``<prefix>*.pt`` in ``checkpoint_dir``, or None.

    Newest means the highest epoch in the name (``latest_checkpoint_epoch=12.pt``, or the older
    ``latest_checkpoint_12.pt``), then the modification time.

    Example:
        >>> latest_checkpoint("models")  # doctest: +SKIP
        PosixPath('models/latest_checkpoint_epoch=12.pt')
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return None
    found = [p for p in folder.glob(f"{prefix}*.pt") if p.is_file()]
    if not found:
        return None

    def order(path: Path) -> tuple[int, float]:
        match = _NUMBER.search(path.name)
        return (int(match.group(1)) if match else -1, path.stat().st_mtime)

    return max(found, key=order)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint that holds only plain data (``torch.load(..., weights_only=True)``).

    Raises:
        InputError: the file is unreadable, truncated, or needs arbitrary objects to unpickle
            (one line naming the file; nothing in it is executed).
    """
    from medrefine.io.torchfile import load_plain

    path = Path(path)
    try:
        checkpoint = load_plain(path, map_location=map_location, what="checkpoint")
    except InputError as err:
        raise InputError(f"{err}; delete it or resume from another folder") from None
    if not isinstance(checkpoint, Mapping):
        raise InputError(f"{path}: a checkpoint must hold a dict of state dicts, found {type(checkpoint).__name__}")
    return dict(checkpoint)


class ResumeHandler:
    """Ignite handler: save the latest training state every epoch and continue from it after a restart.

    On attach it adds the engine itself to ``save_dict`` (as ``engine_key``; a config cannot name
    the trainer among the trainer's own handlers) and attaches MONAI's
    :class:`~medrefine.handlers.AtomicCheckpointSaver` (MONAI's, written atomically; ``save_interval=1``, ``n_saved=1``) writing
    ``<prefix>_checkpoint_epoch=<N>.pt`` into ``checkpoint_dir``. When the engine starts fresh, it
    loads the newest such file there, if any, into the same objects: a run started again after a
    kill continues from the last finished epoch with the saved network, optimiser, scheduler and
    engine state; a finished run is not repeated, and a larger ``max_epochs`` extends it.

    Put it after the ``LrScheduleHandler`` (and the ``ValidationHandler``) in ``train#handlers``:
    handlers of one event run in order, and the saved scheduler must be the one of the finished epoch.

    Args:
        checkpoint_dir: the folder of the checkpoints.
        save_dict: the objects to save and restore, e.g. ``{"network": net, "optimizer": opt,
            "lr_scheduler": sched}``.
        prefix: file name prefix of the checkpoints. Default ``"latest"``.
        map_location: passed to ``torch.load``. Default ``"cpu"`` (state dicts are copied onto the
            objects' devices when loaded).
        resume: False starts afresh even when the folder has a checkpoint (it is replaced).
        engine_key: the key of the engine's own state. Default ``"trainer"``.

    Raises (when the run starts):
        InputError: the newest checkpoint is not plain data, does not fit ``save_dict`` (another
            network or data set), or is further than ``max_epochs`` — one line naming the file.

    Example:
        >>> ResumeHandler("models", {"network": net, "optimizer": opt}).attach(trainer)  # doctest: +SKIP
    """

    def __init__(self, checkpoint_dir: str | Path, save_dict: Mapping[str, Any], prefix: str = "latest",
                 map_location: Any = "cpu", resume: bool = True, engine_key: str = "trainer") -> None:
        if not save_dict:
            raise ValueError("`save_dict` must name at least one object to save, got an empty mapping")
        if engine_key in save_dict:
            raise ValueError(f"`save_dict` must not hold {engine_key!r}: the engine is added under that key on attach")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.save_dict = dict(save_dict)
        self.prefix = str(prefix)
        self.map_location = map_location
        self.resume = bool(resume)
        self.engine_key = str(engine_key)
        self.saver = None
        self.resumed_from: Path | None = None

    def attach(self, engine) -> None:
        from ignite.engine import Events
        from medrefine.handlers.checkpoint import AtomicCheckpointSaver

        self.save_dict[self.engine_key] = engine
        self.saver = AtomicCheckpointSaver(str(self.checkpoint_dir), self.save_dict, file_prefix=self.prefix,
                                     save_interval=1, n_saved=1, epoch_level=True)
        engine.add_event_handler(Events.STARTED, self)
        self.saver.attach(engine)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._drop_resumed)
        engine.add_event_handler(Events.COMPLETED, self._drop_resumed)

    def __call__(self, engine) -> None:
        from ignite.handlers import Checkpoint

        if not self.resume or engine.state.epoch != 0:  # only a fresh engine resumes (a second run() continues)
            return
        path = latest_checkpoint(self.checkpoint_dir, self.prefix)
        if path is None:
            return
        checkpoint = load_checkpoint(path, self.map_location)
        max_epochs = engine.state.max_epochs
        try:
            Checkpoint.load_objects(to_load=self.save_dict, checkpoint=checkpoint)
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise InputError(
                f"{path}: the checkpoint does not fit this training set-up ({first}); "
                "resume from another folder or delete it"
            ) from None
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise InputError(
                f"{path}: the checkpoint is at epoch {engine.state.epoch}, beyond max_epochs {max_epochs}; "
                "raise the epochs to continue it"
            )
        engine.state.max_epochs = max_epochs  # the engine state in the file carries the old run's value
        self.resumed_from = path
        logger.info("resumed from %s at epoch %d (iteration %d)", path, engine.state.epoch, engine.state.iteration)

    def _drop_resumed(self, engine) -> None:
        path = self.resumed_from
        if path is None or latest_checkpoint(self.checkpoint_dir, self.prefix) == path:
            return
        self.resumed_from = None
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()) or torch.distributed.get_rank() == 0:
            path.unlink(missing_ok=True)  # one process deletes; every process resumed from it

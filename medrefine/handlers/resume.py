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

The checkpoints describe themselves as a trained model does: ``<prefix>_checkpoint.json`` beside
them (the ``model.json`` format: the network's class and arguments) says which network they
hold. A run resumes only when that description equals the configured network's; otherwise it
stops before the first epoch with one line naming the folder, both networks' differing
arguments and how to start afresh, instead of failing inside ``load_state_dict``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from medrefine.errors import InputError

__all__ = ["ResumeHandler", "checkpoint_mismatch", "latest_checkpoint", "load_checkpoint"]

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


def _network_spec(network: Any) -> dict[str, Any] | None:
    """The ``{"_target_": ..., **arguments}`` of a network (unwrapping DDP), or None when it has none."""
    from medrefine.networks.describe import to_plain

    spec = getattr(getattr(network, "module", network), "init_args", None)
    if not isinstance(spec, Mapping) or "_target_" not in spec:
        return None
    return to_plain(dict(spec), "network")


_UNSET = object()


def _short(value: Any, width: int = 40) -> str:
    if value is _UNSET:
        return "(unset)"
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def checkpoint_mismatch(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The differences between two network descriptions, as ``key: saved there, current here`` strings.

    Example:
        >>> checkpoint_mismatch({"_target_": "U", "channels": [4, 8]}, {"_target_": "U", "channels": [16, 32]})
        ['channels [4, 8] there, [16, 32] here']
    """
    differ = []
    for key in sorted(set(saved) | set(current), key=lambda k: (k != "_target_", k)):
        there, here = saved.get(key, _UNSET), current.get(key, _UNSET)
        if there != here:
            differ.append(f"{key} {_short(there)} there, {_short(here)} here")
    return differ


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
        network_key: the ``save_dict`` entry of the network whose description (its ``init_args``)
            is written beside the checkpoints and compared before resuming. Default: ``"network"``,
            else ``"model"``, whichever ``save_dict`` has.

    Raises (when the run starts):
        InputError: the checkpoint folder holds a checkpoint of another network (its description
            differs from the configured one: the differing arguments are named, and how to start
            afresh); the newest checkpoint is not plain data, does not fit ``save_dict``, or is
            further than ``max_epochs`` — one line naming the file.

    Example:
        >>> ResumeHandler("models", {"network": net, "optimizer": opt}).attach(trainer)  # doctest: +SKIP
    """

    def __init__(self, checkpoint_dir: str | Path, save_dict: Mapping[str, Any], prefix: str = "latest",
                 map_location: Any = "cpu", resume: bool = True, engine_key: str = "trainer",
                 network_key: str | None = None) -> None:
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
        self.network_key = str(network_key) if network_key is not None else next(
            (k for k in ("network", "model") if k in self.save_dict), "network")
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

    @property
    def description_path(self) -> Path:
        """``<checkpoint_dir>/<prefix>_checkpoint.json``: which network the checkpoints hold."""
        return self.checkpoint_dir / f"{self.prefix}_checkpoint.json"

    def _check_description(self, path: Path) -> None:
        """Refuse to resume ``path`` when the description beside it names another network."""
        from medrefine.workflows.models import read_model

        current = _network_spec(self.save_dict.get(self.network_key))
        if current is None or not self.description_path.is_file():
            return  # nothing to compare: loading the state dicts is the check
        saved = read_model(self.description_path).network
        differ = checkpoint_mismatch(saved, current)
        if differ:
            folder = self.checkpoint_dir
            raise InputError(
                f"{folder}: holds a checkpoint ({path.name}) of {saved.get('_target_', 'a network')} that differs "
                f"from the configured model ({'; '.join(differ)}); start afresh with --run NEW (or --work-dir NEW), --set resume=false "
                f"(replaces it), or delete {folder}"
            )

    def _write_description(self) -> None:
        from medrefine.workflows.models import write_description

        spec = _network_spec(self.save_dict.get(self.network_key))
        if spec is None or (torch.distributed.is_available() and torch.distributed.is_initialized()
                            and torch.distributed.get_rank() != 0):
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        write_description(self.checkpoint_dir, spec, name=self.description_path.stem)

    def __call__(self, engine) -> None:
        if engine.state.epoch != 0:  # only a fresh engine resumes (a second run() continues)
            return
        if self.resume:
            self._resume(engine)
        else:
            self._discard()
        self._write_description()

    def _discard(self) -> None:
        """``resume=False``: remove the folder's old checkpoints, which a later run would otherwise resume."""
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
            return
        if self.checkpoint_dir.is_dir():
            for old in self.checkpoint_dir.glob(f"{self.prefix}*.pt"):
                logger.info("resume=false: removing %s", old)
                old.unlink(missing_ok=True)

    def _resume(self, engine) -> None:
        from ignite.handlers import Checkpoint

        path = latest_checkpoint(self.checkpoint_dir, self.prefix)
        if path is None:
            return
        self._check_description(path)
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

"""One progress bar for a whole training run: epochs done, time left, the loss and the last validation.

MONAI's ``StatsHandler`` logs a line per iteration or epoch (hundreds of lines for a default
run) and ignite's ``ProgressBar`` draws a new bar every epoch; neither gives the time the run
has left. This handler draws a single ``tqdm`` bar over all epochs (resumed runs start where
they stopped), with the epoch's mean loss and the latest validation metrics as its postfix, and
writes one summary line per validation above the bar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["CaseProgress", "EpochProgress", "loss_of"]


def loss_of(output: Any) -> float | None:
    """The scalar loss of one iteration's output (a dict with ``loss``, a list of them, or a number)."""
    if isinstance(output, (list, tuple)) and output:
        output = output[0]
    if isinstance(output, Mapping):
        output = output.get("loss")
    try:
        return float(output)
    except (TypeError, ValueError):
        return None


class EpochProgress:
    """Ignite handler: one ``tqdm`` bar over the run's epochs with its ETA.

    Args:
        evaluator: the validation engine whose ``state.metrics`` are shown after each validation
            (``None``: the trainer's own ``state.metrics``).
        desc: the bar's label. Defaults to ``"training"``.
        output_transform: maps an iteration's output to its loss; defaults to the ``loss`` entry.
        enabled: False attaches nothing (e.g. ``-v`` runs that log every epoch instead).
        summary: write one line per validation above the bar (``epoch 10/50: val_mean_dice 0.8123
            (best 0.8123 at epoch 10)``). Defaults to True.
        max_lines: at most about this many summary lines per run: when validations are more
            frequent (``val_interval=1`` over 300 epochs), a line is written once per
            ``max_epochs / max_lines`` epochs and for the last epoch; the bar's postfix always shows
            the latest validation. Defaults to 20.

    Only the first process of a distributed run draws the bar.

    Example:
        >>> EpochProgress(evaluator=evaluator).attach(trainer)  # doctest: +SKIP
    """

    def __init__(self, evaluator: Any = None, desc: str = "training",
                 output_transform: Callable[[Any], float | None] = loss_of, enabled: bool = True,
                 summary: bool = True, max_lines: int = 20) -> None:
        if int(max_lines) < 1:
            raise ValueError(f"`max_lines` must be at least 1, got {max_lines}")
        self.evaluator = evaluator
        self.summary = bool(summary)
        self.max_lines = int(max_lines)
        self._next_line_epoch = 0
        self._trainer = None
        self.desc = str(desc)
        self.output_transform = output_transform
        self.enabled = bool(enabled)
        self.bar = None
        self._losses: list[float] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        if not self.enabled or _rank() != 0:
            return
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._close)
        engine.add_event_handler(Events.TERMINATE, self._close)
        self._trainer = engine
        if self.summary and hasattr(self.evaluator, "add_event_handler"):
            self.evaluator.add_event_handler(Events.COMPLETED, self._validated)

    def _started(self, engine: Any) -> None:
        from tqdm.auto import tqdm

        self._close(engine)
        self._next_line_epoch = 0
        self.bar = tqdm(total=engine.state.max_epochs, initial=engine.state.epoch, desc=self.desc, unit="epoch",
                        dynamic_ncols=True)

    def _iteration(self, engine: Any) -> None:
        loss = self.output_transform(engine.state.output)
        if loss is not None:
            self._losses.append(loss)

    def _epoch_completed(self, engine: Any) -> None:
        if self.bar is None:
            return
        postfix: dict[str, str] = {}
        if self._losses:
            postfix["loss"] = f"{sum(self._losses) / len(self._losses):.4f}"
        self._losses = []
        metrics = (self.evaluator.state.metrics if self.evaluator is not None else engine.state.metrics) or {}
        for key, value in metrics.items():
            try:
                postfix[key] = f"{float(value):.4f}"
            except (TypeError, ValueError):
                continue
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def summary_line(self, evaluator: Any) -> str | None:
        """``epoch 10/50: val_mean_dice 0.8123 (best 0.8123 at epoch 10)`` for the validation just run."""
        metrics = []
        for key, value in (evaluator.state.metrics or {}).items():
            try:
                metrics.append(f"{key} {float(value):.4f}")
            except (TypeError, ValueError):
                continue
        if not metrics:
            return None
        trainer = self._trainer.state if self._trainer is not None else None
        where = f"epoch {trainer.epoch}/{trainer.max_epochs}" if trainer is not None else "validation"
        line = f"{where}: {', '.join(metrics)}"
        best, best_epoch = getattr(evaluator.state, "best_metric", None), getattr(evaluator.state, "best_metric_epoch", None)
        if best is not None and best_epoch is not None and best_epoch >= 0:
            try:
                line += f" (best {float(best):.4f} at epoch {int(best_epoch)})"
            except (TypeError, ValueError):
                pass
        return line

    def _validated(self, evaluator: Any) -> None:
        if self.bar is None or self._trainer is None:
            return
        epoch, max_epochs = self._trainer.state.epoch, self._trainer.state.max_epochs or 0
        if epoch < self._next_line_epoch and epoch < max_epochs:
            return
        line = self.summary_line(evaluator)
        if line is not None:
            self.bar.write(line, file=self.bar.fp)
            self._next_line_epoch = epoch + -(-max_epochs // self.max_lines)

    def _close(self, engine: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CaseProgress:
    """Ignite handler: one ``tqdm`` bar over the cases an inference or evaluation run reads, with its ETA.

    MONAI's sliding-window inferer can draw a bar per case (``progress=True``), which gives no
    estimate for the run; this draws one bar over the evaluator's iterations (one case each at
    the bundles' batch size of 1).

    Args:
        desc: the bar's label. Defaults to ``"cases"``.
        enabled: False attaches nothing.

    Only the first process of a distributed run draws the bar.

    Example:
        >>> CaseProgress().attach(evaluator)  # doctest: +SKIP
    """

    def __init__(self, desc: str = "cases", enabled: bool = True) -> None:
        self.desc = str(desc)
        self.enabled = bool(enabled)
        self.bar = None

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        if not self.enabled or _rank() != 0:
            return
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.COMPLETED, self._close)
        engine.add_event_handler(Events.TERMINATE, self._close)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._failed)

    def _started(self, engine: Any) -> None:
        from tqdm.auto import tqdm

        self._close(engine)
        total = engine.state.epoch_length
        if total is None:
            try:
                total = len(engine.state.dataloader)
            except TypeError:
                total = None
        self.bar = tqdm(total=total, desc=self.desc, unit="batch" if _batch_size(engine) != 1 else "case",
                        dynamic_ncols=True)

    def _iteration(self, engine: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def _failed(self, engine: Any, error: BaseException) -> None:
        self._close(engine)
        raise error

    def _close(self, engine: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _batch_size(engine: Any) -> int | None:
    loader = getattr(engine.state, "dataloader", None) or getattr(engine, "data_loader", None)
    return getattr(loader, "batch_size", None)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

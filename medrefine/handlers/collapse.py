"""Stop a training that has collapsed: a validation metric of 0, or one class predicted everywhere.

A segmentation network can fall into predicting background everywhere (a too high learning
rate, intensities it cannot use, labels it cannot reach) and stay there: the loss goes flat,
every validation scores 0, and without a guard the run trains on for hundreds of epochs and then
saves that model as "best" (issue 17: "best value: 0.0 at epoch: 300", exit 0). MONAI's
``EarlyStopHandler`` stops when a score stops *improving*, which a collapsed run's constant 0 does
only after its patience and silently; it does not tell collapse from a plateau, nor say what to
try. :class:`CollapseStop` watches the validations: after ``patience`` validations in a row whose
key metric is at most ``min_value`` or whose predictions hold one class only, while the training
loss has stopped falling (less than ``min_loss_drop`` relative drop since the previous validation:
a small organ can score 0 for 40 epochs while the loss still falls, and then be learned), it
stops the trainer and :meth:`CollapseStop.raise_if_collapsed` (a bundle's ``run`` step after ``trainer.run()``)
ends the run with one line saying what happened and what to try. A run whose validations never
scored above ``min_value`` ends the same way, even if it was too short to reach ``patience``.
Bundles pair it with :class:`~medrefine.handlers.AtomicCheckpointSaver`'s ``min_key_metric`` so
such a model is never written as the selected one.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch

from medrefine.errors import MedrefineError

__all__ = ["CollapseStop", "TrainingCollapsed"]

logger = logging.getLogger(__name__)


class TrainingCollapsed(MedrefineError):
    """A training run stopped (or ended) because its model predicts nothing useful."""


def _classes_of(pred: Any, class_groups: Sequence[int] | None = None) -> set[Any]:
    """The classes a prediction ``(C, *spatial)`` assigns (argmax over channels; one channel: > 0.5).

    With ``class_groups`` (classes per target, e.g. ``[3, 2]``) ``pred`` is one sample's logits of
    several targets side by side (``(sum K,)``): the answer is that sample's tuple of per-target
    classes, so one tuple over every validation sample means every target got one class throughout.
    """
    pred = torch.as_tensor(pred).detach()
    if pred.ndim == 0:
        return set()
    if class_groups is not None:
        parts = torch.split(pred.reshape(-1), [int(k) for k in class_groups])
        return {tuple(int(part.argmax()) for part in parts)}
    if pred.shape[0] == 1:
        return {int(v) for v in torch.unique((pred > 0.5).to(torch.int64))}
    return {int(v) for v in torch.unique(pred.argmax(dim=0))}


class CollapseStop:
    """Ignite handler: stop the trainer after ``patience`` collapsed validations in a row.

    A validation is *collapsed* when the evaluator's key metric (or ``metric_name``) is at most
    ``min_value``, or when for one of ``pred_keys`` every voxel of every validation case gets the
    same class, and the trainer's mean loss over the epochs since the previous validation is less
    than ``min_loss_drop`` (relative) below the mean over the epochs before it. Attach it to the trainer, after the ``ValidationHandler`` (it reads the evaluator's
    state of the epoch that validated, as :class:`~medrefine.handlers.HistoryCSV` does).

    Args:
        evaluator: the validation engine.
        metric_name: the metric to watch; ``None``: the evaluator's key metric.
        patience: collapsed validations in a row that stop the run (N >= 1). Default 3.
        min_value: a metric at most this counts as collapsed. Default 0.0.
        pred_keys: the prediction keys of the evaluator's output (``("pred", "pred2")`` for two
            networks); empty: the predictions are not checked. Default ``("pred",)``.
        hint: what to try, appended to the message (the bundle's keys that matter).
        class_groups: classifiers with several targets: classes per target; a sample's ``pred`` is
            its logits side by side, and a validation where every sample gets the same classes
            counts as one-class. ``None``: segmentation predictions ``(C, *spatial)``.
        never_above_fails: a run too short to reach ``patience`` whose validations never scored above
            ``min_value`` fails too (the bundle would export a model that predicts nothing). False
            where the first validations of a healthy run can score 0 and a later guard judges the
            model (NeAR: the refinement keeps the input of a structure it cannot reproduce). Default True.
        min_loss_drop: the relative fall of the mean training loss between validations that still
            counts as learning (a zero validation then does not count); ``None``: the loss is not
            looked at. Default 0.01.

    Raises:
        ValueError: ``patience`` below 1.

    Example:
        >>> stop = CollapseStop(evaluator, patience=3, hint="try --set learning_rate=0.003")  # doctest: +SKIP
        >>> stop.attach(trainer); trainer.run(); stop.raise_if_collapsed()  # doctest: +SKIP
    """

    def __init__(self, evaluator: Any, metric_name: str | None = None, patience: int = 3, min_value: float = 0.0,
                 pred_keys: Sequence[str] = ("pred",), hint: str = "", min_loss_drop: float | None = 0.01,
                 class_groups: Sequence[int] | None = None, never_above_fails: bool = True) -> None:
        if int(patience) < 1:
            raise ValueError(f"`patience` must be at least 1, got {patience!r}")
        self.evaluator = evaluator
        self.metric_name = metric_name
        self.patience = int(patience)
        self.min_value = float(min_value)
        self.pred_keys = [str(k) for k in pred_keys]
        self.hint = str(hint or "")
        self.min_loss_drop = None if min_loss_drop is None else float(min_loss_drop)
        self.class_groups = None if class_groups is None else [int(k) for k in class_groups]
        self.never_above_fails = bool(never_above_fails)
        self._losses: list[float] = []
        self._previous_loss: float | None = None
        self.in_a_row = 0
        self.validations = 0
        self.best: float | None = None
        self.message: str | None = None
        self._classes: dict[str, set[Any]] = {}

    def attach(self, trainer: Any) -> None:
        from ignite.engine import Events

        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._train_iteration)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        self.evaluator.add_event_handler(Events.EPOCH_STARTED, self._validation_started)
        self.evaluator.add_event_handler(Events.ITERATION_COMPLETED, self._validation_iteration)

    def _train_iteration(self, trainer: Any) -> None:
        from medrefine.handlers.progress import loss_of

        loss = loss_of(trainer.state.output)
        if loss is not None and math.isfinite(loss):
            self._losses.append(loss)

    def _still_learning(self) -> bool:
        """Whether the mean loss since the last validation fell by at least ``min_loss_drop`` (relative)."""
        if self.min_loss_drop is None or not self._losses:
            return False
        mean = sum(self._losses) / len(self._losses)
        previous, self._previous_loss, self._losses = self._previous_loss, mean, []
        return previous is not None and mean < previous * (1.0 - self.min_loss_drop)

    def _validation_started(self, evaluator: Any) -> None:
        self._classes = {k: set() for k in self.pred_keys}

    def _validation_iteration(self, evaluator: Any) -> None:
        output = evaluator.state.output
        for item in output if isinstance(output, list) else [output]:
            if not isinstance(item, dict):
                continue
            for key in self.pred_keys:
                if key in item:
                    self._classes[key] |= _classes_of(item[key], self.class_groups)

    def _metric(self, state: Any) -> float | None:
        name = self.metric_name or getattr(state, "key_metric_name", None)
        value = state.metrics.get(name) if name else None
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value)
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)):
            return float(value)
        return None

    def _epoch_completed(self, trainer: Any) -> None:
        state = getattr(self.evaluator, "state", None)
        if state is None or getattr(state, "epoch", None) != trainer.state.epoch:
            return  # no validation in this epoch
        self.validations += 1
        metric = self._metric(state)
        if metric is not None:
            self.best = metric if self.best is None else max(self.best, metric)
        one_class = [k for k, found in self._classes.items() if len(found) == 1]
        learning = self._still_learning()
        if ((metric is not None and metric <= self.min_value) or one_class) and not learning:
            self.in_a_row += 1
        else:
            self.in_a_row = 0
        if self.in_a_row >= self.patience:
            metric_key = self.metric_name or state.key_metric_name
            only = next(iter(self._classes[one_class[0]])) if one_class else None
            what = (f"{metric_key} = {metric:g}" if not one_class else
                    f"every sample got classes {only} per target ({one_class[0]})" if isinstance(only, tuple) else
                    f"every voxel got class {only} ({one_class[0]})")
            self.message = (f"training collapsed: {self.patience} validations in a row with {what} and the loss no "
                            f"longer falling; stopped at epoch "
                            f"{trainer.state.epoch} of {trainer.state.max_epochs} and saved no model from it."
                            + (f" Try: {self.hint}" if self.hint else ""))
            logger.info(self.message)
            trainer.terminate()

    def raise_if_collapsed(self) -> None:
        """Raise :class:`TrainingCollapsed` when the run stopped on collapse or never scored above ``min_value``.

        Raises:
            TrainingCollapsed: with the one-line message (what happened, what to try).
        """
        if self.message is None and self.never_above_fails and self.best is not None and self.best <= self.min_value:
            self.message = (f"training collapsed: none of its {self.validations} validation(s) scored above "
                            f"{self.min_value:g}; no model was saved." + (f" Try: {self.hint}" if self.hint else ""))
        if self.message is not None:
            raise TrainingCollapsed(self.message)

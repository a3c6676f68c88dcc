"""MONAI trainer and evaluator of a NeAR auto-decoder (one latent code per case + a shared decoder).

Yang et al., "Neural Annotation Refinement", MICCAI 2022 (arXiv:2206.15328). Each iteration takes a
batch of case indices, draws a jittered query grid at the training resolution (e.g. 64^3 spread over
128^3 volumes), samples the image (trilinear) and the noisy label (nearest) at those points, and
fits codes and decoder to the noisy label with the NeAR loss.

MONAI's ``SupervisedTrainer`` takes (image, label) batches from a data loader and calls the network
on the image; an auto-decoder is called on case indices and query points it draws itself and
optimises its per-case embedding. So :class:`AutoDecoderTrainer` is a :class:`monai.engines.Trainer`
with its own iteration, and :class:`AutoDecoderEvaluator` a :class:`monai.engines.Evaluator` that
decodes each training case on a grid and scores it; checkpoints, resume, history, TensorBoard and
validation scheduling are MONAI's and medrefine's handlers (``medrefine.handlers``), declared in the
bundle's ``train#handlers`` like every other bundle's.

Every random draw (case order, jitter, point subsets) is a function of ``seed``, the epoch and the
iteration, so a run resumed from its latest checkpoint follows the same path as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.engines import Evaluator, Trainer
from monai.inferers import Inferer, SimpleInferer
from torch import nn

from medrefine.engines.cases import foreground_dice, stack_cases
from medrefine.engines.distributed import average_gradients, broadcast_parameters, distributed_rank_world, rank_share
from medrefine.errors import InputError, did_you_mean
from medrefine.losses.near import NeARLoss, inverse_frequency_weights
from medrefine.networks.near import (
    grid_points,
    jittered_grid_points,
    sample_labels,
    sample_volume,
)
from medrefine.networks.query_points import boundary_voxels, sample_boundary_points

__all__ = [
    "AutoDecoderEvaluator",
    "AutoDecoderTrainer",
    "create_autodecoder_trainer",
    "default_epochs",
    "default_latent_weight",
    "default_milestones",
]

logger = logging.getLogger(__name__)



def default_epochs(num_cases: int, *, min_epochs: int = 200, case_visits: int = 1600) -> int:
    """Epochs of a default training run: NeAR's 200, more for a small cohort.

    An epoch shows the decoder each case once; with a handful of cases 200 epochs are a few
    hundred optimiser steps, too few for one network to learn many structures (the real CT of
    ``benchmarks/near_refinement.py``, one case and 41 structures: 200 epochs left 13 structures
    below their noisy Dice, 1,600 none). So a run lasts at least ``case_visits`` case visits.

    Example:
        >>> default_epochs(16), default_epochs(4), default_epochs(1)
        (200, 400, 1600)
    """
    if int(num_cases) < 1:
        raise ValueError(f"`num_cases` must be >= 1, got {num_cases}")
    return max(int(min_epochs), -(-int(case_visits) // int(num_cases)))


def default_latent_weight(max_epochs: int, *, weight: float = 1.0, reference_epochs: int = 200) -> float:
    """Weight of the latent L2 prior for a run of ``max_epochs``: ``weight``, less for long runs.

    Each visit of a case pulls its code towards zero; a small cohort trained for many epochs
    (:func:`default_epochs`) gets that pull many more times. The weight is scaled so that every
    code sees the pull of a ``reference_epochs`` run: ``weight * min(1, reference_epochs /
    max_epochs)``. Measured (``benchmarks/near_refinement.py``): 1.0 is the best of 0.03-8 on 16
    ``own`` phantoms at 200 epochs, while on the one real CT at 1,600 epochs 1.0 flattened the code
    (mean Dice 0.625 -> 0.584, 16 structures worse), 0.1-0.3 gave 0.675-0.677 and 0.125 0.666-0.667.

    Example:
        >>> default_latent_weight(200), default_latent_weight(400), default_latent_weight(1600)
        (1.0, 0.5, 0.125)
    """
    if int(max_epochs) < 1:
        raise ValueError(f"`max_epochs` must be >= 1, got {max_epochs}")
    return float(weight) * min(1.0, int(reference_epochs) / int(max_epochs))


def default_milestones(max_epochs: int) -> list[int]:
    """NeAR's learning-rate milestones for a run of ``max_epochs``: 60% and 85% of it.

    Example:
        >>> default_milestones(50)
        [30, 42]
    """
    epochs = int(max_epochs)
    return sorted({max(1, int(0.6 * epochs)), max(1, int(0.85 * epochs))})


@torch.no_grad()
def _case_dice(network: nn.Module, case: int, image: torch.Tensor | None, label: torch.Tensor,
               clean: torch.Tensor | None, resolution: int, chunk_size: int) -> tuple[float, float | None]:
    """Foreground Dice of case ``case`` decoded on a ``resolution^3`` grid vs its noisy (and clean) label."""
    from medrefine.inferers.near import decode_volume

    res = int(resolution)
    device = label.device
    pts = grid_points((res, res, res), device=device).unsqueeze(0)
    app = image if network.appearance_channels else None
    decoded, _ = decode_volume(network, case, app, (res, res, res), chunk_size=chunk_size, return_probabilities=False)
    pred = decoded.view(-1)
    k = int(network.out_channels)
    noisy = foreground_dice(pred, sample_labels(label, pts).view(-1), k)
    ref = foreground_dice(pred, sample_labels(clean, pts).view(-1), k) if clean is not None else None
    return float(noisy), (None if ref is None else float(ref))


def _summarise(noisy: Sequence[float], clean: Sequence[float]) -> dict[str, float]:
    """The key metric ``val_mean_dice`` is always the Dice against the noisy labels: a clean
    reference, when the cases have one, is reported (``val_dice_clean``) but chooses nothing."""
    metrics = {"val_dice_noisy": float(np.mean(noisy))}
    if clean:
        metrics["val_dice_clean"] = float(np.mean(clean))
    metrics["val_mean_dice"] = metrics["val_dice_noisy"]
    return metrics


class AutoDecoderTrainer(Trainer):
    """Train an :class:`~medrefine.networks.ImplicitRefiner` on noisy labels (NeAR, transductive).

    A :class:`monai.engines.Trainer`: pass MONAI's handlers (and :mod:`medrefine.handlers`) as
    ``train_handlers`` for learning-rate steps (``LrScheduleHandler``), validation
    (``ValidationHandler`` with an :class:`AutoDecoderEvaluator`), checkpoints
    (``CheckpointSaver``), resume (:class:`~medrefine.handlers.ResumeHandler`), the history CSV
    (:class:`~medrefine.handlers.HistoryCSV`), console and TensorBoard logging.

    Args:
        network: the implicit refiner; ``network.num_cases`` must equal ``len(dataset)``.
        optimizer: optimiser over ``network.parameters()`` (e.g. Adam, lr 1e-3).
        dataset: sequence of case dicts, see :func:`stack_cases`; case ``n`` trains latent ``n``.
        loss_function: called as ``loss(logits (B, N, K), target (B, N), latent (B, L))``; a
            ``terms`` method returning a dict with ``"loss"`` is used for logging when present.
            Defaults to :class:`~medrefine.losses.near.NeARLoss` with inverse-frequency weights of
            the whole data set (cap 50), ``lambda_dice=0.2``, ``lambda_latent=1e-2``.
        max_epochs: epochs to train. Defaults to 100.
        batch_size: cases per iteration. Defaults to 8.
        train_resolution: query grid edge per case (NeAR: 64 on 128^3 volumes). Defaults to 64.
        jitter: uniform shift of each query point, in grid steps. Defaults to 0.5.
        num_points: random points kept per case and iteration (None = the whole grid).
        boundary_fraction: share of those points drawn on class borders of the noisy label instead
            (:func:`~medrefine.networks.query_points.sample_boundary_points`); 0 (default) disables it.
        device: training device; defaults to the network's.
        amp: mixed precision (only on CUDA; ignored with a log message on CPU). Defaults to False.
        inferer: how the decoder is called, ``inferer(latent, network.decode_latent, points,
            appearance)``. Defaults to MONAI's ``SimpleInferer``.
        seed: seed of every random draw. Defaults to 0.
        chunk_size: points per forward pass when decoding in :meth:`validate`. Defaults to 65536.
        image_key, label_key, clean_label_key: keys of the case dicts.
        train_handlers: ignite/MONAI handlers, attached in order.

    ``engine.state.output`` is a dict of floats: ``loss`` and the loss's other terms.

    Raises:
        InputError: for a bad data set, or ``num_cases`` that does not match it.
        ValueError: for non-positive sizes.

    Example:
        >>> trainer = AutoDecoderTrainer(net, torch.optim.Adam(net.parameters(), 1e-3), cases,
        ...                              max_epochs=2, batch_size=2, train_resolution=16)  # doctest: +SKIP
        >>> trainer.run()  # doctest: +SKIP
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer: torch.optim.Optimizer,
        dataset: Sequence[Mapping[str, Any]],
        loss_function: nn.Module | None = None,
        *,
        max_epochs: int = 100,
        batch_size: int = 8,
        train_resolution: int = 64,
        jitter: float = 0.5,
        num_points: int | None = None,
        boundary_fraction: float = 0.0,
        device: torch.device | str | None = None,
        amp: bool = False,
        inferer: Inferer | None = None,
        seed: int = 0,
        chunk_size: int = 2**16,
        image_key: str = "image",
        label_key: str = "label",
        clean_label_key: str = "label_clean",
        train_handlers: Sequence | None = None,
    ) -> None:
        if not 0.0 <= float(boundary_fraction) < 1.0:
            raise ValueError(f"`boundary_fraction` must be in [0, 1), got {boundary_fraction}")
        for name, value in (("max_epochs", max_epochs), ("batch_size", batch_size),
                            ("train_resolution", train_resolution), ("chunk_size", chunk_size)):  # fmt: skip
            if int(value) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}")
        if jitter < 0:
            raise ValueError(f"`jitter` must be >= 0, got {jitter}")
        device = torch.device(device) if device is not None else next(network.parameters()).device
        images, labels, clean = stack_cases(
            dataset, image_key=image_key, label_key=label_key, clean_label_key=clean_label_key
        )
        if images.shape[0] != network.num_cases:
            raise InputError(
                f"`network.num_cases` ({network.num_cases}) must equal the number of cases in `dataset` ({images.shape[0]})"
            )
        if network.appearance_channels not in (0, images.shape[1]):
            raise InputError(
                f"`network.appearance_channels` ({network.appearance_channels}) differs from the image channels "
                f"({images.shape[1]})"
            )
        num_classes = int(network.out_channels)
        if int(labels.max()) >= num_classes:
            raise InputError(f"labels hold class {int(labels.max())} but `network.out_channels` is {num_classes}")
        use_amp = bool(amp) and device.type == "cuda"
        if amp and not use_amp:
            logger.info("amp=True ignored: mixed precision is only used on CUDA (device is %s)", device)
        num_cases = images.shape[0]
        self.validator: Evaluator | None = None
        super().__init__(
            device=device, max_epochs=int(max_epochs), data_loader=range(math.ceil(num_cases / int(batch_size))),
            amp=use_amp, decollate=False, handlers=None,
        )
        self.network = network.to(device)
        broadcast_parameters(self.network, distributed_rank_world()[1])  # every process starts from rank 0's weights
        self.optimizer = optimizer
        self.batch_size = int(batch_size)
        self.train_resolution = int(train_resolution)
        self.jitter = float(jitter)
        self.num_points = None if num_points is None else int(num_points)
        self.boundary_fraction = float(boundary_fraction)
        self.seed = int(seed)
        self.chunk_size = int(chunk_size)
        self.boundary = boundary_voxels(labels) if self.boundary_fraction > 0 else None
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.device = device
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.clean_labels = clean.to(device) if clean is not None else None
        self.num_cases = num_cases
        self.num_classes = num_classes
        if loss_function is None:
            weights = inverse_frequency_weights(self.labels, self.num_classes, class_weight_cap=50.0)
            loss_function = NeARLoss(self.num_classes, class_weights=weights)
        self.loss_function = loss_function.to(device) if isinstance(loss_function, nn.Module) else loss_function
        if train_handlers is not None:
            self._register_handlers(train_handlers)

    def _register_handlers(self, handlers: Sequence) -> None:
        """Attach ``handlers``; remember the validator of a ``ValidationHandler`` (see :attr:`best_checkpoint`)."""
        from monai.handlers import ValidationHandler

        super()._register_handlers(handlers)
        for handler in handlers:
            if isinstance(handler, ValidationHandler) and handler.validator is not None:
                self.validator = handler.validator

    @property
    def best_checkpoint(self) -> Path | None:
        """The best network file the validator's key-metric ``CheckpointSaver`` wrote, or None."""
        return getattr(self.validator, "best_checkpoint", None)

    # -- training step -----------------------------------------------------------------------

    def _permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 7919 + int(epoch))
        return torch.randperm(self.num_cases, generator=gen)

    def sample_batch(
        self, case_idx: torch.Tensor, iteration: int, *, jitter: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Query points, appearance and noisy labels for cases ``case_idx`` at one iteration.

        Returns:
            ``points (B, N, 3)``, appearance (``(B, N, C_a)`` sampled, the image volumes when the
            network has a conv encoder, or None), ``target (B, N)`` int64.
        """
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(iteration))
        res = self.train_resolution
        pts = jittered_grid_points(
            len(case_idx), (res, res, res), jitter=self.jitter if jitter is None else jitter,
            num_points=self.num_points, generator=gen, device=self.device,
        )  # fmt: skip
        if self.boundary is not None:
            n_edge = round(pts.shape[1] * self.boundary_fraction)
            edge = sample_boundary_points(*self.boundary, case_idx, n_edge, tuple(self.labels.shape[1:]), generator=gen)
            pts = torch.cat([pts[:, : pts.shape[1] - n_edge], edge.to(pts.device)], dim=1)
        idx = case_idx.to(self.device)
        target = sample_labels(self.labels[idx], pts)
        if self.network.appearance_channels == 0:
            app = None
        elif self.network.encoder_channels > 0:
            app = self.images[idx]
        else:
            app = sample_volume(self.images[idx], pts)
        return pts, app, target

    def _loss_terms(self, logits: torch.Tensor, target: torch.Tensor, latent: torch.Tensor) -> dict[str, torch.Tensor]:
        terms_fn = getattr(self.loss_function, "terms", None)
        if callable(terms_fn):
            return terms_fn(logits, target, latent)
        return {"loss": self.loss_function(logits, target, latent)}

    def _iteration(self, engine: Any, slot: Any) -> dict[str, float]:  # type: ignore[override]
        perm = self._permutation(engine.state.epoch)
        slot = int(slot)
        case_idx = perm[slot * self.batch_size : (slot + 1) * self.batch_size]
        pts, app, target = self.sample_batch(case_idx, engine.state.iteration)
        rank, world = distributed_rank_world()
        if world > 1:  # each process takes its share of the batch drawn whole (the points one process would
            # draw), so the mean of the processes' losses and gradients (averaged below) are the global batch's
            share = torch.tensor(rank_share(len(case_idx), rank, world))
            case_idx, pts, target = case_idx[share], pts[share.to(pts.device)], target[share.to(target.device)]
            app = None if app is None else app[share.to(app.device)]
        idx = case_idx.to(self.device)
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        scaler = engine.scaler if engine.amp else None
        with torch.autocast(device_type=self.device.type, enabled=scaler is not None):
            latent = self.network.latents(idx)
            logits = self.inferer(latent, self.network.decode_latent, pts, app)
        terms = self._loss_terms(logits.float(), target, latent.float())
        if scaler is not None:
            scaler.scale(terms["loss"]).backward()
            average_gradients(self.network, world)
            scaler.step(self.optimizer)
            scaler.update()
        else:
            terms["loss"].backward()
            average_gradients(self.network, world)
            self.optimizer.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def validate(self, resolution: int | None = None) -> dict[str, float]:
        """Decode every training case on a ``resolution^3`` grid and score it (foreground Dice).

        Args:
            resolution: grid edge; defaults to ``train_resolution``.

        Returns:
            ``{"val_dice_noisy": ..., "val_mean_dice": ...}`` plus ``"val_dice_clean"`` when clean
            labels exist; ``val_mean_dice``, the key metric, is the noisy one (a reference only reports).
        """
        res = int(resolution or self.train_resolution)
        noisy, clean = [], []
        for n in range(self.num_cases):
            ref = self.clean_labels[n : n + 1] if self.clean_labels is not None else None
            score, clean_score = _case_dice(self.network, n, self.images[n : n + 1], self.labels[n : n + 1], ref,
                                            res, self.chunk_size)  # fmt: skip
            noisy.append(score)
            if clean_score is not None:
                clean.append(clean_score)
        return _summarise(noisy, clean)

    def run(self, max_epochs: int | None = None) -> Any:  # type: ignore[override]
        """Train (the ``ResumeHandler``, if attached, continues from the latest checkpoint); return the state.

        ``max_epochs`` overrides the constructor's value, e.g. to extend a finished run.
        """
        if max_epochs is not None:
            if int(max_epochs) < self.state.epoch:
                raise ValueError(f"`max_epochs` ({max_epochs}) must be >= the epochs already run ({self.state.epoch})")
            self.state.max_epochs = int(max_epochs)
        super().run()
        return self.state


class AutoDecoderEvaluator(Evaluator):
    """Score an auto-decoder on its training cases: one iteration per case, foreground Dice.

    MONAI's ``SupervisedEvaluator`` calls the network on images from a loader; an auto-decoder is
    decoded from a case's latent on a query grid. This evaluator decodes case ``n`` with latent
    ``n`` on a ``resolution^3`` grid and compares it with the case's noisy label (and clean label
    when every case has one). After each run ``state.metrics`` holds ``val_dice_noisy``,
    ``val_dice_clean`` (if any, for reporting) and the key metric ``val_mean_dice``, which is always
    the noisy Dice: a reference label never chooses anything. MONAI's ``ValidationHandler`` runs it
    during training; a ``CheckpointSaver(save_key_metric=True)`` among its handlers keeps the
    network that fits the noisy labels best (the bundle exports the last weights instead).

    Args:
        device: decoding device.
        network: the implicit refiner being trained.
        dataset: the training cases (as given to the trainer), see :func:`stack_cases`.
        resolution: grid edge. Defaults to 64.
        chunk_size: points per forward pass. Defaults to 65536.
        val_handlers: handlers of this evaluator (``StatsHandler``, ``CheckpointSaver``, ...).
        image_key, label_key, clean_label_key: keys of the case dicts.

    Example:
        >>> evaluator = AutoDecoderEvaluator("cpu", net, cases, resolution=32)  # doctest: +SKIP
        >>> evaluator.run(); evaluator.state.metrics["val_mean_dice"]  # doctest: +SKIP
    """

    def __init__(
        self,
        device: torch.device | str,
        network: nn.Module,
        dataset: Sequence[Mapping[str, Any]],
        resolution: int = 64,
        chunk_size: int = 2**16,
        val_handlers: Sequence | None = None,
        image_key: str = "image",
        label_key: str = "label",
        clean_label_key: str = "label_clean",
    ) -> None:
        if int(resolution) < 1 or int(chunk_size) < 1:
            raise ValueError(f"`resolution` and `chunk_size` must be >= 1, got {resolution} and {chunk_size}")
        images, labels, clean = stack_cases(dataset, image_key=image_key, label_key=label_key,
                                            clean_label_key=clean_label_key)  # fmt: skip
        super().__init__(device=device, val_data_loader=range(images.shape[0]), decollate=False, val_handlers=None)
        self.network = network
        self.resolution = int(resolution)
        self.chunk_size = int(chunk_size)
        self.images, self.labels, self.clean_labels = images, labels, clean  # on the CPU; one case at a time moves
        self.state.key_metric_name = "val_mean_dice"
        self.handlers: tuple = ()
        self._scores: tuple[list[float], list[float]] = ([], [])
        from ignite.engine import Events

        self.add_event_handler(Events.EPOCH_STARTED, self._reset)
        self.add_event_handler(Events.EPOCH_COMPLETED, self._summarise)
        if val_handlers is not None:
            self.handlers = tuple(val_handlers)
            self._register_handlers(val_handlers)

    def _reset(self, engine: Any) -> None:
        self._scores = ([], [])

    def _iteration(self, engine: Any, case: Any) -> dict[str, float]:  # type: ignore[override]
        n = int(case)
        device = engine.state.device
        clean = self.clean_labels[n : n + 1].to(device) if self.clean_labels is not None else None
        noisy, clean_score = _case_dice(self.network, n, self.images[n : n + 1].to(device),
                                        self.labels[n : n + 1].to(device), clean, self.resolution, self.chunk_size)
        self._scores[0].append(noisy)
        if clean_score is not None:
            self._scores[1].append(clean_score)
        return {"dice_noisy": noisy} if clean_score is None else {"dice_noisy": noisy, "dice_clean": clean_score}

    def _summarise(self, engine: Any) -> None:
        metrics = _summarise(*self._scores)
        engine.state.metrics.update(metrics)
        current = metrics["val_mean_dice"]
        if engine.state.best_metric_epoch == -1 or current > engine.state.best_metric:
            engine.state.best_metric, engine.state.best_metric_epoch = current, engine.state.epoch

    @property
    def best_checkpoint(self) -> Path | None:
        """The file of the best network saved by a key-metric ``CheckpointSaver`` among the handlers, or None."""
        from monai.handlers import CheckpointSaver

        for handler in self.handlers:
            # MONAI keeps the key-metric Checkpoint private; its disk saver knows the fixed file name
            best = getattr(handler, "_key_metric_checkpoint", None) if isinstance(handler, CheckpointSaver) else None
            if best is not None and best.last_checkpoint is not None:
                name = getattr(best.save_handler, "filename", None) or Path(str(best.last_checkpoint)).name
                return Path(handler.save_dir) / name
        return None


def create_autodecoder_trainer(
    network: nn.Module,
    dataset: Sequence[Mapping[str, Any]],
    *,
    lr: float = 1e-3,
    milestones: Sequence[int] | None = None,
    gamma: float = 0.1,
    optimizer: torch.optim.Optimizer | None = None,
    lr_scheduler: Any | None = None,
    **kwargs: Any,
) -> AutoDecoderTrainer:
    """Build an :class:`AutoDecoderTrainer` with Adam and a multi-step schedule (NeAR's recipe).

    Args:
        network: the implicit refiner.
        dataset: case dicts, see :func:`stack_cases`.
        lr: Adam learning rate (ignored when ``optimizer`` is given). Defaults to 1e-3.
        milestones: epochs where the learning rate is multiplied by ``gamma``; defaults to 60% and
            85% of ``max_epochs``.
        gamma: decay factor. Defaults to 0.1.
        optimizer: a ready optimiser instead of Adam.
        lr_scheduler: a ready scheduler instead of ``MultiStepLR``; stepped after every epoch by a
            MONAI ``LrScheduleHandler`` put before any ``train_handlers``.
        **kwargs: passed to :class:`AutoDecoderTrainer` (``max_epochs``, ``batch_size``,
            ``train_handlers``, ...).

    Returns:
        The trainer; call ``.run()``.
    """
    if optimizer is None:
        try:  # the fused kernel is markedly faster on CPU too (torch >= 2.4)
            optimizer = torch.optim.Adam(network.parameters(), lr=float(lr), fused=True)
        except (RuntimeError, TypeError, ValueError):
            optimizer = torch.optim.Adam(network.parameters(), lr=float(lr))
    if lr_scheduler is None:
        if milestones is None:
            milestones = default_milestones(int(kwargs.get("max_epochs", 100)))
        lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)
    from monai.handlers import LrScheduleHandler

    handlers = [LrScheduleHandler(lr_scheduler, print_lr=False), *(kwargs.pop("train_handlers", None) or [])]
    return AutoDecoderTrainer(network, optimizer, dataset, train_handlers=handlers, **kwargs)

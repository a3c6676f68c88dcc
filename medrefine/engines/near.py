"""Ignite engine that trains a NeAR auto-decoder (one latent code per case + a shared decoder).

Yang et al., "Neural Annotation Refinement", MICCAI 2022 (arXiv:2206.15328). Each iteration takes a
batch of case indices, draws a jittered query grid at the training resolution (e.g. 64^3 spread over
128^3 volumes), samples the image (trilinear) and the noisy label (nearest) at those points, and
fits codes and decoder to the noisy label with the NeAR loss.

MONAI's ``SupervisedTrainer`` expects a data loader of (image, label) tensors and a network called
on the image; an auto-decoder is called on case indices and query points and optimises its
per-case embedding, so this engine subclasses :class:`ignite.engine.Engine` directly (as MONAI's
workflows do) and keeps MONAI's argument names (``network``, ``optimizer``, ``loss_function``,
``max_epochs``, ``val_interval``, ``amp``, ``device``).

Every random draw (case order, jitter, point subsets) is a function of ``seed``, the epoch and the
iteration, so a run resumed from its latest checkpoint follows the same path as an uninterrupted one.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from torch import nn

from medrefine.engines.cases import foreground_dice, stack_cases
from medrefine.engines.distributed import average_gradients, distributed_rank_world
from medrefine.errors import InputError, did_you_mean
from medrefine.losses.near import NeARLoss, inverse_frequency_weights
from medrefine.networks.near import (
    grid_points,
    jittered_grid_points,
    sample_labels,
    sample_volume,
)

__all__ = ["AutoDecoderTrainer", "create_autodecoder_trainer"]

logger = logging.getLogger(__name__)

_HISTORY_FIELDS = (
    "epoch", "iteration", "loss", "ce", "dice", "latent", "lr", "seconds",
    "val_dice_noisy", "val_dice_clean", "val_mean_dice",
)  # fmt: skip
_KEY_METRICS = ("auto", "noisy", "clean")


class AutoDecoderTrainer(Engine):
    """Train an :class:`~medrefine.networks.ImplicitRefiner` on noisy labels (NeAR, transductive).

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
        lr_scheduler: stepped once per epoch (e.g. ``MultiStepLR``), saved in checkpoints.
        device: training device; defaults to the network's.
        amp: mixed precision (only on CUDA; ignored with a log message on CPU). Defaults to False.
        checkpoint_dir: where ``latest_checkpoint_<epoch>.pt`` (network, optimizer, scheduler,
            engine) and ``best_network_<epoch>_val_mean_dice=<score>.pt`` go; None disables them.
        log_dir: where ``history.csv`` and TensorBoard events go; None disables them.
        val_interval: validate every this many epochs (and after the last). An epoch is only
            ``ceil(num_cases / batch_size)`` iterations while validation decodes every case, so
            validate sparingly. Defaults to 10.
        val_resolution: grid edge for validation decoding; defaults to ``train_resolution``.
        key_metric: which Dice selects the best model: ``"auto"`` (clean labels when every case has
            one, else the noisy ones), ``"noisy"`` or ``"clean"``. Defaults to ``"auto"``.
        resume: continue from the latest checkpoint in ``checkpoint_dir`` when there is one.
        progress: show a tqdm progress bar. Defaults to True.
        tensorboard: write TensorBoard events to ``log_dir``. Defaults to True.
        seed: seed of every random draw. Defaults to 0.
        chunk_size: points per forward pass when decoding for validation. Defaults to 65536.
        image_key, label_key, clean_label_key: keys of the case dicts.

    Raises:
        InputError: for a bad data set, or ``num_cases`` that does not match it.
        ValueError: for non-positive sizes or an unknown ``key_metric``.

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
        lr_scheduler: Any | None = None,
        device: torch.device | str | None = None,
        amp: bool = False,
        checkpoint_dir: str | Path | None = None,
        log_dir: str | Path | None = None,
        val_interval: int = 10,
        val_resolution: int | None = None,
        key_metric: str = "auto",
        resume: bool = True,
        progress: bool = True,
        tensorboard: bool = True,
        seed: int = 0,
        chunk_size: int = 2**16,
        image_key: str = "image",
        label_key: str = "label",
        clean_label_key: str = "label_clean",
    ) -> None:
        super().__init__(self._train_step)
        for name, value in (("max_epochs", max_epochs), ("batch_size", batch_size),
                            ("train_resolution", train_resolution), ("val_interval", val_interval),
                            ("chunk_size", chunk_size)):  # fmt: skip
            if int(value) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}")
        if jitter < 0:
            raise ValueError(f"`jitter` must be >= 0, got {jitter}")
        if key_metric not in _KEY_METRICS:
            raise ValueError(
                f"`key_metric` must be one of {list(_KEY_METRICS)}, got {key_metric!r}.{did_you_mean(key_metric, _KEY_METRICS)}"
            )
        self.network = network
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.max_epochs = int(max_epochs)
        self.batch_size = int(batch_size)
        self.train_resolution = int(train_resolution)
        self.val_resolution = int(val_resolution or train_resolution)
        self.jitter = float(jitter)
        self.num_points = None if num_points is None else int(num_points)
        self.val_interval = int(val_interval)
        self.seed = int(seed)
        self.chunk_size = int(chunk_size)
        self.resume = bool(resume)
        self.device = torch.device(device) if device is not None else next(network.parameters()).device
        self.network.to(self.device)

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
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.clean_labels = clean.to(self.device) if clean is not None else None
        self.num_cases = images.shape[0]
        self.num_classes = int(network.out_channels)
        if int(labels.max()) >= self.num_classes:
            raise InputError(
                f"labels hold class {int(labels.max())} but `network.out_channels` is {self.num_classes}"
            )
        if key_metric == "clean" and clean is None:
            raise InputError(f"`key_metric='clean'` needs a {clean_label_key!r} label for every case")
        self.key_metric = "clean" if (key_metric == "auto" and clean is not None) else (
            "noisy" if key_metric == "auto" else key_metric
        )
        if loss_function is None:
            weights = inverse_frequency_weights(self.labels, self.num_classes, cap=50.0)
            loss_function = NeARLoss(self.num_classes, class_weights=weights)
        self.loss_function = loss_function.to(self.device) if isinstance(loss_function, nn.Module) else loss_function

        self.amp = bool(amp) and self.device.type == "cuda"
        if amp and not self.amp:
            logger.info("amp=True ignored: mixed precision is only used on CUDA (device is %s)", self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None

        self.epoch_length = math.ceil(self.num_cases / self.batch_size)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._writer = None
        self._use_tensorboard = bool(tensorboard)
        self._epoch_sums: dict[str, float] = {}
        self._epoch_start = time.perf_counter()
        self._latest = self._best = None
        self.last_validation: dict[str, float] = {}

        self.add_event_handler(Events.EPOCH_STARTED, self._reset_epoch_sums)
        self.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        if self.lr_scheduler is not None:
            self.add_event_handler(Events.EPOCH_COMPLETED, lambda _: self.lr_scheduler.step())
        self.add_event_handler(Events.EPOCH_COMPLETED, self._maybe_validate)
        self.add_event_handler(Events.EPOCH_COMPLETED, self._write_history)
        if self.checkpoint_dir is not None:
            self._setup_checkpoints()
        if progress:
            from ignite.handlers import ProgressBar

            ProgressBar(persist=False).attach(self, output_transform=lambda out: {"loss": out["loss"]})

    # -- checkpoints -------------------------------------------------------------------------

    def _to_save(self) -> dict[str, Any]:
        objs: dict[str, Any] = {"network": self.network, "optimizer": self.optimizer, "trainer": self}
        if self.lr_scheduler is not None:
            objs["lr_scheduler"] = self.lr_scheduler
        if self.scaler is not None:
            objs["scaler"] = self.scaler
        return objs

    def _setup_checkpoints(self) -> None:
        from ignite.handlers import Checkpoint, DiskSaver

        saver = DiskSaver(str(self.checkpoint_dir), require_empty=False, create_dir=True)
        self._best = Checkpoint(
            {"network": self.network},
            saver,
            filename_prefix="best",
            score_function=lambda engine: engine.state.metrics["val_mean_dice"],
            score_name="val_mean_dice",
            n_saved=1,
            global_step_transform=lambda engine, _: engine.state.epoch,
        )
        to_save = dict(self._to_save(), best_checkpointer=self._best)
        self._latest = Checkpoint(
            to_save,
            saver,
            filename_prefix="latest",
            n_saved=1,
            global_step_transform=lambda engine, _: engine.state.epoch,
            include_self=True,
        )
        self.add_event_handler(Events.EPOCH_COMPLETED, self._latest)

    def latest_checkpoint(self) -> Path | None:
        """Path of the newest ``latest_checkpoint_<epoch>.pt`` in ``checkpoint_dir``, or None."""
        if self.checkpoint_dir is None or not self.checkpoint_dir.is_dir():
            return None
        found = []
        for path in self.checkpoint_dir.glob("latest_checkpoint_*.pt"):
            m = re.fullmatch(r"latest_checkpoint_(\d+)\.pt", path.name)
            if m:
                found.append((int(m.group(1)), path))
        return max(found)[1] if found else None

    @property
    def best_checkpoint(self) -> Path | None:
        """Path of the best network checkpoint written so far, or None."""
        if self._best is None or self._best.last_checkpoint is None:
            return None
        # ignite reports the file joined with the saver's folder (absolute or relative): keep the name
        return Path(self.checkpoint_dir) / Path(str(self._best.last_checkpoint)).name

    def load_latest(self) -> bool:
        """Load network, optimizer, scheduler and engine state from the latest checkpoint, if any."""
        from ignite.handlers import Checkpoint

        path = self.latest_checkpoint()
        if path is None:
            return False
        try:
            ckpt = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as exc:  # truncated or foreign file
            raise InputError(f"cannot read checkpoint {path}: {exc}") from exc
        to_load = dict(self._to_save(), best_checkpointer=self._best, checkpointer=self._latest)
        try:
            Checkpoint.load_objects(to_load=to_load, checkpoint=ckpt)
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(
                f"checkpoint {path} does not fit this training set-up ({first}); "
                "use another `checkpoint_dir` or `resume=False`"
            ) from exc
        logger.info("resumed from %s at epoch %d (iteration %d)", path, self.state.epoch, self.state.iteration)
        self._truncate_history(self.state.epoch)
        return True

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

    def _train_step(self, engine: Engine, slot: int) -> dict[str, float]:
        perm = self._permutation(engine.state.epoch)
        case_idx = perm[slot * self.batch_size : (slot + 1) * self.batch_size]
        rank, world = distributed_rank_world()
        if world > 1:  # each process takes its share of the batch; gradients are averaged below
            case_idx = case_idx[rank::world] if len(case_idx) >= world else case_idx[rank % len(case_idx) :][:1]
        pts, app, target = self.sample_batch(case_idx, engine.state.iteration)
        idx = case_idx.to(self.device)
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            latent = self.network.latents(idx)
            logits = self.network.decode_latent(latent, pts, app)
        terms = self._loss_terms(logits.float(), target, latent.float())
        if self.scaler is not None:
            self.scaler.scale(terms["loss"]).backward()
            average_gradients(self.network, world)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            terms["loss"].backward()
            average_gradients(self.network, world)
            self.optimizer.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    # -- epoch bookkeeping ---------------------------------------------------------------------

    def _reset_epoch_sums(self, _: Engine) -> None:
        self._epoch_sums = {}
        self._epoch_start = time.perf_counter()

    def _accumulate(self, engine: Engine) -> None:
        out = engine.state.output or {}
        for key, value in out.items():
            self._epoch_sums[key] = self._epoch_sums.get(key, 0.0) + float(value)
        self._epoch_sums["_n"] = self._epoch_sums.get("_n", 0.0) + 1
        writer = self._get_writer()
        if writer is not None:
            writer.add_scalar("train/loss_iteration", float(out.get("loss", float("nan"))), engine.state.iteration)

    @torch.no_grad()
    def validate(self, resolution: int | None = None) -> dict[str, float]:
        """Decode every training case on a ``resolution^3`` grid and score it (foreground Dice).

        Returns:
            ``{"val_dice_noisy": ..., "val_mean_dice": ...}`` plus ``"val_dice_clean"`` when clean
            labels exist; ``val_mean_dice`` is the key metric (see ``key_metric``).
        """
        from medrefine.inferers.near import decode_volume

        res = int(resolution or self.val_resolution)
        pts = grid_points((res, res, res), device=self.device).unsqueeze(0)
        noisy_scores, clean_scores = [], []
        for n in range(self.num_cases):
            app = self.images[n : n + 1] if self.network.appearance_channels else None
            label, _ = decode_volume(
                self.network, n, app, (res, res, res), chunk_size=self.chunk_size, return_probabilities=False
            )
            pred = label.view(-1)
            noisy_scores.append(foreground_dice(pred, sample_labels(self.labels[n : n + 1], pts).view(-1), self.num_classes))
            if self.clean_labels is not None:
                ref = sample_labels(self.clean_labels[n : n + 1], pts).view(-1)
                clean_scores.append(foreground_dice(pred, ref, self.num_classes))
        metrics = {"val_dice_noisy": float(np.mean(noisy_scores))}
        if clean_scores:
            metrics["val_dice_clean"] = float(np.mean(clean_scores))
        metrics["val_mean_dice"] = metrics["val_dice_clean" if self.key_metric == "clean" else "val_dice_noisy"]
        return metrics

    def _maybe_validate(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        if epoch % self.val_interval and epoch != engine.state.max_epochs:
            self.last_validation = {}
            return
        metrics = self.validate()
        engine.state.metrics.update(metrics)
        self.last_validation = metrics
        logger.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        if self._best is not None:
            self._best(engine)

    def _get_writer(self):
        if self._writer is None and self.log_dir is not None and self._use_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - depends on the environment
                logger.warning("TensorBoard logging disabled: `pip install tensorboard` to enable it")
                self._use_tensorboard = False
                return None
            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        return self._writer

    def _write_history(self, engine: Engine) -> None:
        if distributed_rank_world()[0] != 0:  # one history per run, written by the first process
            return
        n = max(self._epoch_sums.get("_n", 0.0), 1.0)
        row: dict[str, Any] = {"epoch": engine.state.epoch, "iteration": engine.state.iteration}
        for key in ("loss", "ce", "dice", "latent"):
            if key in self._epoch_sums:
                row[key] = self._epoch_sums[key] / n
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["seconds"] = round(time.perf_counter() - self._epoch_start, 3)
        row.update(self.last_validation)
        writer = self._get_writer()
        if writer is not None:
            for key, value in row.items():
                if key not in ("epoch", "iteration"):
                    writer.add_scalar(f"epoch/{key}", float(value), engine.state.epoch)
            writer.flush()
        if self.log_dir is None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / "history.csv"
        new = not path.is_file()
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=_HISTORY_FIELDS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def _truncate_history(self, epoch: int) -> None:
        """Drop history rows written after the checkpoint we resume from."""
        if self.log_dir is None or not (self.log_dir / "history.csv").is_file():
            return
        path = self.log_dir / "history.csv"
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= epoch]
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=_HISTORY_FIELDS)
            w.writeheader()
            w.writerows(rows)

    # -- run -----------------------------------------------------------------------------------

    def run(self, data: Any = None, max_epochs: int | None = None, **kwargs: Any):  # type: ignore[override]
        """Train (resuming from the latest checkpoint when ``resume``); returns the engine state.

        ``data`` is ignored (the engine draws its own batches); ``max_epochs`` overrides the
        constructor's value, e.g. to extend a finished run.
        """
        if data is not None:
            logger.debug("AutoDecoderTrainer.run ignores `data`: batches are drawn from the stored cases")
        max_epochs = int(max_epochs or self.max_epochs)
        self.max_epochs = max_epochs
        if self.resume and self.state.epoch == 0:
            self.load_latest()
        if self.state.epoch >= max_epochs:
            logger.info("training already complete: epoch %d of %d", self.state.epoch, max_epochs)
            return self.state
        try:
            return super().run(range(self.epoch_length), max_epochs=max_epochs)
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


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
        lr_scheduler: a ready scheduler instead of ``MultiStepLR``.
        **kwargs: passed to :class:`AutoDecoderTrainer` (``max_epochs``, ``batch_size``, ...).

    Returns:
        The trainer; call ``.run()``.
    """
    if optimizer is None:
        try:  # the fused kernel is markedly faster on CPU too (torch >= 2.4)
            optimizer = torch.optim.Adam(network.parameters(), lr=float(lr), fused=True)
        except (RuntimeError, TypeError, ValueError):
            optimizer = torch.optim.Adam(network.parameters(), lr=float(lr))
    if lr_scheduler is None:
        max_epochs = int(kwargs.get("max_epochs", 100))
        if milestones is None:
            milestones = sorted({max(1, int(0.6 * max_epochs)), max(1, int(0.85 * max_epochs))})
        lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)
    return AutoDecoderTrainer(network, optimizer, dataset, lr_scheduler=lr_scheduler, **kwargs)

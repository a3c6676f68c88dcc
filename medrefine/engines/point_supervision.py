"""Stage 2 of PA-Seg: Self and Cross Monitoring (SCM), two networks that teach themselves and each other.

Zhai et al., PA-Seg (IEEE TMI 2023), after stage 1 has trained one network per architecture on
the expanded seeds: two networks of *different* architectures continue training on the unlabeled
images. Each has a frozen copy (its "monitor"), refreshed from the live network every
``refresh_epochs`` epochs (PA-Seg: 20 of 100). For network ``a`` and the other network ``b``::

    L_a = (1 - w) * L_self(p_a, argmax(frozen_a(x)))  +  w * T^2 * KL( softmax(frozen_b(x) / T) || softmax(p_a / T) )

``L_self`` is Dice + cross-entropy on the frozen copy's hard labels (self-training), the second
term cross knowledge distillation from the other network's frozen soft output with temperature
``T`` (default 4) and weight ``w`` (default 0.5); the ``T^2`` factor keeps the gradient scale
independent of ``T`` (Hinton et al., 2015). With ``keep_seeds`` the hard labels keep the expanded
seeds where those are labeled (the annotator's clicks are not overruled by a model).

Why not MONAI: its engines train one network with one optimiser; this loop trains two, with two
frozen teachers, in one ignite engine (a :class:`monai.engines.Trainer`, so MONAI's handlers,
checkpointing and AMP handling apply unchanged).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from monai.engines import Trainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn
from monai.utils import CommonKeys as Keys
from torch import nn

from medrefine.errors import InputError
from medrefine.losses.partial import UNLABELED

__all__ = ["CrossDistillationTrainer", "distillation_loss", "frozen_copy"]

logger = logging.getLogger(__name__)


def _unwrapped(network: nn.Module) -> nn.Module:
    """The module a ``DistributedDataParallel`` / ``DataParallel`` wrapper holds, else ``network``."""
    return network.module if isinstance(network, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else network


def frozen_copy(network: nn.Module) -> nn.Module:
    """A deep copy of ``network`` (of the module inside a DDP wrapper) in eval mode with gradients off (a teacher).

    A teacher only runs forward passes without gradients, so it is never wrapped for data parallelism.
    """
    frozen = copy.deepcopy(_unwrapped(network))
    frozen.eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, summed over classes, averaged over voxels.

    Example:
        >>> x = torch.randn(1, 2, 4, 4, 4)
        >>> float(distillation_loss(x, x))
        0.0
    """
    if student_logits.shape != teacher_logits.shape:
        raise InputError(f"student and teacher logits must have one shape, got {tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    t = float(temperature)
    if t <= 0:
        raise InputError(f"`temperature` must be > 0, got {temperature!r}")
    log_student = F.log_softmax(student_logits.float() / t, dim=1)
    teacher = F.softmax(teacher_logits.float().detach() / t, dim=1)
    kl = F.kl_div(log_student, teacher, reduction="none").sum(dim=1)
    return kl.mean() * t * t


def _axes(axes: Sequence[int], name: str) -> tuple[int, ...]:
    out = tuple(int(a) for a in axes)
    if any(a < 0 for a in out) or len(set(out)) != len(out):
        raise InputError(f"`{name}` must list distinct spatial axes >= 0, got {list(axes)!r}")
    return out


def _check_axes(axes: tuple[int, ...], image: torch.Tensor, name: str) -> None:
    spatial = image.ndim - 2
    if any(a >= spatial for a in axes):
        raise InputError(f"`{name}` {list(axes)} name axes beyond the image's {spatial} spatial axes")


class CrossDistillationTrainer(Trainer):
    """Ignite trainer of PA-Seg's stage 2 (see the module docstring).

    Args:
        device: device to train on.
        max_epochs: epochs to run.
        train_data_loader: batches holding ``image_key`` and, with ``keep_seeds``, ``seeds_key``.
        networks: the two networks (primary first), e.g. initialised from their stage-1 weights.
        optimizers: one optimiser per network.
        teachers: their frozen copies (default: :func:`frozen_copy` of each network). Pass them
            explicitly to have them saved in checkpoints.
        self_loss: loss of a network's logits against hard labels ``(B, 1, *spatial)``; default
            MONAI's ``DiceCELoss(to_onehot_y=True, softmax=True)``.
        temperature: distillation temperature T. Default 4.0.
        weight_kd: weight ``w`` of the distillation term. Default 0.5.
        refresh_epochs: copy the live networks into the teachers every this many epochs (at the
            end of the epoch). Default 20.
        keep_seeds: hard labels keep the labeled seed voxels. Default True.
        teacher_flips: spatial axes (0-based, of the image without batch and channel) along which
            the teachers also see the mirrored image; their logits are averaged over the plain and
            every mirrored pass (test-time augmentation of the monitors, not in PA-Seg). Default
            ``()`` (one pass, PA-Seg).
        student_flips: spatial axes along which the students' input is mirrored, each with
            probability 1/2 per iteration, while the teachers see the plain image and their labels
            and soft outputs are mirrored to match (transformation-consistent self-training, not in
            PA-Seg). Default ``()``.
        student_noise: standard deviation (image units) of Gaussian noise added to the students'
            input only (noisy-student self-training, not in PA-Seg). Default 0.
        label_refiner: ``refiner(teacher_logits, image) -> logits`` applied to each teacher's output
            before it becomes hard labels, e.g. :class:`~medrefine.transforms.CRFLabelRefiner` (the
            borders follow the image's edges; not in PA-Seg). Results are cached per teacher and
            image until the next refresh (inputs are identified by their bytes, so random crops
            simply miss the cache). The distillation term uses the refined output too. Default ``None``.
        regulariser: an unsupervised loss ``regulariser(logits, image)`` added to both networks'
            losses, e.g. :class:`~medrefine.losses.GatedCRFLoss` to keep refining the borders against
            the image's edges (not in PA-Seg's stage 2). Default ``None``.
        weight_regulariser: its weight. Default 1.0.
        image_key, seeds_key: batch keys. Default ``"image"``, ``"seeds"``.
        ignore_index: value of unlabeled seed voxels. Default 255.
        train_handlers, amp, epoch_length, non_blocking, decollate, postprocessing: as MONAI's
            :class:`~monai.engines.SupervisedTrainer`.

    ``engine.state.output`` holds ``image``, ``label`` (the seeds), ``pred`` (the primary
    network's logits), ``loss`` (the sum of both networks' losses) and ``loss1`` / ``loss2``.

    Example:
        >>> trainer = CrossDistillationTrainer("cpu", 100, loader, networks=(unet25d, att_unet),
        ...                                    optimizers=(opt1, opt2))
        >>> trainer.run()
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Iterable,
        networks: Sequence[nn.Module],
        optimizers: Sequence[torch.optim.Optimizer],
        teachers: Sequence[nn.Module] | None = None,
        self_loss: Callable | None = None,
        temperature: float = 4.0,
        weight_kd: float = 0.5,
        refresh_epochs: int = 20,
        keep_seeds: bool = True,
        teacher_flips: Sequence[int] = (),
        student_flips: Sequence[int] = (),
        student_noise: float = 0.0,
        label_refiner: Callable | None = None,
        regulariser: Callable | None = None,
        weight_regulariser: float = 1.0,
        image_key: str = "image",
        seeds_key: str = "seeds",
        ignore_index: int = UNLABELED,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        postprocessing: Callable | None = None,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        decollate: bool = True,
    ) -> None:
        if len(networks) != 2 or len(optimizers) != 2:
            raise InputError(f"cross distillation trains exactly two networks with two optimisers, got {len(networks)} and {len(optimizers)}")
        if not 0.0 <= float(weight_kd) <= 1.0:
            raise InputError(f"`weight_kd` must be in [0, 1], got {weight_kd!r}")
        if float(temperature) <= 0:
            raise InputError(f"`temperature` must be > 0, got {temperature!r}")
        if isinstance(refresh_epochs, bool) or int(refresh_epochs) < 1:
            raise InputError(f"`refresh_epochs` must be an integer >= 1, got {refresh_epochs!r}")
        super().__init__(
            device=device, max_epochs=max_epochs, data_loader=train_data_loader, epoch_length=epoch_length,
            non_blocking=non_blocking, postprocessing=postprocessing, key_metric=None, additional_metrics=None,
            metric_cmp_fn=default_metric_cmp_fn, handlers=train_handlers, amp=amp, decollate=decollate,
            event_names=[IterationEvents],
        )
        self.networks = list(networks)
        self.network = self.networks[0]  # the primary network, for handlers expecting ``engine.network``
        self.optimizers = list(optimizers)
        self.optimizer = self.optimizers[0]
        self.teachers = list(teachers) if teachers is not None else [frozen_copy(n) for n in self.networks]
        if len(self.teachers) != 2:
            raise InputError(f"`teachers` must hold two networks, got {len(self.teachers)}")
        if self_loss is None:
            from monai.losses import DiceCELoss

            self_loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.self_loss = self_loss
        self.temperature = float(temperature)
        self.weight_kd = float(weight_kd)
        self.refresh_epochs = int(refresh_epochs)
        self.keep_seeds = bool(keep_seeds)
        self.teacher_flips = _axes(teacher_flips, "teacher_flips")
        self.student_flips = _axes(student_flips, "student_flips")
        if not float(student_noise) >= 0:
            raise InputError(f"`student_noise` must be >= 0, got {student_noise!r}")
        self.student_noise = float(student_noise)
        self.label_refiner = label_refiner
        self._refined: dict[tuple[int, str], torch.Tensor] = {}
        if float(weight_regulariser) < 0:
            raise InputError(f"`weight_regulariser` must be >= 0, got {weight_regulariser!r}")
        self.regulariser = regulariser
        self.weight_regulariser = float(weight_regulariser)
        self.image_key = image_key
        self.seeds_key = seeds_key
        self.ignore_index = int(ignore_index)
        from ignite.engine import Events

        self.add_event_handler(Events.EPOCH_COMPLETED, self._refresh_teachers)

    def refresh_teachers(self) -> None:
        """Copy both live networks into their frozen teachers."""
        for teacher, network in zip(self.teachers, self.networks):
            teacher.load_state_dict(_unwrapped(network).state_dict())
            teacher.eval()
        self._refined.clear()

    def refined_logits(self, index: int, logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Teacher ``index``'s logits after ``label_refiner`` (cached per image until the next refresh)."""
        if self.label_refiner is None:
            return logits
        data = (image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)).detach().cpu().contiguous()
        key = (index, hashlib.sha1(data.numpy().tobytes()).hexdigest() + str(tuple(data.shape)))
        if key not in self._refined:
            self._refined[key] = self.label_refiner(logits, image).detach()
        return self._refined[key]

    def _refresh_teachers(self, engine) -> None:
        if engine.state.epoch % self.refresh_epochs == 0 and engine.state.epoch < engine.state.max_epochs:
            self.refresh_teachers()
            logger.info("epoch %d: teachers refreshed from the live networks", engine.state.epoch)

    def teacher_logits(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Both teachers' logits for ``image``, averaged over the mirrored passes of ``teacher_flips``."""
        _check_axes(self.teacher_flips, image, "teacher_flips")
        outputs = []
        for teacher in self.teachers:
            total = teacher(image).float()
            for axis in self.teacher_flips:
                dims = (axis + 2,)
                total = total + torch.flip(teacher(torch.flip(image, dims)).float(), dims)
            outputs.append(total / (1 + len(self.teacher_flips)))
        return outputs

    def _student_view(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """The students' input (mirrored along a random subset of ``student_flips``, noised) and the flipped dims."""
        _check_axes(self.student_flips, image, "student_flips")
        draws = torch.rand(len(self.student_flips)).tolist() if self.student_flips else []
        dims = tuple(axis + 2 for axis, u in zip(self.student_flips, draws) if u < 0.5)
        view = torch.flip(image, dims) if dims else image
        if self.student_noise > 0:
            view = view + torch.randn_like(view) * self.student_noise
        return view, dims

    def _hard_labels(self, teacher_logits: torch.Tensor, seeds: torch.Tensor | None) -> torch.Tensor:
        hard = teacher_logits.argmax(dim=1, keepdim=True)
        if self.keep_seeds and seeds is not None:
            labeled = seeds != self.ignore_index
            hard = torch.where(labeled, seeds.to(hard.dtype), hard)
        return hard

    def _iteration(self, engine, batchdata):  # type: ignore[override]
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        if self.image_key not in batchdata:
            raise InputError(f"the batch has no {self.image_key!r}; keys are {list(batchdata)}")
        image = torch.as_tensor(batchdata[self.image_key]).to(engine.state.device, non_blocking=engine.non_blocking)
        seeds = batchdata.get(self.seeds_key)
        if seeds is not None:
            seeds = torch.as_tensor(seeds).to(engine.state.device, non_blocking=engine.non_blocking).long()
        elif self.keep_seeds:
            raise InputError(f"`keep_seeds` needs {self.seeds_key!r} in the batch; keys are {list(batchdata)}")
        engine.state.output = {Keys.IMAGE: image, Keys.LABEL: seeds}
        use_amp = engine.amp and engine.scaler is not None
        with torch.no_grad(), torch.autocast("cuda", enabled=use_amp):
            teacher_logits = self.teacher_logits(image)
        teacher_logits = [self.refined_logits(i, t, image) for i, t in enumerate(teacher_logits)]
        hard = [self._hard_labels(t, seeds) for t in teacher_logits]
        student_image, dims = self._student_view(image)
        if dims:
            teacher_logits = [torch.flip(t, dims) for t in teacher_logits]
            hard = [torch.flip(h, dims) for h in hard]
        clean = torch.flip(image, dims) if dims else image  # the regulariser's image, on the students' grid
        losses = []
        for index, (network, optimizer) in enumerate(zip(self.networks, self.optimizers)):
            network.train()
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", enabled=use_amp):
                logits = network(student_image)
                self_term = self.self_loss(logits.float(), hard[index])
                kd_term = distillation_loss(logits, teacher_logits[1 - index], self.temperature)
                loss = (1.0 - self.weight_kd) * self_term + self.weight_kd * kd_term
                if self.regulariser is not None and self.weight_regulariser > 0:
                    loss = loss + self.weight_regulariser * self.regulariser(logits.float(), clean)
            if use_amp:
                engine.scaler.scale(loss).backward()
                engine.scaler.step(optimizer)
            else:
                loss.backward()
                optimizer.step()
            losses.append(loss.detach())
            if index == 0:
                engine.state.output[Keys.PRED] = torch.flip(logits.detach(), dims) if dims else logits.detach()
        if use_amp:
            engine.scaler.update()  # once per iteration, after both optimisers stepped
        engine.state.output["loss1"], engine.state.output["loss2"] = float(losses[0]), float(losses[1])
        engine.state.output[Keys.LOSS] = losses[0] + losses[1]
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

"""MONAI trainer of NIMOSEF: one code per subject, a shared implicit function over space and cycle phase.

Banus et al., "NIMOSEF: Neural implicit motion and segmentation functions", MICCAI 2025. Each
iteration takes a batch of subjects; for each, the end-diastolic (ED) frame and one random frame
``t``: points of both frames (half anywhere, half in the central heart region) train intensity and
segmentation; the ED boundary points, moved by the displacement predicted at ``t``, are pulled
onto the boundary at ``t`` (Chamfer per class), with displacement, zero-at-ED, Jacobian and
Laplacian regularisers (:class:`~medrefine.losses.nimosef.NimosefLoss`, motion terms warmed up).

The NeAR :class:`~medrefine.engines.near.AutoDecoderTrainer` samples one 3D grid per case with one
label; this data is 4D with three heads and motion terms between two frames, so this is a sibling
:class:`monai.engines.Trainer` with the same contract: handlers (``LrScheduleHandler`` once per
epoch, ``ValidationHandler``, :class:`~medrefine.handlers.ResumeHandler`,
:class:`~medrefine.handlers.HistoryCSV`, TensorBoard) come from the bundle config; every random draw
is a function of ``seed``, epoch and iteration, so a resumed run follows the uninterrupted one;
codes and network have their own learning rates through two optimiser parameter groups
(:func:`nimosef_optimizer`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.engines import Evaluator, Trainer
from torch import nn

from medrefine.engines.distributed import average_gradients, broadcast_parameters, distributed_rank_world, rank_share
from medrefine.errors import InputError
from medrefine.losses.jacobian import folding_share, jacobian, jacobian_determinant
from medrefine.losses.nimosef import NimosefLoss, laplacian_smoothness
from medrefine.losses.point_sets import chamfer_distance

__all__ = ["CineTensors", "NimosefEvaluator", "NimosefTrainer", "coordinate_scale", "nimosef_optimizer"]

logger = logging.getLogger(__name__)

CENTRAL_RADIUS = 0.5  # normalised in-plane radius of the "heart region" half of the point draws


def coordinate_scale(cases: Sequence[Mapping[str, Any]], margin: float = 1.05) -> float:
    """Largest absolute local coordinate (mm) over the cases' grids, times ``margin``: maps them into [-1, 1]."""
    if not cases:
        raise InputError("no cases to compute the coordinate scale from")
    return float(max(np.abs(np.asarray(c["local_mm"])).max() for c in cases) * float(margin))


def _boundary(label: np.ndarray) -> np.ndarray:
    """Voxels of a foreground class with a 6-neighbour of another class, ``(X, Y, Z)`` bool."""
    edge = np.zeros(label.shape, dtype=bool)
    for dim in range(3):
        diff = np.diff(label, axis=dim) != 0
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[dim], hi[dim] = slice(0, -1), slice(1, None)
        edge[tuple(lo)] |= diff
        edge[tuple(hi)] |= diff
    return edge & (label > 0)


class CineTensors:
    """The prepared cases of :mod:`medrefine.data.cine_implicit` as flat tensors, with seeded point draws.

    Args:
        cases: dicts with ``image (X, Y, Z, T)``, ``local_mm (X, Y, Z, 3)``, ``ed_frame`` and
            optionally ``label (X, Y, Z, T)``.
        scale_mm: coordinate scale (see :func:`coordinate_scale`).
        device: where the tensors live.
    """

    def __init__(self, cases: Sequence[Mapping[str, Any]], scale_mm: float, device: torch.device | str = "cpu") -> None:
        if not cases:
            raise InputError("no cases given")
        if float(scale_mm) <= 0:
            raise ValueError(f"`scale_mm` must be > 0, got {scale_mm}")
        self.device = torch.device(device)
        self.scale_mm = float(scale_mm)
        self.ids = [str(c.get("case", i)) for i, c in enumerate(cases)]
        self.images, self.labels, self.coords, self.central, self.boundaries, self.shapes = [], [], [], [], [], []
        frames = []
        for c in cases:
            image = np.asarray(c["image"], dtype=np.float32)
            if image.ndim != 4:
                raise InputError(f"case {c.get('case')!r}: expected a 4D image (X, Y, Z, T), found shape {image.shape}")
            t_count = image.shape[3]
            frames.append(t_count)
            self.shapes.append(image.shape[:3])
            self.images.append(torch.from_numpy(image.reshape(-1, t_count).T.copy()).to(self.device))
            coords = torch.from_numpy(np.asarray(c["local_mm"], dtype=np.float32).reshape(-1, 3) / self.scale_mm)
            self.coords.append(coords.to(self.device))
            self.central.append(torch.nonzero(coords[:, :2].norm(dim=1) < CENTRAL_RADIUS).view(-1).to(self.device))
            label = c.get("label")
            if label is None:
                self.labels.append(None)
                self.boundaries.append(None)
                continue
            label = np.asarray(label)
            self.labels.append(torch.from_numpy(label.reshape(-1, t_count).T.astype(np.int64)).to(self.device))
            per_frame = []
            for f in range(t_count):
                idx = np.flatnonzero(_boundary(label[..., f]))
                per_frame.append((torch.from_numpy(idx).to(self.device),
                                  torch.from_numpy(label[..., f].reshape(-1)[idx].astype(np.int64)).to(self.device)))
            self.boundaries.append(per_frame)
        self.frames = frames
        self.ed_frames = [int(c.get("ed_frame", 0)) for c in cases]

    def __len__(self) -> int:
        return len(self.images)

    def phase(self, case: int, frame: int) -> float:
        return float(frame) / float(self.frames[case])

    def t_ed(self, case: int) -> float:
        return self.phase(case, self.ed_frames[case])

    def draw(self, case: int, n: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` voxel indices: half uniform, half in the central region."""
        total = self.coords[case].shape[0]
        central = self.central[case]
        half = n // 2 if central.numel() else 0
        uniform = torch.randint(total, (n - half,), generator=gen)
        if half:
            picked = central[torch.randint(central.numel(), (half,), generator=gen).to(central.device)]
            return torch.cat([uniform.to(self.device), picked])
        return uniform.to(self.device)

    def boundary(self, case: int, frame: int, m: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """At most ``m`` boundary points ``(m', 3)`` (normalised) of ``frame`` and their classes."""
        idx, classes = self.boundaries[case][frame]
        if idx.numel() > m:
            keep = torch.randperm(idx.numel(), generator=gen)[:m].to(idx.device)
            idx, classes = idx[keep], classes[keep]
        return self.coords[case][idx], classes


def nimosef_optimizer(network: nn.Module, lr_network: float = 5e-4, lr_codes: float = 1e-3,
                      weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW with two parameter groups: the codes (``lr_codes``, no weight decay) and the rest (``lr_network``)."""
    codes = [p for n, p in network.named_parameters() if n.startswith("latents.")]
    rest = [p for n, p in network.named_parameters() if not n.startswith("latents.")]
    return torch.optim.AdamW([{"params": rest, "lr": float(lr_network), "weight_decay": float(weight_decay)},
                              {"params": codes, "lr": float(lr_codes), "weight_decay": 0.0}])


def label_consistency(network: nn.Module, latent: torch.Tensor, data: CineTensors, case: int, frame: int,
                      idx: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the segmentation at ``frame`` of ED points ``idx`` moved there, against their ED labels.

    The segmentation's gradient is taken with respect to the moved positions alone and passed on
    to the displacement (the value is the cross-entropy; no gradient reaches the segmentation's
    parameters or the code through this path), so only the motion learns from it: a point of the
    LV at end-diastole must land in the LV at ``t``. Dense (any point, not only boundary voxels)
    and sub-voxel (the segmentation head is continuous), unlike the Chamfer term; like it, it says
    nothing of motion along a boundary.
    """
    ed = data.ed_frames[case]
    t, t_ed = data.phase(case, frame), data.t_ed(case)
    pts = data.coords[case][idx].unsqueeze(0)
    t_ed_tensor = torch.tensor([t_ed], device=pts.device)
    times = torch.full(pts.shape[:2], t, device=pts.device, dtype=pts.dtype)
    disp = network.decode(latent, pts, times, t_ed_tensor, heads=("displacement",))["displacement"]
    moved = pts + disp
    leaf = moved.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = network.decode(latent.detach(), leaf, times, t_ed_tensor, heads=("seg",))["seg"][0]
        ce = torch.nn.functional.cross_entropy(logits.float(), data.labels[case][ed][idx])
        (grad,) = torch.autograd.grad(ce, leaf)  # d CE / d position only: no gradient reaches the parameters
    return ce.detach() + ((moved - moved.detach()) * grad).sum()


def motion_terms(network: nn.Module, latent: torch.Tensor, data: CineTensors, case: int, frame: int,
                 loss: NimosefLoss, gen: torch.Generator, *, boundary_points: int, jacobian_points: int,
                 jacobian_method: str) -> dict[str, torch.Tensor]:
    """The motion terms of one subject between its ED frame and ``frame`` (see the module docstring)."""
    ed = data.ed_frames[case]
    t, t_ed = data.phase(case, frame), data.t_ed(case)
    src, src_cls = data.boundary(case, ed, boundary_points, gen)
    dst, dst_cls = data.boundary(case, frame, boundary_points, gen)
    jac_idx = data.draw(case, jacobian_points, gen)
    jac_pts = data.coords[case][jac_idx]
    n_src = src.shape[0]
    pts = torch.cat([src, src[: max(1, n_src // 4)]], dim=0).unsqueeze(0)
    times = torch.cat([torch.full((n_src,), t), torch.full((pts.shape[1] - n_src,), t_ed)]).to(pts).unsqueeze(0)
    disp = network.decode(latent, pts, times, torch.tensor([t_ed], device=pts.device), heads=("displacement",))["displacement"][0]
    moved, at_ed = src + disp[:n_src], disp[n_src:]
    chamfers = []
    for value in torch.unique(src_cls).tolist():
        a, b = moved[src_cls == value], dst[dst_cls == value]
        if a.shape[0] and b.shape[0]:
            chamfers.append(chamfer_distance(a, b, bidirectional=loss.bidirectional))
    zero = disp.sum() * 0.0

    def field(p: torch.Tensor) -> torch.Tensor:
        tt = torch.full(p.shape[:2], t, device=p.device, dtype=p.dtype)
        return network.decode(latent, p, tt, torch.tensor([t_ed], device=p.device), heads=("displacement",))["displacement"]

    det = jacobian_determinant(jacobian(field, jac_pts.unsqueeze(0), method=jacobian_method)[0])
    consistency = zero
    if loss.weights.get("consistency", 0.0) > 0 and data.labels[case] is not None:
        consistency = label_consistency(network, latent, data, case, frame, data.draw(case, boundary_points, gen))
    myo = data.labels[case][ed][jac_idx] == 2 if data.labels[case] is not None else torch.zeros_like(det, dtype=torch.bool)
    from medrefine.losses.jacobian import folding_penalty, volume_penalty

    return {
        "chamfer": torch.stack(chamfers).mean() if chamfers else zero,
        "displacement": disp[:n_src].pow(2).sum(-1).mean(),
        "ed_displacement": at_ed.pow(2).sum(-1).mean(),
        "folding": folding_penalty(det),
        "volume": volume_penalty(det[myo]) if bool(myo.any()) else zero,
        "laplacian": laplacian_smoothness(src, disp[:n_src], loss.knn_k),
        "consistency": consistency,
        "folding_share": folding_share(det),
    }


class NimosefTrainer(Trainer):
    """Train a :class:`~medrefine.networks.nimosef.NimosefNetwork` on labelled cine subjects.

    Args:
        network: the network; ``network.num_cases`` must equal ``len(dataset)``.
        optimizer: e.g. :func:`nimosef_optimizer` (separate code and network learning rates).
        dataset: prepared cases (:func:`medrefine.data.cine_implicit.load_split`), each labelled.
        loss_function: a :class:`~medrefine.losses.nimosef.NimosefLoss` (default: its defaults).
        scale_mm: coordinate scale; defaults to :func:`coordinate_scale` of ``dataset``.
        max_epochs: epochs. Defaults to 100.
        batch_size: subjects per iteration. Defaults to 4.
        num_points: image points per frame and subject. Defaults to 4096.
        boundary_points: ED/t boundary points per subject. Defaults to 1024.
        jacobian_points: points of the Jacobian penalties. Defaults to 256.
        jacobian_method: ``"finite_difference"`` or ``"autograd"``. Defaults to the former.
        grad_clip: gradient-norm clip (0 = none). Defaults to 1.0.
        device: training device; defaults to the network's.
        amp: mixed precision on CUDA (ignored on CPU). Defaults to False.
        seed: seed of every draw. Defaults to 0.
        train_handlers: ignite/MONAI handlers.

    ``engine.state.output`` holds ``loss``, every term and ``folding_share``.

    Raises:
        InputError: unlabelled cases, or ``num_cases`` that differs from the data set.
    """

    def __init__(self, network: nn.Module, optimizer: torch.optim.Optimizer, dataset: Sequence[Mapping[str, Any]],
                 loss_function: NimosefLoss | None = None, *, scale_mm: float | None = None, max_epochs: int = 100,
                 batch_size: int = 4, num_points: int = 4096, boundary_points: int = 1024, jacobian_points: int = 256,
                 jacobian_method: str = "finite_difference", grad_clip: float = 1.0,
                 device: torch.device | str | None = None, amp: bool = False, seed: int = 0,
                 train_handlers: Sequence | None = None) -> None:
        for name, value in (("max_epochs", max_epochs), ("batch_size", batch_size), ("num_points", num_points),
                            ("boundary_points", boundary_points), ("jacobian_points", jacobian_points)):  # fmt: skip
            if int(value) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}")
        device = torch.device(device) if device is not None else next(network.parameters()).device
        if any(c.get("label") is None for c in dataset):
            missing = next(c.get("case") for c in dataset if c.get("label") is None)
            raise InputError(f"case {missing!r}: training needs a label, found none")
        if len(dataset) != network.num_cases:
            raise InputError(f"`network.num_cases` ({network.num_cases}) must equal the number of cases ({len(dataset)})")
        use_amp = bool(amp) and device.type == "cuda"
        super().__init__(device=device, max_epochs=int(max_epochs),
                         data_loader=range(math.ceil(len(dataset) / int(batch_size))), amp=use_amp, decollate=False)
        self.device = device
        self.network = network.to(device)
        broadcast_parameters(self.network, distributed_rank_world()[1])  # every process starts from rank 0's weights
        self.optimizer = optimizer
        self.loss_function = (loss_function or NimosefLoss(network.num_classes)).to(device)
        self.scale_mm = float(scale_mm) if scale_mm is not None else coordinate_scale(dataset)
        self.data = CineTensors(dataset, self.scale_mm, device)
        self.batch_size, self.num_points = int(batch_size), int(num_points)
        self.boundary_points, self.jacobian_points = int(boundary_points), int(jacobian_points)
        self.jacobian_method, self.grad_clip = str(jacobian_method), float(grad_clip)
        self.seed = int(seed)
        if train_handlers is not None:
            self._register_handlers(train_handlers)

    def _iteration(self, engine: Any, slot: Any) -> dict[str, float]:  # type: ignore[override]
        epoch = engine.state.epoch
        perm = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(self.seed * 7919 + int(epoch)))
        cases = perm[int(slot) * self.batch_size : (int(slot) + 1) * self.batch_size].tolist()
        rank, world = distributed_rank_world()
        if world > 1:  # this process's share; each subject draws from its own generator, so the share draws
            # what one process drawing the whole batch would, and the processes' mean loss is the global batch's
            cases = [cases[i] for i in rank_share(len(cases), rank, world)]
        gens = [torch.Generator().manual_seed(self.seed * 1_000_003 + int(engine.state.iteration) * 65_537 + case)
                for case in cases]
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        data, loss_fn = self.data, self.loss_function
        pts, times, t_eds, intens, labels, frames = [], [], [], [], [], []
        for case, gen in zip(cases, gens):
            ed = data.ed_frames[case]
            frame = int(torch.randint(data.frames[case], (1,), generator=gen))
            frames.append(frame)
            for f in (ed, frame):
                idx = data.draw(case, self.num_points, gen)
                pts.append(data.coords[case][idx])
                times.append(torch.full((self.num_points,), data.phase(case, f), device=self.device))
                intens.append(data.images[case][f][idx])
                labels.append(data.labels[case][f][idx])
            t_eds.append(data.t_ed(case))
        b = len(cases)
        idx_t = torch.tensor(cases, device=self.device)
        scaler = engine.scaler if engine.amp else None
        with torch.autocast(device_type=self.device.type, enabled=scaler is not None):
            latent = self.network.latents(idx_t)
            out = self.network.decode(latent, torch.stack(pts).view(b, -1, 3), torch.stack(times).view(b, -1),
                                      torch.tensor(t_eds, device=self.device))
            terms = loss_fn.image_terms(out["seg"].float(), out["intensity"].float(), torch.stack(labels).view(b, -1),
                                        torch.stack(intens).view(b, -1), latent.float())
            motion: dict[str, list[torch.Tensor]] = {}
            for j, case in enumerate(cases):
                for name, value in motion_terms(self.network, latent[j : j + 1], data, case, frames[j], loss_fn, gens[j],
                                                boundary_points=self.boundary_points,
                                                jacobian_points=self.jacobian_points,
                                                jacobian_method=self.jacobian_method).items():
                    motion.setdefault(name, []).append(value.float())
            terms.update({name: torch.stack(values).mean() for name, values in motion.items()})
            total = loss_fn.total(terms, epoch - 1)
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.unscale_(self.optimizer)
        else:
            total.backward()
        average_gradients(self.network, world)
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.grad_clip)
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        result = {"loss": float(total.detach())}
        result.update({k: float(v.detach()) for k, v in terms.items()})
        return result

    def run(self, max_epochs: int | None = None) -> Any:  # type: ignore[override]
        """Train (continuing from the ResumeHandler's checkpoint when attached); return the state."""
        if max_epochs is not None:
            self.state.max_epochs = int(max_epochs)
        super().run()
        return self.state


class NimosefEvaluator(Evaluator):
    """Validation: fit codes of the validation subjects (network frozen), decode frames, score Dice.

    Codes are fitted on the validation split itself (the reference fitted them on the training
    split), from the image alone unless ``fit_with_label``. ``state.metrics`` then holds
    ``val_mean_dice`` (key metric, mean over LV, myocardium and RV), ``val_dice_<class>`` and
    ``val_folding_share`` is not computed here (it is a training output).

    Args:
        device: decoding device.
        network: the network being trained.
        dataset: prepared validation cases (labelled).
        scale_mm: coordinate scale of the training data (``trainer.scale_mm``).
        fit_steps, fit_lr, fit_points: code fitting (see :func:`medrefine.engines.nimosef_fit.fit_codes`).
        fit_with_label: also fit the segmentation head to the label.
        val_frames: frames decoded per subject (evenly spread, ED first). Defaults to 4.
        chunk_size: points per forward pass.
        val_handlers: handlers of this evaluator.
    """

    def __init__(self, device: torch.device | str, network: nn.Module, dataset: Sequence[Mapping[str, Any]],
                 scale_mm: float | Any, *, fit_steps: int = 50, fit_lr: float = 1e-2, fit_points: int = 4096,
                 fit_with_label: bool = False, val_frames: int = 4, chunk_size: int = 65536,
                 val_handlers: Sequence | None = None) -> None:
        super().__init__(device=device, val_data_loader=range(1), decollate=False, val_handlers=None)
        self.network, self.dataset = network, list(dataset)
        self._scale = scale_mm
        self.fit_steps, self.fit_lr, self.fit_points = int(fit_steps), float(fit_lr), int(fit_points)
        self.fit_with_label, self.val_frames, self.chunk_size = bool(fit_with_label), int(val_frames), int(chunk_size)
        self.state.key_metric_name = "val_mean_dice"
        if val_handlers is not None:
            self._register_handlers(val_handlers)

    @property
    def scale_mm(self) -> float:
        scale = self._scale
        return float(getattr(scale, "scale_mm", scale))

    def _iteration(self, engine: Any, batch: Any) -> dict[str, float]:  # type: ignore[override]
        from medrefine.engines.nimosef_fit import fit_codes
        from medrefine.inferers.nimosef import decode_frames
        from medrefine.metrics.cardiac import frame_dice

        if not self.dataset:
            return {}
        device = engine.state.device
        data = CineTensors(self.dataset, self.scale_mm, device)
        codes = fit_codes(self.network, data, steps=self.fit_steps, lr=self.fit_lr, num_points=self.fit_points,
                          use_label=self.fit_with_label, device=device)
        scores: dict[int, list[float]] = {}
        for case in range(len(data)):
            count = data.frames[case]
            chosen = sorted({(data.ed_frames[case] + round(k * count / self.val_frames)) % count
                             for k in range(min(self.val_frames, count))})
            pred = decode_frames(self.network, codes[case : case + 1], data.coords[case], [data.phase(case, f) for f in chosen],
                                 data.t_ed(case), chunk_size=self.chunk_size, heads=("seg",))["seg"]
            ref = data.labels[case][chosen]
            for value, dice in frame_dice(pred.cpu().numpy(), ref.cpu().numpy(), range(1, self.network.num_classes)).items():
                scores.setdefault(value, []).extend(dice)
        metrics = {f"val_dice_{k}": float(np.nanmean(v)) for k, v in scores.items()}
        metrics["val_mean_dice"] = float(np.nanmean(list(metrics.values())))
        engine.state.metrics.update(metrics)
        current = metrics["val_mean_dice"]
        if engine.state.best_metric_epoch == -1 or current > engine.state.best_metric:
            engine.state.best_metric, engine.state.best_metric_epoch = current, engine.state.epoch
        return metrics

"""Fit NIMOSEF codes of new subjects with the network frozen (DeepSDF-style inference).

Banus et al., NIMOSEF (MICCAI 2025): a new subject gets a code that makes the implicit function
reproduce its cine intensities (and, when asked, its label); segmentation and motion then come
from the trained network. Only the codes change: the network's parameters, their
``requires_grad`` flags and its train/eval mode are restored afterwards, as in
:func:`medrefine.engines.near_fit.fit_latent` (whose decoder is a 3D refiner, not this function of
space and phase, hence this sibling).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from medrefine.engines.frozen import frozen
from medrefine.losses.nimosef import NimosefLoss

__all__ = ["fit_codes", "subject_seed"]

logger = logging.getLogger(__name__)


def subject_seed(seed: int, case_id: str) -> int:
    """The seed of subject ``case_id``'s draws: ``seed`` and the id's CRC-32 (stable across runs and processes)."""
    import zlib

    return (int(seed) * 1_000_003 + zlib.crc32(str(case_id).encode())) % 2**63


def fit_codes(network: nn.Module, data: Any, *, steps: int = 200, lr: float = 1e-2, num_points: int = 4096,
              use_label: bool = False, loss_function: NimosefLoss | None = None, seed: int = 0,
              device: torch.device | str | None = None, return_history: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[float]]:
    """Codes ``(S, latent_dim)`` of the subjects of ``data`` (a :class:`~medrefine.engines.nimosef.CineTensors`).

    Every step draws ``num_points`` points of one random frame per subject (half in the central
    region) and fits intensity (SmoothL1), code L2 and, with ``use_label``, Dice + CE.

    Each subject draws from its own random stream, seeded by ``seed`` and its case id, and every
    term is a mean over subjects (Adam's steps do not depend on that scale), so a subject's code
    does not depend on which other subjects are fitted with it: inference sharded across
    processes (:mod:`medrefine.engines.sharding`) fits the codes one process fits.

    Args:
        network: a trained :class:`~medrefine.networks.nimosef.NimosefNetwork`.
        data: the subjects (scaled with the training ``scale_mm``).
        steps: Adam steps. Defaults to 200.
        lr: learning rate of the codes. Defaults to 1e-2.
        num_points: points per subject and step. Defaults to 4096.
        use_label: fit the label too (every subject must have one).
        loss_function: weights of the terms; defaults to :class:`NimosefLoss`'s.
        seed: seed of the draws.
        device: defaults to the network's.
        return_history: also return the loss per step.

    Raises:
        ValueError: ``steps < 1``, ``lr <= 0``, or ``use_label`` with an unlabelled subject.
    """
    if int(steps) < 1 or float(lr) <= 0:
        raise ValueError(f"`steps` must be >= 1 and `lr` > 0, got {steps} and {lr}")
    if use_label and any(label is None for label in data.labels):
        raise ValueError("`use_label=True` needs a label for every subject")
    device = torch.device(device) if device is not None else next(network.parameters()).device
    loss_fn = (loss_function or NimosefLoss(network.num_classes)).to(device)
    codes = nn.Parameter(network.mean_latent().to(device).repeat(len(data), 1))
    optimizer = torch.optim.Adam([codes], lr=float(lr))
    gens = [torch.Generator().manual_seed(subject_seed(seed, case_id)) for case_id in data.ids]
    history: list[float] = []
    t_ed = torch.tensor([data.t_ed(c) for c in range(len(data))], device=device)
    with frozen(network):
        for _ in range(int(steps)):
            pts, times, intens, labels = [], [], [], []
            for case, gen in enumerate(gens):
                frame = int(torch.randint(data.frames[case], (1,), generator=gen))
                idx = data.draw(case, int(num_points), gen)
                pts.append(data.coords[case][idx])
                times.append(torch.full((int(num_points),), data.phase(case, frame), device=device))
                intens.append(data.images[case][frame][idx])
                if use_label:
                    labels.append(data.labels[case][frame][idx])
            heads = ("seg", "intensity") if use_label else ("intensity",)
            out = network.decode(codes, torch.stack(pts), torch.stack(times), t_ed, heads=heads)
            terms = loss_fn.image_terms(out.get("seg"), out["intensity"], torch.stack(labels) if use_label else None,
                                        torch.stack(intens), codes)
            loss = loss_fn.total(terms, 0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append(float(loss.detach()))
    logger.info("fit_codes: %d subject(s), loss %.4f -> %.4f in %d steps", len(data), history[0], history[-1], len(history))
    result = codes.detach()
    return (result, history) if return_history else result

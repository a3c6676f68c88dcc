"""Refine a segmentation's logits against the image's edges with the gated CRF energy.

Used by stage 2 of the point-supervision bundle (``refine_labels``): the frozen teachers' output
is refined before it becomes the students' hard labels, so self-training learns borders that
follow the image instead of repeating the teachers' own errors (on the example CT a one-voxel
halo around the organ). Not in PA-Seg; the bundle README has the measurements.

The refined logits ``x`` minimise, from ``x = logits``, by a few Adam steps::

    E(x) = L_crf(softmax(x), I)  +  mu * CE(softmax(logits), softmax(x))

``L_crf`` is :class:`~medrefine.losses.GatedCRFLoss` (Potts model with Gaussian kernels on
position in mm and intensity), the second term a unary that keeps ``x`` near the input (weight
``mu``; 0 leaves only the number of steps to limit the drift).
"""

from __future__ import annotations

import torch

from medrefine.errors import InputError
from medrefine.losses.crf import GatedCRFLoss

__all__ = ["CRFLabelRefiner"]


class CRFLabelRefiner:
    """Callable ``refiner(logits, image) -> refined logits`` (see the module docstring).

    Args:
        crf: the CRF energy on logits (a :class:`~medrefine.losses.GatedCRFLoss` built with
            ``softmax=True``); its spacing comes from the image's ``MetaTensor`` affine or the
            loss's ``spacing`` argument.
        steps: Adam steps. Default 60.
        learning_rate: Adam step size on the logits. Default 0.1.
        unary_weight: weight ``mu`` of the pull towards the input. Default 0.05.

    Example:
        >>> refiner = CRFLabelRefiner(GatedCRFLoss(sigma_position_mm=3.0, sigma_intensity=0.5, radius=2,
        ...                                        downsample_factor=1, spatial_dims="multiview2d", softmax=True))
        >>> labels = refiner(teacher_logits, image).argmax(1, keepdim=True)
    """

    def __init__(self, crf: GatedCRFLoss, steps: int = 60, learning_rate: float = 0.1, unary_weight: float = 0.05) -> None:
        if isinstance(crf, GatedCRFLoss) and not crf.softmax:
            raise InputError("`crf` must take logits: a GatedCRFLoss built with softmax=True, got softmax=False")
        if isinstance(steps, bool) or int(steps) < 0:
            raise InputError(f"`steps` must be an integer >= 0, got {steps!r}")
        if not float(learning_rate) > 0:
            raise InputError(f"`learning_rate` must be > 0, got {learning_rate!r}")
        if not float(unary_weight) >= 0:
            raise InputError(f"`unary_weight` must be >= 0, got {unary_weight!r}")
        self.crf = crf
        self.steps = int(steps)
        self.learning_rate = float(learning_rate)
        self.unary_weight = float(unary_weight)

    def __call__(self, logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Refined logits, shape and device of ``logits`` (float32, no gradient)."""
        start = torch.as_tensor(logits).detach().float()
        if self.steps == 0:
            return start.clone()
        with torch.enable_grad():
            target = torch.softmax(start, dim=1)
            x = start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([x], lr=self.learning_rate)
            for _ in range(self.steps):
                energy = self.crf(x, image)
                if self.unary_weight > 0:
                    energy = energy - self.unary_weight * (target * torch.log_softmax(x, dim=1)).sum(dim=1).mean()
                optimizer.zero_grad(set_to_none=True)
                energy.backward()
                optimizer.step()
        return x.detach()

"""Sigmoid-shaped ramp-up of regulariser weights.

Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning" (ICLR 2017), used by PA-Seg
(Zhai et al., IEEE TMI 2023) to bring in the CRF and variance losses over the first epochs:
``loss = seg + sigmoid_rampup(epoch, rampup_epochs) * (w_crf * crf + w_var * var)``.
"""

from __future__ import annotations

import math

from medrefine.errors import InputError

__all__ = ["sigmoid_rampup", "SigmoidRampup"]


def sigmoid_rampup(step: float, rampup_length: float) -> float:
    """Return ``exp(-5 (1 - t)^2)`` with ``t = clip(step / rampup_length, 0, 1)``.

    Args:
        step: current step or epoch (any real; clipped).
        rampup_length: steps until the weight reaches 1 (>= 0). 0 means no ramp-up (always 1).

    Returns:
        A float in ``[exp(-5), 1]`` (about 0.0067 at ``step=0``, 1.0 from ``rampup_length`` on).

    Raises:
        InputError (a ValueError): if ``rampup_length`` is negative or not finite.

    Example:
        >>> round(sigmoid_rampup(15, 30), 4)
        0.2865
    """
    if not math.isfinite(rampup_length) or rampup_length < 0:
        raise InputError(f"`rampup_length` must be a finite number >= 0, got {rampup_length!r}")
    if rampup_length == 0:
        return 1.0
    t = min(max(float(step) / float(rampup_length), 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


class SigmoidRampup:
    """Callable weight schedule ``weight * sigmoid_rampup(step, rampup_length)``.

    Args:
        rampup_length: steps (or epochs) of the ramp-up (>= 0).
        weight: final weight. Default 1.0.

    Example:
        >>> schedule = SigmoidRampup(30, weight=0.1)
        >>> schedule(30)
        0.1
    """

    def __init__(self, rampup_length: float, weight: float = 1.0) -> None:
        sigmoid_rampup(0, rampup_length)  # validate
        self.rampup_length = float(rampup_length)
        self.weight = float(weight)

    def __call__(self, step: float) -> float:
        """Weight at ``step``."""
        return self.weight * sigmoid_rampup(step, self.rampup_length)

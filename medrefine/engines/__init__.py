"""Ignite engines for loops MONAI lacks: auto-decoder training and latent fitting (NeAR)."""

from __future__ import annotations

from medrefine.engines.autodecoder import AutoDecoderTrainer, create_autodecoder_trainer
from medrefine.engines.cases import foreground_dice, stack_cases
from medrefine.engines.latent_fit import fit_latent

__all__ = ["AutoDecoderTrainer", "create_autodecoder_trainer", "fit_latent", "foreground_dice", "stack_cases"]

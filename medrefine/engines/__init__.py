"""MONAI engines for loops MONAI lacks: auto-decoder training and latent fitting (NeAR),
two-network cross distillation (PA-Seg stage 2)."""

from __future__ import annotations

from medrefine.engines.near import AutoDecoderEvaluator, AutoDecoderTrainer, create_autodecoder_trainer, default_epochs, default_latent_weight, default_milestones
from medrefine.engines.point_supervision import CrossDistillationTrainer, distillation_loss, frozen_copy
from medrefine.engines.cases import foreground_dice, stack_cases
from medrefine.engines.near_fit import fit_latent

__all__ = ["AutoDecoderEvaluator", "AutoDecoderTrainer", "default_epochs", "default_latent_weight", "default_milestones", "CrossDistillationTrainer", "create_autodecoder_trainer", "distillation_loss", "frozen_copy", "fit_latent", "foreground_dice", "stack_cases"]

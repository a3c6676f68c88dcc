"""MONAI-style transforms of medrefine: array transform + dictionary twin (suffix ``d``).

Example:
    >>> from medrefine.transforms import SeedExpansiond
    >>> xform = SeedExpansiond(keys="label", image_key="image", threshold=0.2)
"""

from __future__ import annotations

from medrefine.transforms.seed_expansion import (
    SeedExpansion,
    SeedExpansiond,
    expand_point_set,
    expand_seeds,
)

from medrefine.transforms.crf_refine import CRFLabelRefiner
from medrefine.transforms.point_supervision import LoadPointsd, PointSeedsd, SimulatePointsd
from medrefine.transforms.refinement_guard import GuardDecision, guard_refinement

__all__ = ["CRFLabelRefiner", "GuardDecision", "LoadPointsd", "PointSeedsd", "SeedExpansion", "SeedExpansiond", "SimulatePointsd", "expand_point_set", "expand_seeds", "guard_refinement"]

"""Data: datalists, splits, seed layouts, prepare, validation, phantoms and annotation noise.

Submodules load on first use: ``medrefine.data.phantoms.make_cardiac_cohort(...)`` works after
``import medrefine``.
"""

from __future__ import annotations

from medrefine._lazy import lazy_submodules

__getattr__, __dir__ = lazy_submodules(
    __name__,
    ("annotator_noise", "blobs", "classes", "cohort", "corruption", "datalist", "heart_sdf", "heart_sdf_cohort",
     "phantom_cohort",
     "layouts", "phantoms", "prepare", "prepare_dataset", "sdf", "shapes", "splits", "validate"),
)

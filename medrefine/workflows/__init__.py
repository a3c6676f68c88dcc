"""Workflows: the end-to-end pipelines the bundles' configs call.

- :mod:`medrefine.workflows.near`: annotation refinement (NeAR) from cohort to report;
- :mod:`medrefine.workflows.segmentation`: the multi-structure CT segmentation bundle's parts;
- :mod:`medrefine.workflows.point_supervision`: the point-supervision (PA-Seg) bundle's parts;
- :mod:`medrefine.workflows.models`: self-describing trained models (model.pt + model.json);
- :mod:`medrefine.workflows.preflight`: validate first, then write: inputs checked and output places refused among the inputs;
- :mod:`medrefine.workflows.training`: the CPU thread count of a run (bookkeeping is in :mod:`medrefine.handlers`).
"""

from __future__ import annotations

from medrefine._lazy import lazy_submodules

__getattr__, __dir__ = lazy_submodules(__name__, ("models", "near", "near_evaluation", "segmentation", "point_supervision", "preflight", "training"))

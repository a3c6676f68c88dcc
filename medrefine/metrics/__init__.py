"""Segmentation metrics per case and class, spacing-aware: Dice, IoU, HD95, ASSD, surface Dice.

The tidy table (one row per case, class and metric; columns ``case, class_id, class_name, metric,
value, status``) is the exchange format: :func:`compute_case_metrics` makes it for one pair of
label arrays, :func:`evaluate_pairs` for many files, :func:`summarize` and :func:`success_rates`
condense it, :func:`write_metrics_csv` stores it. Definitions (equal to MONAI's) and the rule for
structures absent from the prediction and/or the reference: :mod:`medrefine.metrics.binary`.

Example:
    >>> from medrefine.metrics import compute_case_metrics, summarize
    >>> df = compute_case_metrics(pred, ref, spacing=(1.0, 1.0, 2.5), classes={1: "liver"})  # doctest: +SKIP
    >>> summarize(df)  # doctest: +SKIP
"""

from __future__ import annotations

from medrefine.metrics.binary import (
    DISTANCE_METRICS,
    METRICS,
    STATUSES,
    binary_metrics,
    mask_surface,
    surface_distances,
)
from medrefine.metrics.case import COLUMNS, compute_case_metrics, resolve_classes
from medrefine.metrics.evaluate import (
    build_sources,
    case_id,
    evaluate_pair,
    evaluate_pairs,
    list_cases,
    match_folders,
    write_sources,
)
from medrefine.metrics.summary import (
    read_metrics_csv,
    success_rates,
    summarize,
    write_metrics_csv,
)

#: All metric names (``compute_case_metrics(metrics=ALL)``).
ALL: tuple[str, ...] = METRICS

__all__ = [
    "ALL",
    "COLUMNS",
    "DISTANCE_METRICS",
    "METRICS",
    "STATUSES",
    "binary_metrics",
    "build_sources",
    "case_id",
    "compute_case_metrics",
    "evaluate_pair",
    "evaluate_pairs",
    "list_cases",
    "mask_surface",
    "match_folders",
    "read_metrics_csv",
    "resolve_classes",
    "success_rates",
    "summarize",
    "surface_distances",
    "write_metrics_csv",
    "write_sources",
    "SeedDiceMetric",
]


def __getattr__(name: str):
    # SeedDiceMetric needs MONAI (and torch): imported on first use so that the CSV/metric tools stay light
    if name == "SeedDiceMetric":
        from medrefine.metrics.seed_dice import SeedDiceMetric

        return SeedDiceMetric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

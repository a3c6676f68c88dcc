"""Charts of a metrics run: structure ranking, box plots, distributions, before/after comparison.

Every function takes the tidy metrics table (see :mod:`medrefine.reports.tables`), writes one PNG
atomically and returns its path. Charts with one row per structure grow in height with the number
of structures, so 11 cardiac classes and 117 TotalSegmentator classes are both readable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medrefine.reports._render import new_figure, save_png, size_for_rows
from medrefine.reports.tables import HIGHER_IS_BETTER, SUCCESS_THRESHOLDS, ordered_metrics, per_case_table

__all__ = ["ranking_chart", "box_plots", "distribution_plots", "compare_plot"]

logger = logging.getLogger(__name__)

_LABELS = {"dice": "Dice", "iou": "IoU", "nsd": "NSD", "hd95": "HD95 (mm)", "assd": "ASSD (mm)"}


def _label(metric: str) -> str:
    return _LABELS.get(metric, metric)


def _class_order(metrics: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Per-class mean/std/count of ``metric``, sorted ascending (so the best ends at the top of barh)."""
    rows = metrics[metrics["metric"] == metric]
    stats = rows.groupby("class_id").agg(class_name=("class_name", "first"), mean=("value", "mean"), std=("value", "std"), n=("value", "count"))
    ascending = HIGHER_IS_BETTER.get(metric, True)
    return stats.sort_values(["mean"], ascending=ascending, na_position="first")


def _yticks(ax, names: Sequence[str]) -> None:
    size = 9 if len(names) <= 30 else 8 if len(names) <= 70 else 7
    ax.set_yticks(np.arange(len(names)))
    ax.set_yticklabels(names, fontsize=size)
    ax.set_ylim(-0.7, len(names) - 0.3)


def ranking_chart(metrics: pd.DataFrame, out: str | Path, *, metric: str = "dice", title: str | None = None) -> Path:
    """Horizontal bars of the mean of ``metric`` per structure with ±1 std error bars, best on top.

    Error bars are clipped to the metric's range (Dice stays within 0..1).

    Args:
        metrics: tidy metrics table.
        out: PNG path to write.
        metric: metric to rank by (default ``"dice"``); distances rank lowest first.
        title: figure title (default ``"Structure ranking by mean <metric>"``).

    Returns:
        ``out``.

    Raises:
        ValueError: ``metric`` is not in the table.

    Example:
        >>> ranking_chart(load_metrics("metrics.csv"), "ranking.png")  # doctest: +SKIP
    """
    if metric not in set(metrics["metric"]):
        raise ValueError(f"`metric` {metric!r} is not in the metrics table; it holds {ordered_metrics(metrics)}")
    from matplotlib import colormaps

    stats = _class_order(metrics, metric)
    n = len(stats)
    fig = new_figure(8.0, size_for_rows(n))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(n)
    mean = stats["mean"].to_numpy(dtype=float)
    std = np.nan_to_num(stats["std"].to_numpy(dtype=float))
    bounded = metric in ("dice", "iou", "nsd")
    if bounded:
        norm = np.clip(np.nan_to_num(mean), 0, 1)
    else:
        top = np.nanmax(mean) if np.isfinite(mean).any() else 1.0
        norm = 1 - np.clip(np.nan_to_num(mean, nan=top) / (top or 1.0), 0, 1)
    colors = colormaps["RdYlGn"](0.1 + 0.8 * norm)
    low_err = np.minimum(std, np.nan_to_num(mean))  # bars stay inside the metric's range
    high_err = np.minimum(std, np.clip(1 - np.nan_to_num(mean), 0, None)) if bounded else std
    ax.barh(y, np.nan_to_num(mean), xerr=np.vstack([low_err, high_err]), color=colors, edgecolor="0.3", linewidth=0.4,
            error_kw=dict(ecolor="0.25", elinewidth=0.8, capsize=2))
    right = 1.0 if bounded else max(1e-6, float(np.nanmax(mean + std)) if np.isfinite(mean).any() else 1.0)
    for yi, m in zip(y, mean):
        text = "n/a" if not np.isfinite(m) else (f"{m:.3f}" if bounded else f"{m:.1f}")
        ax.text(min(np.nan_to_num(m), right) + 0.01 * right, yi, text, va="center", ha="left", fontsize=7, color="0.15")
    if bounded:
        for t in SUCCESS_THRESHOLDS:
            ax.axvline(t, color="0.5", linestyle=":", linewidth=0.8)
    ax.set_xlim(0, right * 1.12)
    _yticks(ax, [f"{name}" for name in stats["class_name"]])
    ax.set_xlabel(f"mean {_label(metric)} (error bar: ±1 std over cases)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or f"Structure ranking by mean {_label(metric)} ({n} structures)", fontsize=11)
    fig.tight_layout()
    return save_png(fig, out)


def box_plots(metrics: pd.DataFrame, out: str | Path, *, metric_names: Sequence[str] = ("dice", "hd95"), title: str | None = None) -> Path:
    """Box plots per structure of each metric in ``metric_names`` (side by side, shared structure axis).

    Structures are ordered by mean Dice, best on top. Non-finite values are left out.

    Args:
        metrics: tidy metrics table.
        out: PNG path to write.
        metric_names: metrics to plot, those absent from the table are skipped (default Dice, HD95).
        title: figure title.

    Returns:
        ``out``.
    """
    present = [m for m in metric_names if m in set(metrics["metric"])] or ["dice"]
    order = _class_order(metrics, "dice")
    n = len(order)
    fig = new_figure(4.2 * len(present) + 1.8, size_for_rows(n, per_row=0.26))
    axes = fig.subplots(1, len(present), sharey=True, squeeze=False)[0]
    for ax, metric in zip(axes, present):
        rows = metrics[metrics["metric"] == metric].dropna(subset=["value"])
        data = [rows.loc[rows["class_id"] == cid, "value"].to_numpy() for cid in order.index]
        positions = np.arange(n)
        filled = [i for i, d in enumerate(data) if len(d)]
        if filled:
            ax.boxplot([data[i] for i in filled], positions=positions[filled], orientation="horizontal", widths=0.6,
                       patch_artist=True, showfliers=True, flierprops=dict(markersize=2, alpha=0.6),
                       boxprops=dict(facecolor="#9ecae1", linewidth=0.6), medianprops=dict(color="#08306b", linewidth=1.2),
                       whiskerprops=dict(linewidth=0.6), capprops=dict(linewidth=0.6))
        ax.set_xlabel(_label(metric))
        ax.grid(axis="x", alpha=0.3)
        if metric in ("dice", "iou", "nsd"):
            ax.set_xlim(-0.02, 1.02)
    _yticks(axes[0], list(order["class_name"]))
    fig.suptitle(title or f"Per-structure distributions over cases ({n} structures, best Dice on top)", fontsize=11)
    fig.tight_layout()
    return save_png(fig, out)


def distribution_plots(metrics: pd.DataFrame, out: str | Path, *, bins: int = 30, title: str | None = None) -> Path:
    """Histograms of every metric over all (case, structure) pairs, plus the mean Dice per case.

    Dice panels mark the success thresholds 0.5, 0.7 and 0.9.

    Args:
        metrics: tidy metrics table.
        out: PNG path to write.
        bins: histogram bins.
        title: figure title.

    Returns:
        ``out``.
    """
    names = ordered_metrics(metrics)
    panels = [(m, metrics.loc[metrics["metric"] == m, "value"].dropna().to_numpy(), f"{_label(m)} per case and structure") for m in names]
    case_dice = per_case_table(metrics)["dice_mean"].dropna().to_numpy()
    panels.insert(1, ("dice", case_dice, "mean Dice per case"))
    ncols = min(3, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    fig = new_figure(4.0 * ncols, 3.0 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (metric, values, label) in zip(axes, panels):
        bounded = metric in ("dice", "iou", "nsd")
        if len(values):
            ax.hist(values, bins=np.linspace(0, 1, bins + 1) if bounded else bins, color="#4c72b0", edgecolor="white", linewidth=0.4)
            ax.axvline(float(np.median(values)), color="#c44e52", linewidth=1.2, label=f"median {np.median(values):.3g}")
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
        if metric == "dice":
            for t in SUCCESS_THRESHOLDS:
                ax.axvline(t, color="0.5", linestyle=":", linewidth=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("count", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title or "Metric distributions", fontsize=11)
    fig.tight_layout()
    return save_png(fig, out)


def compare_plot(metrics: pd.DataFrame, other: pd.DataFrame, out: str | Path, *, name: str = "current", other_name: str = "other",
                 metric: str = "dice", title: str | None = None) -> Path:
    """Paired before/after chart: per-structure means joined by arrows, and a per-case scatter.

    Left: for each structure, the mean ``metric`` of ``other`` (grey dot) and of ``metrics``
    (coloured dot: green when better, red when worse) joined by a line; structures sorted by the
    mean of ``metrics``. Right: each (case, structure) pair as a point ``other`` vs ``metrics``
    with the identity line; points above it improved (for Dice).

    Args:
        metrics: tidy metrics of the reported run (the "after").
        other: tidy metrics of the run compared against (the "before").
        out: PNG path to write.
        name: label of ``metrics``.
        other_name: label of ``other``.
        metric: metric to compare (default ``"dice"``).
        title: title of the left panel.

    Returns:
        ``out``.

    Raises:
        ValueError: ``metric`` is missing from one of the tables.
    """
    for table, label in ((metrics, name), (other, other_name)):
        if metric not in set(table["metric"]):
            raise ValueError(f"`metric` {metric!r} is not in the metrics of {label!r}; it holds {ordered_metrics(table)}")
    a = _class_order(metrics, metric)
    b = other[other["metric"] == metric].groupby("class_id")["value"].mean()
    n = len(a)
    fig = new_figure(12.0, max(4.5, size_for_rows(n)))
    grid = fig.add_gridspec(1, 2, width_ratios=[1.25, 1])
    ax = fig.add_subplot(grid[0, 0])
    y = np.arange(n)
    after = a["mean"].to_numpy(dtype=float)
    before = b.reindex(a.index).to_numpy(dtype=float)
    better = (after > before) if HIGHER_IS_BETTER.get(metric, True) else (after < before)
    ax.hlines(y, np.fmin(before, after), np.fmax(before, after), color="0.6", linewidth=1.2)
    ax.scatter(before, y, color="0.55", s=18, zorder=3, label=other_name)
    ax.scatter(after, y, c=np.where(better, "#2ca02c", "#d62728"), s=22, zorder=4, label=name)
    _yticks(ax, list(a["class_name"]))
    ax.set_xlabel(f"mean {_label(metric)}")
    ax.grid(axis="x", alpha=0.3)
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], marker="o", ls="", color="0.55", label=other_name),
                       Line2D([], [], marker="o", ls="", color="#2ca02c", label=f"{name} (better)"),
                       Line2D([], [], marker="o", ls="", color="#d62728", label=f"{name} (worse)")],
              fontsize=8, loc="lower right")
    ax.set_title(title or f"mean {_label(metric)} per structure: {other_name} → {name}", fontsize=10)

    key = ["case", "class_id"]
    paired = metrics[metrics["metric"] == metric][key + ["value"]].merge(
        other[other["metric"] == metric][key + ["value"]], on=key, suffixes=("_a", "_b")).dropna()
    ax2 = fig.add_subplot(grid[0, 1])
    if len(paired):
        ax2.scatter(paired["value_b"], paired["value_a"], s=10, alpha=0.5, color="#4c72b0", edgecolor="none")
        low = float(min(paired["value_a"].min(), paired["value_b"].min()))
        high = float(max(paired["value_a"].max(), paired["value_b"].max()))
        if metric in ("dice", "iou", "nsd"):
            low, high = 0.0, 1.0
        ax2.plot([low, high], [low, high], color="0.4", linestyle="--", linewidth=0.8)
        ax2.set_xlim(low, high)
        ax2.set_ylim(low, high)
        ax2.set_aspect("equal")
        improved = (paired["value_a"] > paired["value_b"]) if HIGHER_IS_BETTER.get(metric, True) else (paired["value_a"] < paired["value_b"])
        ax2.set_title(f"per case and structure: {int(improved.sum())}/{len(paired)} improved", fontsize=10)
    else:
        ax2.text(0.5, 0.5, "no (case, structure) pairs in common", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_xlabel(f"{_label(metric)} {other_name}")
    ax2.set_ylabel(f"{_label(metric)} {name}")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, out)

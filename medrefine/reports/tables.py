"""Tables of a metrics run: loading the tidy CSV, per-class and per-case summaries, before/after.

The input everywhere is medrefine's tidy metrics table (one row per case, class and metric), as
written by ``medrefine evaluate`` / :func:`medrefine.metrics.write_metrics_csv`:

======  ========  ==========  ======  =====
case    class_id  class_name  metric  value
======  ========  ==========  ======  =====
c001    1         liver       dice    0.93
c001    1         liver       hd95    2.1
======  ========  ==========  ======  =====

Metric names known to medrefine are ``dice``, ``iou``, ``nsd`` (higher is better) and ``hd95``,
``assd`` (mm, lower is better); other metric names are carried through as they are.
Non-finite values (an infinite surface distance when a structure is missing on one side, or a
missing value) are left out of means, medians and success rates; the report says how many.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medrefine.errors import InputError

__all__ = [
    "REQUIRED_COLUMNS",
    "SUCCESS_THRESHOLDS",
    "HIGHER_IS_BETTER",
    "load_metrics",
    "ordered_metrics",
    "drop_absent_classes",
    "per_class_table",
    "per_case_table",
    "compare_table",
    "select_cases",
    "format_table",
    "read_compare",
]

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("case", "class_id", "class_name", "metric", "value")
SUCCESS_THRESHOLDS: tuple[float, ...] = (0.5, 0.7, 0.9)
# metric name -> True when a higher value is better
HIGHER_IS_BETTER: dict[str, bool] = {"dice": True, "iou": True, "nsd": True, "hd95": False, "assd": False}
_METRIC_ORDER = ("dice", "iou", "nsd", "hd95", "assd")
_UNITS = {"hd95": "mm", "assd": "mm"}


def load_metrics(metrics: pd.DataFrame | str | Path, *, source: str | None = None) -> pd.DataFrame:
    """Read and check a tidy metrics table.

    Args:
        metrics: a DataFrame, or the path of a CSV (or ``.parquet``) file holding one.
        source: name used in error messages for a DataFrame (default ``"metrics"``).

    Returns:
        A copy with ``case`` and ``class_name`` as str, ``class_id`` as int, ``metric`` as
        lower-case str and ``value`` as float (non-finite values become NaN).

    Raises:
        InputError: the file is missing or unreadable, columns are missing (all of them are
            named), the table is empty, ``value`` is not numeric, or there are no ``dice`` rows.

    Example:
        >>> df = load_metrics("metrics.csv")  # doctest: +SKIP
    """
    if isinstance(metrics, pd.DataFrame):
        name = source or "metrics"
        df = metrics.copy()
    elif isinstance(metrics, (str, Path)):
        path = Path(metrics)
        name = source or str(path)
        if not path.is_file():
            raise InputError(f"{name}: metrics file not found")
        try:
            # case ids such as "001" must stay strings to match the sources file
            df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"case": str, "class_name": str})
        except Exception as err:  # pandas raises many types for a broken file
            raise InputError(f"{name}: cannot read the metrics table ({type(err).__name__}: {err})") from None
    else:
        raise TypeError(f"`metrics` must be a pandas DataFrame or a CSV path, got {type(metrics).__name__}")

    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"{name}: missing column(s) {', '.join(missing)}; a metrics table needs the columns "
            f"{', '.join(REQUIRED_COLUMNS)}, got {', '.join(map(str, df.columns)) or 'none'}"
        )
    if df.empty:
        raise InputError(f"{name}: the metrics table has no rows")
    df = df[list(REQUIRED_COLUMNS) + [c for c in df.columns if c not in REQUIRED_COLUMNS]]
    values = pd.to_numeric(df["value"], errors="coerce")
    bad = values.isna() & df["value"].notna()
    if bad.any():
        example = df.loc[bad, "value"].iloc[0]
        raise InputError(f"{name}: column `value` must be numeric, got {example!r} (and {int(bad.sum()) - 1} more)")
    try:
        class_id = df["class_id"].astype(float).astype(int)
    except (TypeError, ValueError):
        raise InputError(f"{name}: column `class_id` must hold integer label values, got {df['class_id'].iloc[0]!r}") from None
    df = df.assign(
        case=df["case"].astype(str),
        class_id=class_id,
        class_name=df["class_name"].astype(str),
        metric=df["metric"].astype(str).str.strip().str.lower(),
        value=values.astype(float).where(np.isfinite(values.astype(float))),
    )
    if not (df["metric"] == "dice").any():
        raise InputError(f"{name}: no `dice` rows; the report ranks structures by Dice. Metrics found: {sorted(df['metric'].unique())}")
    return df.reset_index(drop=True)


def drop_absent_classes(metrics: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Leave out structures without a single finite Dice (in neither prediction nor reference of any case).

    ``medrefine evaluate`` writes NaN rows for every class of the class table that a case does
    not contain; a report of 117 TotalSegmentator classes on an abdominal scan would otherwise
    list dozens of empty rows.

    Returns:
        ``(table without those structures, their names)``.
    """
    dice = metrics[metrics["metric"] == "dice"]
    keep = set(dice.dropna(subset=["value"])["class_id"])
    absent = sorted(set(metrics["class_id"]) - keep)
    names = metrics[metrics["class_id"].isin(absent)].groupby("class_id")["class_name"].first().tolist()
    return metrics[metrics["class_id"].isin(keep)].reset_index(drop=True), names


def ordered_metrics(metrics: pd.DataFrame) -> list[str]:
    """Metric names in the table, known ones first (dice, iou, nsd, hd95, assd), then the rest sorted."""
    present = set(metrics["metric"].unique())
    return [m for m in _METRIC_ORDER if m in present] + sorted(present - set(_METRIC_ORDER))


def _class_labels(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics.groupby("class_id", as_index=False)["class_name"].first()


def per_class_table(metrics: pd.DataFrame, *, thresholds: Sequence[float] = SUCCESS_THRESHOLDS) -> pd.DataFrame:
    """One row per structure: mean, std, median of every metric and Dice success rates.

    Args:
        metrics: tidy metrics table (see :func:`load_metrics`).
        thresholds: Dice thresholds of the success rates (default 0.5, 0.7, 0.9).

    Returns:
        DataFrame sorted by mean Dice (best first) with columns ``class_id``, ``class_name``,
        ``n_cases`` (cases with a finite Dice: the structure is in the prediction or reference), ``<metric>_mean``, ``<metric>_std``, ``<metric>_median`` for each metric,
        ``dice>=<t>`` (fraction of cases with a finite Dice at or above ``t``) and
        ``n_nonfinite`` (values left out of the statistics).

    Example:
        >>> table = per_class_table(load_metrics("metrics.csv"))  # doctest: +SKIP
    """
    groups = metrics.groupby(["class_id", "metric"])["value"]
    stats = groups.agg(["mean", "std", "median"]).unstack("metric")
    out = _class_labels(metrics).set_index("class_id")
    dice_rows = metrics[metrics["metric"] == "dice"]
    out["n_cases"] = dice_rows.dropna(subset=["value"]).groupby("class_id")["case"].nunique()
    out["n_cases"] = out["n_cases"].fillna(0).astype(int)
    for metric in ordered_metrics(metrics):
        for stat in ("mean", "std", "median"):
            out[f"{metric}_{stat}"] = stats[(stat, metric)]
    dice = metrics[metrics["metric"] == "dice"].dropna(subset=["value"])
    for t in thresholds:
        out[f"dice>={t:g}"] = dice.assign(ok=dice["value"] >= t).groupby("class_id")["ok"].mean()
    out["n_nonfinite"] = metrics["value"].isna().groupby(metrics["class_id"]).sum().astype(int)
    out = out.reset_index().sort_values(["dice_mean", "class_id"], ascending=[False, True], na_position="last")
    return out.reset_index(drop=True)


def per_case_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per case: the mean over structures of every metric, sorted by mean Dice (best first).

    Returns:
        DataFrame with columns ``case``, ``n_classes`` and ``<metric>_mean`` for each metric.
    """
    wide = metrics.groupby(["case", "metric"])["value"].mean().unstack("metric")
    out = pd.DataFrame(index=wide.index)
    out["n_classes"] = metrics.groupby("case")["class_id"].nunique()
    for metric in ordered_metrics(metrics):
        out[f"{metric}_mean"] = wide[metric]
    out = out.reset_index().sort_values(["dice_mean", "case"], ascending=[False, True], na_position="last")
    return out.reset_index(drop=True)


def select_cases(metrics: pd.DataFrame, cases: int | Sequence[str], *, available: Sequence[str] | None = None) -> list[str]:
    """Choose cases to show: by count (best, median, worst by mean Dice) or by name.

    Args:
        metrics: tidy metrics table.
        cases: a count ``n`` (``n=1`` the median case, ``n=2`` best and worst, ``n=3`` best,
            median and worst, more: evenly spaced ranks), or a list of case names.
        available: restrict the choice to these cases (e.g. those with volumes on disk).

    Returns:
        Case names, best first when chosen by count.

    Raises:
        InputError: a named case is not in the table (with a did-you-mean).
    """
    from medrefine.errors import did_you_mean

    ranked = per_case_table(metrics)["case"].tolist()
    if available is not None:
        keep = set(map(str, available))
        ranked = [c for c in ranked if c in keep]
    if isinstance(cases, (int, np.integer)) and not isinstance(cases, bool):
        n = int(cases)
        if n < 0:
            raise ValueError(f"the number of cases must be >= 0, got {n}")
        if n == 0 or not ranked:
            return []
        if n >= len(ranked):
            return ranked
        if n == 1:
            return [ranked[(len(ranked) - 1) // 2]]
        picks = np.linspace(0, len(ranked) - 1, n).round().astype(int)
        return [ranked[i] for i in dict.fromkeys(picks.tolist())]
    names = [str(c) for c in cases]
    for c in names:
        if c not in ranked:
            raise InputError(f"case {c!r} is not among the cases with metrics{' and volumes' if available is not None else ''}.{did_you_mean(c, ranked)}")
    return names


def compare_table(metrics: pd.DataFrame, other: pd.DataFrame, *, name: str = "current", other_name: str = "other") -> pd.DataFrame:
    """Before/after table per structure: mean of each run, difference, and paired improvements.

    Args:
        metrics: tidy metrics of the run being reported (the "after", e.g. refined labels).
        other: tidy metrics of the run to compare against (the "before", e.g. noisy labels).
        name: name of ``metrics`` in the column headers.
        other_name: name of ``other`` in the column headers.

    Returns:
        DataFrame sorted by the Dice difference (largest gain first) with columns ``class_id``,
        ``class_name``, then for each metric present in both ``<metric> <other_name>``,
        ``<metric> <name>``, ``delta <metric>`` (``name`` minus ``other_name``), and
        ``n_paired`` / ``n_improved`` (cases where the Dice of ``name`` beats ``other_name``).

    Raises:
        ValueError: ``name`` equals ``other_name``.
    """
    if name == other_name:
        raise ValueError(f"`name` and `other_name` must differ to tell the runs apart, got {name!r} for both")
    shared = [m for m in ordered_metrics(metrics) if m in set(other["metric"])]
    labels = pd.concat([_class_labels(metrics), _class_labels(other)]).drop_duplicates("class_id").set_index("class_id")
    out = labels.copy()
    mean_a = metrics.groupby(["class_id", "metric"])["value"].mean().unstack("metric")
    mean_b = other.groupby(["class_id", "metric"])["value"].mean().unstack("metric")
    for metric in shared:
        out[f"{metric} {other_name}"] = mean_b[metric]
        out[f"{metric} {name}"] = mean_a[metric]
        out[f"delta {metric}"] = out[f"{metric} {name}"] - out[f"{metric} {other_name}"]
    key = ["case", "class_id"]
    paired = metrics[metrics["metric"] == "dice"][key + ["value"]].merge(
        other[other["metric"] == "dice"][key + ["value"]], on=key, suffixes=("_a", "_b")
    ).dropna()
    out["n_paired"] = paired.groupby("class_id").size()
    out["n_improved"] = (paired["value_a"] > paired["value_b"]).groupby(paired["class_id"]).sum()
    out[["n_paired", "n_improved"]] = out[["n_paired", "n_improved"]].fillna(0).astype(int)
    out = out.reset_index().sort_values(["delta dice", "class_id"], ascending=[False, True], na_position="last")
    return out.reset_index(drop=True)


def _fmt(value: float, metric: str) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.2f}" if metric in _UNITS else f"{value:.3f}"


def format_table(table: pd.DataFrame, *, kind: str = "per_class") -> tuple[list[str], list[list[str]]]:
    """Turn a table of this module into display strings (header, rows) for markdown or HTML.

    Args:
        table: output of :func:`per_class_table` (``kind="per_class"``), :func:`per_case_table`
            (``"per_case"``) or :func:`compare_table` (``"compare"``).
        kind: which of the three it is.

    Returns:
        ``(header, rows)``; per-class statistics read ``mean ± std`` and ``median``,
        success rates are percentages, distances carry ``mm``.

    Raises:
        ValueError: unknown ``kind``.
    """
    from medrefine.errors import did_you_mean

    kinds = ("per_class", "per_case", "compare")
    if kind not in kinds:
        raise ValueError(f"`kind` must be one of {kinds}, got {kind!r}.{did_you_mean(kind, kinds)}")
    unit = lambda m: f" ({_UNITS[m]})" if m in _UNITS else ""  # noqa: E731
    if kind == "per_class":
        metrics = [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]
        rates = [c for c in table.columns if c.startswith("dice>=")]
        header = ["#", "structure", "n"]
        for m in metrics:
            header += [f"{m}{unit(m)} mean ± std", f"{m} median"]
        header += [f"Dice ≥ {c[len('dice>='):]}" for c in rates]
        rows = []
        for _, r in table.iterrows():
            row = [str(int(r["class_id"])), str(r["class_name"]), str(int(r["n_cases"]))]
            for m in metrics:
                mean, std = r[f"{m}_mean"], r[f"{m}_std"]
                row.append(_fmt(mean, m) + (f" ± {_fmt(std, m)}" if np.isfinite(std) and np.isfinite(mean) else ""))
                row.append(_fmt(r[f"{m}_median"], m))
            row += ["–" if not np.isfinite(r[c]) else f"{100 * r[c]:.0f}%" for c in rates]
            rows.append(row)
        return header, rows
    if kind == "per_case":
        metrics = [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]
        header = ["case", "structures"] + [f"mean {m}{unit(m)}" for m in metrics]
        rows = [[str(r["case"]), str(int(r["n_classes"]))] + [_fmt(r[f"{m}_mean"], m) for m in metrics] for _, r in table.iterrows()]
        return header, rows
    value_cols = [c for c in table.columns if c not in ("class_id", "class_name", "n_paired", "n_improved")]
    metric_of = lambda c: c.split(" ", 1)[1] if c.startswith("delta ") else c.split(" ", 1)[0]  # noqa: E731
    header = ["#", "structure"] + [(f"Δ {c[6:]}" if c.startswith("delta ") else c) + unit(metric_of(c)) for c in value_cols]
    header += ["improved cases (Dice)"]
    rows = []
    for _, r in table.iterrows():
        row = [str(int(r["class_id"])), str(r["class_name"])]
        for c in value_cols:
            text = _fmt(r[c], metric_of(c))
            row.append(("+" + text) if c.startswith("delta ") and np.isfinite(r[c]) and r[c] > 0 else text)
        row.append(f"{int(r['n_improved'])}/{int(r['n_paired'])}")
        rows.append(row)
    return header, rows


def read_compare(compare: Mapping | pd.DataFrame | str | Path | None) -> dict[str, tuple[pd.DataFrame, Path | None]]:
    """Normalise the ``compare`` argument of :func:`medrefine.reports.write_report`.

    Accepted: ``None``; a DataFrame or CSV path (named ``"other"`` or after the file stem); a
    mapping ``name -> DataFrame | path``. Returns ``name -> (checked table, csv path or None)``.
    """
    if compare is None:
        return {}
    if isinstance(compare, (pd.DataFrame, str, Path)):
        compare = {(Path(compare).stem if isinstance(compare, (str, Path)) else "other"): compare}
    if not isinstance(compare, Mapping):
        raise TypeError(f"`compare` must be a mapping name -> DataFrame or CSV path, got {type(compare).__name__}")
    out: dict[str, tuple[pd.DataFrame, Path | None]] = {}
    for run_name, table in compare.items():
        path = Path(table) if isinstance(table, (str, Path)) else None
        out[str(run_name)] = (load_metrics(table, source=None if path else f"compare[{run_name!r}]"), path)
    return out

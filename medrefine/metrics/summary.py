"""Summaries of the tidy metrics table: per-class statistics, success rates, CSV in and out.

NaN handling is explicit: a NaN value (a structure in neither prediction nor reference, status
``absent_both``; or a distance when ``missing_distance_mm=nan``) is left out of every statistic and
counted in ``n_nan``; ``n`` is the number of values the statistic uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medrefine.metrics.binary import METRICS
from medrefine.metrics.case import COLUMNS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["REQUIRED_COLUMNS", "check_metrics_frame", "summarize", "success_rates", "write_metrics_csv", "read_metrics_csv"]

#: Columns a metrics table must have (``status`` is optional).
REQUIRED_COLUMNS: tuple[str, ...] = ("case", "class_id", "class_name", "metric", "value")


def check_metrics_frame(df: pd.DataFrame, name: str = "metrics") -> None:
    """Raise ``ValueError`` naming the missing columns when ``df`` is not a tidy metrics table."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"`{name}` must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"`{name}` lacks the columns {missing}; expected {list(REQUIRED_COLUMNS)}, got {list(df.columns)}")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per class and metric: mean, std, median, min, max over cases, NaN left out explicitly.

    Args:
        df: tidy metrics table (:func:`medrefine.metrics.compute_case_metrics` or
            :func:`medrefine.metrics.evaluate_pairs`).

    Returns:
        DataFrame with columns ``class_id, class_name, metric, mean, std, median, min, max, n,
        n_nan``: ``std`` is the sample standard deviation (``ddof=1``, NaN when ``n < 2``);
        statistics are NaN when ``n == 0``. Rows ordered by class id, then metric as in
        :data:`medrefine.metrics.METRICS`.

    Raises:
        ValueError: ``df`` lacks a required column.

    Example:
        >>> summarize(df).query("metric == 'dice'")[["class_name", "mean", "n"]]  # doctest: +SKIP
    """
    import pandas as pd

    check_metrics_frame(df, "df")
    rows = []
    for (class_id, class_name, metric), group in df.groupby(["class_id", "class_name", "metric"], sort=False):
        values = group["value"].to_numpy(dtype=float)
        valid = values[~np.isnan(values)]
        n = int(valid.size)
        rows.append(
            {
                "class_id": class_id,
                "class_name": class_name,
                "metric": metric,
                "mean": float(valid.mean()) if n else float("nan"),
                "std": float(valid.std(ddof=1)) if n > 1 else float("nan"),
                "median": float(np.median(valid)) if n else float("nan"),
                "min": float(valid.min()) if n else float("nan"),
                "max": float(valid.max()) if n else float("nan"),
                "n": n,
                "n_nan": int(values.size - n),
            }
        )
    out = pd.DataFrame(rows, columns=["class_id", "class_name", "metric", "mean", "std", "median", "min", "max", "n", "n_nan"])
    order = {m: i for i, m in enumerate(METRICS)}
    out = out.sort_values(["class_id", "metric"], key=lambda s: s.map(order).fillna(len(order)) if s.name == "metric" else s)
    return out.reset_index(drop=True)


def success_rates(
    df: pd.DataFrame,
    thresholds: Sequence[float] = (0.5, 0.7, 0.9),
    *,
    metric: str = "dice",
    by: Sequence[str] = ("class_id", "class_name"),
) -> pd.DataFrame:
    """Share of cases whose ``metric`` reaches each threshold (``value >= t``), per group.

    Cases with a NaN value (the structure is in neither volume) are left out of the denominator
    and counted in ``n_nan``.

    Args:
        df: tidy metrics table.
        thresholds: success thresholds; default Dice >= 0.5, 0.7, 0.9 (as seed 001 reports).
        metric: which metric to threshold.
        by: grouping columns; ``()`` gives one overall row over all case-class pairs, ``("case",)``
            one row per case.

    Returns:
        DataFrame with the ``by`` columns, ``n``, ``n_nan`` and one column per threshold named
        ``"<metric>>=<t>"`` (e.g. ``"dice>=0.7"``) holding a share in [0, 1] (NaN when ``n == 0``).

    Raises:
        ValueError: missing columns, unknown ``metric`` or ``by`` column, or a threshold that is not
            a finite number.
    """
    import pandas as pd

    from medrefine.errors import did_you_mean

    check_metrics_frame(df, "df")
    by = list(by)
    for column in by:
        if column not in df.columns:
            raise ValueError(f"`by` column {column!r} is not in the table {list(df.columns)}.{did_you_mean(column, df.columns)}")
    known = sorted(set(df["metric"].unique()))
    if metric not in known:
        raise ValueError(f"`metric` {metric!r} is not in the table, which holds {known}.{did_you_mean(metric, known)}")
    thresholds = [float(t) for t in thresholds]
    if not thresholds or not all(np.isfinite(t) for t in thresholds):
        raise ValueError(f"`thresholds` must be finite numbers, got {thresholds}")

    sub = df[df["metric"] == metric]
    groups = sub.groupby(by, sort=True) if by else [((), sub)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        values = group["value"].to_numpy(dtype=float)
        valid = values[~np.isnan(values)]
        row = dict(zip(by, key))
        row["n"] = int(valid.size)
        row["n_nan"] = int(values.size - valid.size)
        for t in thresholds:
            row[f"{metric}>={t:g}"] = float(np.mean(valid >= t)) if valid.size else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, "n", "n_nan", *(f"{metric}>={t:g}" for t in thresholds)])


def write_metrics_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a tidy metrics table to CSV atomically (never a half-written file).

    Args:
        df: tidy metrics table.
        path: destination ``.csv``; parent folders are created.

    Returns:
        The path written.

    Raises:
        ValueError: ``df`` lacks a required column.
    """
    from medrefine.io import atomic_write

    check_metrics_frame(df, "df")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [c for c in COLUMNS if c in df.columns] + [c for c in df.columns if c not in COLUMNS]
    with atomic_write(path) as tmp:
        df[columns].to_csv(tmp, index=False, float_format="%.8g")
    return path


def read_metrics_csv(path: str | Path) -> pd.DataFrame:
    """Read a metrics CSV written by :func:`write_metrics_csv` (``case`` kept as text).

    Raises:
        InputError: the file is missing, unreadable or lacks the tidy columns (naming the file).
    """
    import pandas as pd

    from medrefine.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: metrics CSV not found")
    try:
        df = pd.read_csv(path, dtype={"case": str, "class_name": str, "metric": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable CSV ({err})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: lacks the columns {missing}; expected {list(REQUIRED_COLUMNS)}, got {list(df.columns)}")
    return df

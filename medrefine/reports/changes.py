"""What got worse in a run: structures whose Dice dropped or that vanished, and the case to show in 3D.

A mean Dice gain over a cohort can hide a structure the refinement erased in one case (Dice 1 -> 0
moves a mean over 40 structures by 0.025). The report therefore opens with the list of
(case, structure) pairs that got worse, computed here from the tidy metrics tables:

- **vanished**: the structure is in the reference but not in the result (``status`` column
  ``absent_pred``, see :mod:`medrefine.metrics.binary`); when the reference is the input label
  (a report of refined vs input), that is a structure the refinement erased;
- **dropped**: the Dice of the result is more than ``tolerance`` below the Dice of a compared run
  (the "before") in the same case.

Tables without a ``status`` column (older CSVs) still show drops, and a Dice of 0 after a
positive Dice before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["DICE_TOLERANCE", "worse_table", "worst_case"]

#: Dice drops up to this size are noise (a few boundary voxels), not "worse".
DICE_TOLERANCE = 0.01


def _dice(metrics: pd.DataFrame) -> pd.DataFrame:
    rows = metrics[metrics["metric"] == "dice"]
    columns = ["case", "class_id", "class_name", "value"] + (["status"] if "status" in rows.columns else [])
    return rows[columns].drop_duplicates(["case", "class_id"]).set_index(["case", "class_id"])


def worse_table(metrics: pd.DataFrame, before: Mapping[str, pd.DataFrame] | None = None, *,
                tolerance: float = DICE_TOLERANCE) -> pd.DataFrame:
    """The (case, structure) pairs that got worse: vanished from the result, or a Dice drop.

    Args:
        metrics: tidy metrics of the result (``case, class_id, class_name, metric, value``
            and, when known, ``status``).
        before: compared runs, ``name -> tidy metrics`` (e.g. ``{"input": ...}``); a drop is
            counted against each of them.
        tolerance: Dice drops up to this size are ignored (default 0.01).

    Returns:
        DataFrame with columns ``case``, ``class_id``, ``class_name``, ``change``
        (``"vanished"`` or ``"dropped"``), ``compared_to`` (the run the drop is measured
        against, or ``""``), ``dice_before`` (NaN when there is no compared run) and
        ``dice_after``; one row per (case, structure): a vanished structure is one row with the
        largest drop; vanished rows first, then by drop size, largest first.

    Raises:
        ValueError: ``tolerance`` is negative.

    Example:
        >>> worse_table(refined, {"input": noisy})[["case", "class_name", "change"]]  # doctest: +SKIP
    """
    if not tolerance >= 0:
        raise ValueError(f"`tolerance` must be >= 0, got {tolerance}")
    after = _dice(metrics)
    rows: dict[tuple[str, int], dict] = {}
    if "status" in after.columns:
        for (case, class_id), r in after[after["status"] == "absent_pred"].iterrows():
            rows[(case, class_id)] = dict(case=case, class_id=int(class_id), class_name=r["class_name"], change="vanished",
                                          compared_to="", dice_before=np.nan, dice_after=float(r["value"]))
    for name, other in (before or {}).items():
        paired = after.join(_dice(other)[["value"]].rename(columns={"value": "before"}), how="inner").dropna(subset=["value", "before"])
        drop = paired[paired["value"] < paired["before"] - tolerance]
        for (case, class_id), r in drop.iterrows():
            key = (case, class_id)
            vanished = key in rows and rows[key]["change"] == "vanished" or (r["value"] == 0 and "status" not in after.columns)
            old = rows.get(key)
            if old is not None and np.isfinite(old["dice_before"]) and old["dice_before"] - old["dice_after"] >= r["before"] - r["value"]:
                continue
            rows[key] = dict(case=case, class_id=int(class_id), class_name=r["class_name"],
                             change="vanished" if vanished else "dropped", compared_to=str(name),
                             dice_before=float(r["before"]), dice_after=float(r["value"]))
    columns = ["case", "class_id", "class_name", "change", "compared_to", "dice_before", "dice_after"]
    table = pd.DataFrame(list(rows.values()), columns=columns)
    if table.empty:
        return table
    table["_drop"] = (table["dice_before"] - table["dice_after"]).fillna(np.inf)
    table = table.sort_values(["change", "_drop", "case", "class_id"], ascending=[False, False, True, True])
    return table.drop(columns="_drop").reset_index(drop=True)


def worst_case(metrics: pd.DataFrame, before: pd.DataFrame | None = None, *, available: Sequence[str] | None = None) -> str | None:
    """The case to show in 3D: most structures vanished, then the lowest mean Dice change against
    ``before`` (the largest loss), else the lowest mean Dice.

    Args:
        metrics: tidy metrics of the result.
        before: tidy metrics of a compared run (the "before"), or None.
        available: only these cases (e.g. those with volumes); default all.

    Returns:
        The case name, or None when no case qualifies. Ties go to the first case name.
    """
    after = metrics[metrics["metric"] == "dice"].groupby("case")["value"].mean()
    if before is not None:
        paired = metrics[metrics["metric"] == "dice"].merge(before[before["metric"] == "dice"], on=["case", "class_id"],
                                                            suffixes=("", "_before")).dropna(subset=["value", "value_before"])
        change = (paired["value"] - paired["value_before"]).groupby(paired["case"]).mean()
        score = change.reindex(after.index).fillna(after - 1.0)
    else:
        score = after
    score = score.dropna()
    if available is not None:
        score = score[score.index.isin(set(map(str, available)))]
    if score.empty:
        return None
    vanished = pd.Series(0, index=score.index)
    if "status" in metrics.columns:
        rows = metrics[(metrics["metric"] == "dice") & (metrics["status"] == "absent_pred")]
        vanished = rows.groupby("case")["class_id"].nunique().reindex(score.index).fillna(0)
    ranked = pd.DataFrame({"vanished": -vanished, "score": score}).sort_index(kind="stable")
    return str(ranked.sort_values(["vanished", "score"], kind="stable").index[0])

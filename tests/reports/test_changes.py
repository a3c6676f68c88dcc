"""Tests of medrefine.reports.changes: what got worse, and the case shown in 3D."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medrefine.reports.changes import worse_table, worst_case


def dice_table(values: dict[str, list[float]], status: dict[tuple[str, int], str] | None = None) -> pd.DataFrame:
    """Tidy Dice rows: ``values[case]`` = Dice of structures 1 (lv), 2 (rv), 3 (myo)."""
    rows = []
    for case, dice in values.items():
        for class_id, (name, value) in enumerate(zip(["lv", "rv", "myo"], dice), start=1):
            rows.append((case, class_id, name, "dice", value, (status or {}).get((case, class_id), "present")))
    return pd.DataFrame(rows, columns=["case", "class_id", "class_name", "metric", "value", "status"])


BEFORE = dice_table({"a": [0.80, 0.70, 0.60], "b": [0.80, 0.70, 0.90], "c": [0.50, 0.50, 0.50]})
# after: a improves everywhere, b loses myo entirely (erased) and rv by 0.005 (noise), c loses lv by 0.2
AFTER = dice_table({"a": [0.90, 0.85, 0.75], "b": [0.95, 0.695, 0.0], "c": [0.30, 0.90, 0.90]}, status={("b", 3): "absent_pred"})


def test_vanished_first_then_drops_beyond_tolerance():
    table = worse_table(AFTER, {"input": BEFORE})
    assert table[["case", "class_name", "change", "compared_to"]].values.tolist() == [
        ["b", "myo", "vanished", "input"], ["c", "lv", "dropped", "input"]]
    np.testing.assert_allclose(table[["dice_before", "dice_after"]].to_numpy(), [[0.90, 0.0], [0.50, 0.30]])
    # the mean over all pairs still rises: the box exists because of that
    assert AFTER["value"].mean() > BEFORE["value"].mean()


def test_tolerance_and_largest_drop_over_runs():
    assert len(worse_table(AFTER, {"input": BEFORE}, tolerance=0.0)) == 3  # b rv 0.700 -> 0.695 counts now
    other = BEFORE.assign(value=np.where((BEFORE["case"] == "c") & (BEFORE["class_id"] == 1), 0.95, BEFORE["value"]))
    row = worse_table(AFTER, {"input": BEFORE, "noisy": other}).iloc[1]
    assert (row["compared_to"], row["dice_before"]) == ("noisy", 0.95)
    with pytest.raises(ValueError, match="`tolerance` must be >= 0, got -0.1"):
        worse_table(AFTER, tolerance=-0.1)


def test_vanished_without_compared_run_and_without_status():
    alone = worse_table(AFTER)
    assert alone[["case", "class_name", "change"]].values.tolist() == [["b", "myo", "vanished"]]
    assert np.isnan(alone["dice_before"].iloc[0])
    # an older CSV without status: a Dice of 0 after a positive Dice before is a vanished structure
    old = worse_table(AFTER.drop(columns="status"), {"input": BEFORE.drop(columns="status")})
    assert old["change"].tolist() == ["vanished", "dropped"]
    assert worse_table(AFTER.drop(columns="status")).empty


def test_worst_case_by_change_else_lowest_dice():
    # mean change: a +0.133, b (0.15 - 0.005 - 0.9) / 3 = -0.252, c +0.2
    assert worst_case(AFTER, BEFORE) == "b"
    assert worst_case(BEFORE) == "c"  # no compared run: lowest mean Dice (0.500)
    assert worst_case(AFTER, BEFORE, available=["a", "c"]) == "a"
    # a case where a structure vanished comes first, even when its mean gained most
    gained = AFTER.assign(status=np.where((AFTER["case"] == "c") & (AFTER["class_id"] == 2), "absent_pred", "present"))
    assert worst_case(gained, BEFORE) == "c"
    assert worst_case(AFTER, available=["zzz"]) is None

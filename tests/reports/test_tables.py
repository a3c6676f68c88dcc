"""Tests of medrefine.reports.tables: loading, per-class/per-case/compare tables, case choice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medrefine.errors import InputError
from medrefine.reports.tables import (
    compare_table,
    drop_absent_classes,
    format_table,
    load_metrics,
    per_case_table,
    per_class_table,
    select_cases,
)


def test_load_metrics_missing_columns_names_file_and_columns(tmp_path, metrics):
    path = tmp_path / "bad.csv"
    metrics.drop(columns=["class_name", "metric"]).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"bad\.csv: missing column\(s\) class_name, metric"):
        load_metrics(path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda df: df.assign(value="high"), "column `value` must be numeric, got 'high'"),
        (lambda df: df[df["metric"] != "dice"], "no `dice` rows"),
        (lambda df: df.iloc[:0], "has no rows"),
    ],
)
def test_load_metrics_rejects_bad_tables(metrics, mutate, message):
    with pytest.raises(InputError, match=message):
        load_metrics(mutate(metrics), source="m.csv")


def test_load_metrics_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.csv: metrics file not found"):
        load_metrics(tmp_path / "nope.csv")


def test_load_metrics_types_and_nonfinite(tmp_path, metrics):
    metrics.loc[1, "value"] = np.inf
    path = tmp_path / "m.csv"
    metrics.assign(status="present").to_csv(path, index=False)
    df = load_metrics(path)
    assert df["class_id"].dtype.kind == "i" and df["value"].dtype == float
    assert np.isnan(df.loc[1, "value"])  # infinite distances become NaN (left out of means)
    assert "status" in df.columns  # extra columns are kept


def test_load_metrics_keeps_case_ids_as_text(tmp_path, metrics):
    path = tmp_path / "m.csv"
    metrics.assign(case=metrics["case"].map({"case_a": "001", "case_b": "002", "case_c": "010"})).to_csv(path, index=False)
    assert sorted(load_metrics(path)["case"].unique()) == ["001", "002", "010"]


def test_per_class_table_values(metrics):
    table = per_class_table(load_metrics(metrics))
    assert table["class_name"].tolist() == ["liver", "kidney", "aorta"]  # mean Dice 0.9, 0.55, 0.483
    liver = table.iloc[0]
    assert liver["dice_mean"] == pytest.approx(0.9)
    assert liver["dice_std"] == pytest.approx(0.1)
    assert liver["dice_median"] == pytest.approx(0.9)
    assert liver["hd95_mean"] == pytest.approx(1.0)
    aorta = table.set_index("class_name").loc["aorta"]
    assert aorta["dice>=0.5"] == pytest.approx(1 / 3)
    assert aorta["dice>=0.9"] == pytest.approx(1 / 3)
    assert table.set_index("class_name").loc["kidney", "dice>=0.5"] == pytest.approx(2 / 3)
    assert (table["n_cases"] == 3).all()


def test_per_class_table_leaves_out_nan(metrics):
    metrics.loc[(metrics["class_name"] == "liver") & (metrics["case"] == "case_a"), "value"] = np.nan
    liver = per_class_table(load_metrics(metrics)).set_index("class_name").loc["liver"]
    assert liver["dice_mean"] == pytest.approx(0.95)
    assert liver["n_cases"] == 2 and liver["n_nonfinite"] == 2


def test_per_case_table_sorted_by_mean_dice(metrics):
    table = per_case_table(load_metrics(metrics))
    assert table["case"].tolist() == ["case_c", "case_b", "case_a"]
    assert table.iloc[0]["dice_mean"] == pytest.approx((1.0 + 0.65 + 0.95) / 3)


def test_select_cases(metrics):
    df = load_metrics(metrics)
    assert select_cases(df, 3) == ["case_c", "case_b", "case_a"]  # best, median, worst
    assert select_cases(df, 1) == ["case_b"]
    assert select_cases(df, 2) == ["case_c", "case_a"]
    assert select_cases(df, 0) == []
    assert select_cases(df, 3, available=["case_a", "case_b"]) == ["case_b", "case_a"]
    assert select_cases(df, ["case_a"]) == ["case_a"]
    with pytest.raises(InputError, match="Did you mean 'case_a'"):
        select_cases(df, ["case_aa"])


def test_compare_table_deltas_and_improvements(metrics):
    before = metrics.copy()
    before.loc[before["metric"] == "dice", "value"] -= 0.1
    before.loc[(before["class_name"] == "aorta") & (before["case"] == "case_c") & (before["metric"] == "dice"), "value"] = 0.99
    table = compare_table(load_metrics(metrics), load_metrics(before), name="refined", other_name="noisy").set_index("class_name")
    assert table.loc["liver", "dice noisy"] == pytest.approx(0.8)
    assert table.loc["liver", "dice refined"] == pytest.approx(0.9)
    assert table.loc["liver", "delta dice"] == pytest.approx(0.1)
    assert table.loc["liver", "n_improved"] == 3 and table.loc["aorta", "n_improved"] == 2
    assert table.loc["aorta", "n_paired"] == 3
    with pytest.raises(ValueError, match="must differ"):
        compare_table(metrics, before, name="x", other_name="x")


def test_drop_absent_classes(metrics):
    extra = pd.DataFrame([(c, 9, "thyroid", m, np.nan) for c in ["case_a", "case_b"] for m in ("dice", "hd95")], columns=metrics.columns)
    kept, absent = drop_absent_classes(load_metrics(pd.concat([metrics, extra])))
    assert absent == ["thyroid"] and 9 not in set(kept["class_id"])


def test_format_table_strings(metrics):
    header, rows = format_table(per_class_table(load_metrics(metrics)))
    assert header[:3] == ["#", "structure", "n"] and "Dice ≥ 0.9" in header
    assert rows[0][:5] == ["1", "liver", "3", "0.900 ± 0.100", "0.900"]
    assert rows[0][-1] == "67%"
    with pytest.raises(ValueError, match="Did you mean 'per_case'"):
        format_table(per_class_table(load_metrics(metrics)), kind="per_cas")

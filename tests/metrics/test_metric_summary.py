"""Tests of medrefine.metrics.summary on hand-made tables (named to stay distinct from other areas' tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medrefine.errors import InputError
from medrefine.metrics import read_metrics_csv, success_rates, summarize, write_metrics_csv

NAN = float("nan")


@pytest.fixture()
def table() -> pd.DataFrame:
    rows = []
    dice_liver = [0.4, 0.8, NAN, 0.6]  # case_2: liver in neither volume
    dice_spleen = [0.95, 0.5, 0.7, 0.69]
    hd_liver = [10.0, 2.0, NAN, 4.0]
    for i in range(4):
        case = f"case_{i}"
        status = "absent_both" if i == 2 else "present"
        rows.append((case, 1, "liver", "dice", dice_liver[i], status))
        rows.append((case, 1, "liver", "hd95", hd_liver[i], status))
        rows.append((case, 2, "spleen", "dice", dice_spleen[i], "present"))
    return pd.DataFrame(rows, columns=["case", "class_id", "class_name", "metric", "value", "status"])


def test_summarize_values(table):
    out = summarize(table)
    assert list(out.columns) == ["class_id", "class_name", "metric", "mean", "std", "median", "min", "max", "n", "n_nan"]
    assert out[["class_id", "metric"]].values.tolist() == [[1, "dice"], [1, "hd95"], [2, "dice"]]
    liver = out.iloc[0]
    assert liver["mean"] == pytest.approx(0.6)
    assert liver["std"] == pytest.approx(0.2)  # sample std of 0.4, 0.8, 0.6
    assert liver["median"] == pytest.approx(0.6)
    assert (liver["min"], liver["max"], liver["n"], liver["n_nan"]) == (pytest.approx(0.4), pytest.approx(0.8), 3, 1)
    hd = out.iloc[1]
    assert hd["mean"] == pytest.approx(16 / 3) and hd["median"] == 4.0
    spleen = out.iloc[2]
    assert spleen["mean"] == pytest.approx(np.mean([0.95, 0.5, 0.7, 0.69])) and spleen["n_nan"] == 0


def test_summarize_all_nan_and_single_value():
    df = pd.DataFrame(
        [("a", 1, "x", "dice", NAN), ("b", 1, "x", "dice", NAN), ("a", 2, "y", "dice", 0.3)],
        columns=["case", "class_id", "class_name", "metric", "value"],
    )
    out = summarize(df).set_index("class_id")
    assert np.isnan(out.loc[1, "mean"]) and out.loc[1, "n"] == 0 and out.loc[1, "n_nan"] == 2
    assert out.loc[2, "mean"] == 0.3 and np.isnan(out.loc[2, "std"])


def test_success_rates_per_class(table):
    out = success_rates(table)
    assert list(out.columns) == ["class_id", "class_name", "n", "n_nan", "dice>=0.5", "dice>=0.7", "dice>=0.9"]
    liver, spleen = out.iloc[0], out.iloc[1]
    assert (liver["n"], liver["n_nan"]) == (3, 1)
    assert liver["dice>=0.5"] == pytest.approx(2 / 3)  # 0.8, 0.6 of 0.4, 0.8, 0.6
    assert liver["dice>=0.7"] == pytest.approx(1 / 3)
    assert liver["dice>=0.9"] == 0.0
    assert spleen["dice>=0.5"] == 1.0  # 0.5 counts: >=
    assert spleen["dice>=0.7"] == pytest.approx(2 / 4)  # 0.95, 0.7 (0.69 fails)
    assert spleen["dice>=0.9"] == pytest.approx(1 / 4)


def test_success_rates_overall_and_per_case(table):
    overall = success_rates(table, by=())
    assert overall.iloc[0]["n"] == 7 and overall.iloc[0]["dice>=0.7"] == pytest.approx(3 / 7)  # 0.8, 0.95, 0.7
    per_case = success_rates(table, thresholds=(0.6,), by=("case",)).set_index("case")
    assert per_case.loc["case_2", "dice>=0.6"] == 1.0 and per_case.loc["case_2", "n"] == 1
    assert per_case.loc["case_0", "dice>=0.6"] == 0.5
    hd = success_rates(table, thresholds=(5,), metric="hd95")
    assert "hd95>=5" in hd.columns


def test_errors(table):
    with pytest.raises(ValueError, match=r"lacks the columns \['value'\]"):
        summarize(table.drop(columns="value"))
    with pytest.raises(ValueError, match="`metric` 'dise' is not in the table.*Did you mean 'dice'"):
        success_rates(table, metric="dise")
    with pytest.raises(ValueError, match="`by` column 'klass' is not in the table"):
        success_rates(table, by=("klass",))
    with pytest.raises(ValueError, match="`thresholds` must be finite numbers"):
        success_rates(table, thresholds=(float("inf"),))
    with pytest.raises(TypeError, match="must be a pandas DataFrame, got dict"):
        summarize({"value": [1]})  # type: ignore[arg-type]


def test_csv_round_trip(table, tmp_path):
    table = table.assign(case=["001"] * 3 + ["002"] * 3 + ["003"] * 3 + ["004"] * 3)
    path = write_metrics_csv(table, tmp_path / "sub" / "metrics.csv")
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == ["metrics.csv"]
    back = read_metrics_csv(path)
    assert back["case"].tolist() == table["case"].tolist()  # "001" stays text
    np.testing.assert_allclose(back["value"], table["value"], equal_nan=True)
    assert path.read_text().splitlines()[0] == "case,class_id,class_name,metric,value,status"
    with pytest.raises(InputError, match="metrics CSV not found"):
        read_metrics_csv(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"bad.csv: lacks the columns"):
        read_metrics_csv(bad)

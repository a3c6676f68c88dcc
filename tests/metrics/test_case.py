"""Tests of medrefine.metrics.compute_case_metrics: table shape, classes, cropping, errors."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from medrefine.metrics import COLUMNS, METRICS, binary_metrics, compute_case_metrics, resolve_classes

SPACING = (0.8, 1.2, 2.5)


def label_map() -> tuple[np.ndarray, np.ndarray]:
    """Two 3-class label maps; class 3 only in the reference, class 1 touches the array border."""
    ref = np.zeros((24, 20, 12), np.uint8)
    pred = np.zeros_like(ref)
    ref[0:6, 0:5, 0:4] = 1
    pred[0:7, 0:5, 0:3] = 1
    ref[10:18, 8:16, 4:10] = 2
    pred[11:19, 9:16, 4:9] = 2
    ref[20:23, 2:5, 8:11] = 3
    pred[3:5, 15:18, 9:11] = 4  # only in the prediction
    return pred, ref


def test_table_columns_and_order():
    pred, ref = label_map()
    df = compute_case_metrics(pred, ref, spacing=SPACING, classes={1: "a", 2: "b", 3: "c", 4: "d", 5: "e"}, case="c1")
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 5 * len(METRICS)
    assert df["case"].eq("c1").all()
    assert df["class_id"].tolist() == [c for c in range(1, 6) for _ in METRICS]
    assert df["metric"].tolist() == list(METRICS) * 5
    status = df.groupby("class_id")["status"].first().to_dict()
    assert status == {1: "present", 2: "present", 3: "absent_pred", 4: "absent_ref", 5: "absent_both"}
    assert df.loc[df["class_id"] == 5, "value"].isna().all()
    assert df["value"].dtype == float


def test_equals_full_volume_binary_metrics():
    """Cropping each class to its box (plus one voxel) gives the full-volume values exactly."""
    pred, ref = label_map()
    df = compute_case_metrics(pred, ref, spacing=SPACING, classes=5, nsd_tolerance_mm=1.3)
    diagonal = float(np.linalg.norm(np.array(ref.shape) * np.array(SPACING)))
    for class_id in range(1, 5):
        expected, status = binary_metrics(
            pred == class_id, ref == class_id, spacing=SPACING, nsd_tolerance_mm=1.3, missing_distance_mm=diagonal
        )
        got = df[df["class_id"] == class_id].set_index("metric")["value"].to_dict()
        assert got == pytest.approx(expected), class_id
        assert (df.loc[df["class_id"] == class_id, "status"] == status).all()


def test_missing_distance_is_full_volume_diagonal():
    pred, ref = label_map()
    df = compute_case_metrics(pred, ref, spacing=SPACING, classes={3: "c"})
    values = df.set_index("metric")["value"]
    assert values["hd95"] == pytest.approx(np.linalg.norm(np.array([24, 20, 12]) * np.array(SPACING)))
    assert values["dice"] == 0.0 and values["nsd"] == 0.0
    df = compute_case_metrics(pred, ref, spacing=SPACING, classes={3: "c"}, missing_distance_mm=float("nan"))
    assert df.set_index("metric")["value"][["hd95", "assd"]].isna().all()


def test_identical_maps():
    _, ref = label_map()
    df = compute_case_metrics(ref, ref, spacing=SPACING)
    assert sorted(df["class_id"].unique()) == [1, 2, 3]
    wide = df.pivot(index="class_id", columns="metric", values="value")
    assert (wide["dice"] == 1).all() and (wide["hd95"] == 0).all() and (wide["nsd"] == 1).all()


def test_background_not_scored_and_names():
    pred, ref = label_map()
    df = compute_case_metrics(pred, ref, spacing=SPACING, classes={0: "background", 1: "liver", 2: "spleen"})
    assert 0 not in set(df["class_id"])
    names = df.groupby("class_id")["class_name"].first().to_dict()
    assert names[1] == "liver" and names[2] == "spleen"
    # values found but missing from the table are not scored
    assert sorted(names) == [1, 2]


def test_unknown_values_logged(caplog):
    pred, ref = label_map()
    with caplog.at_level(logging.WARNING, logger="medrefine.metrics.case"):
        df = compute_case_metrics(pred, ref, spacing=SPACING, classes={1: "liver"})
    assert "label values [2, 3, 4] are not in the class table: not scored" in caplog.text
    assert df["class_id"].unique().tolist() == [1]


def test_class_count_and_none():
    assert resolve_classes(3) == {1: "class_1", 2: "class_2"}
    assert resolve_classes(None, [0, 5, 2]) == {2: "class_2", 5: "class_5"}
    assert resolve_classes({0: "bg", 2: "b"}, [1]) == {2: "b"}
    pred, ref = label_map()
    with pytest.raises(ValueError, match=r"`classes` is 3 \(values 0..2\), but the labels hold values \[3, 4\]"):
        compute_case_metrics(pred, ref, spacing=SPACING, classes=3)
    with pytest.raises(TypeError, match="`classes` must be a dict"):
        resolve_classes("liver")  # type: ignore[arg-type]


def test_metric_subset():
    pred, ref = label_map()
    df = compute_case_metrics(pred, ref, spacing=SPACING, metrics=("hd95", "dice"))
    assert df["metric"].unique().tolist() == ["dice", "hd95"]


def test_input_types_and_errors():
    pred, ref = label_map()
    df_int = compute_case_metrics(pred, ref, spacing=SPACING)
    df_float = compute_case_metrics(pred.astype(np.float32), ref.astype(np.int64), spacing=SPACING)
    pd.testing.assert_frame_equal(df_int, df_float)
    with pytest.raises(TypeError, match="`pred` must hold integer label values, got dtype float64"):
        compute_case_metrics(pred + 0.5, ref, spacing=SPACING)
    with pytest.raises(ValueError, match="`ref` label values must be >= 0, got minimum -1"):
        compute_case_metrics(pred, ref.astype(np.int8) - 1, spacing=SPACING)
    with pytest.raises(ValueError, match=r"same shape, got \(24, 20, 12\) and \(24, 20, 11\)"):
        compute_case_metrics(pred, ref[..., :11], spacing=SPACING)
    with pytest.raises(ValueError, match="`spacing` must have 3 positive values"):
        compute_case_metrics(pred, ref, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="unknown metric 'dise'.*Did you mean 'dice'"):
        compute_case_metrics(pred, ref, spacing=SPACING, metrics=("dise",))


def test_many_classes_is_fast():
    """60 small structures in a 64^3 volume: cropping keeps this well under a second."""
    import time

    rng = np.random.default_rng(0)
    ref = np.zeros((64, 64, 64), np.uint8)
    for c in range(1, 61):
        x, y, z = rng.integers(0, 58, 3)
        ref[x : x + 6, y : y + 6, z : z + 6] = c
    pred = np.roll(ref, 1, axis=0)
    start = time.perf_counter()
    df = compute_case_metrics(pred, ref, spacing=1.0)
    assert time.perf_counter() - start < 5.0
    assert df["class_id"].nunique() == 60

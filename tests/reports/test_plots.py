"""Tests of medrefine.reports.plots: ranking chart, box plots, histograms, before/after chart."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from medrefine.reports.plots import box_plots, compare_plot, distribution_plots, ranking_chart
from medrefine.reports.tables import load_metrics


def png_size(path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])


def many_classes(metrics_factory, count: int):
    rng = np.random.default_rng(0)
    dice = {(c, f"structure_{c}"): list(rng.uniform(0.3, 1.0, 3)) for c in range(1, count + 1)}
    return load_metrics(metrics_factory(dice))


def test_ranking_height_grows_with_structures(tmp_path, metrics_factory):
    few = ranking_chart(many_classes(metrics_factory, 5), tmp_path / "few.png")
    many = ranking_chart(many_classes(metrics_factory, 117), tmp_path / "many.png")
    (w_few, h_few), (w_many, h_many) = png_size(few), png_size(many)
    assert w_few == w_many
    assert h_many > 2500 and h_many - h_few > 0.2 * 100 * 100  # ~0.24 inch per structure


def test_ranking_unknown_metric(tmp_path, metrics):
    with pytest.raises(ValueError, match="`metric` 'nsd' is not in the metrics table"):
        ranking_chart(load_metrics(metrics), tmp_path / "r.png", metric="nsd")


def test_box_distribution_and_compare_plots(tmp_path, metrics):
    df = load_metrics(metrics)
    before = df.assign(value=df["value"] * 0.9)
    for out in (box_plots(df, tmp_path / "box.png"), distribution_plots(df, tmp_path / "dist.png"),
                compare_plot(df, before, tmp_path / "cmp.png", name="refined", other_name="noisy"),
                ranking_chart(df, tmp_path / "hd.png", metric="hd95")):
        assert out.is_file() and min(png_size(out)) > 200
    with pytest.raises(ValueError, match="not in the metrics of 'noisy'"):
        compare_plot(df, before[before["metric"] == "dice"], tmp_path / "x.png", other_name="noisy", metric="hd95")

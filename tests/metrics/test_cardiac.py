from __future__ import annotations

import numpy as np
import pytest

from medrefine.metrics.cardiac import cardiac_function, ejection_fraction, frame_dice, frame_metrics, volume_curves


def _ellipsoid(shape, radii_vox):
    grid = np.indices(shape, dtype=np.float64)
    c = (np.asarray(shape) - 1) / 2
    return sum(((g - ci) / r) ** 2 for g, ci, r in zip(grid, c, radii_vox)) <= 1.0


def test_volume_and_ef_of_analytic_ellipsoids():
    spacing = (0.5, 0.5, 0.5)
    frames = [(20, 16, 24), (14, 12, 20)]  # ED and ES semi-axes in voxels
    label = np.stack([_ellipsoid((50, 40, 56), r).astype(np.uint8) for r in frames], axis=-1)
    curves = volume_curves(label, spacing)
    exact = [4 / 3 * np.pi * np.prod(np.asarray(r) * 0.5) / 1000 for r in frames]
    assert curves["left_ventricle"] == pytest.approx(exact, rel=0.02)
    function = cardiac_function(curves)
    assert function["ed_frame"] == 0 and function["es_frame"] == 1
    assert function["lv_ef"] == pytest.approx(100 * (exact[0] - exact[1]) / exact[0], abs=1.0)
    assert ejection_fraction(100.0, 40.0) == pytest.approx(60.0)


def test_mass_and_frame_scores():
    label = np.zeros((6, 6, 4, 2), np.uint8)
    label[1:5, 1:5, 1:3] = 2
    f = cardiac_function({"left_ventricle": np.array([2.0, 1.0]), "myocardium": np.array([10.0, 10.0])})
    assert f["myocardial_mass_g"] == pytest.approx(10.5)
    dice = frame_dice(label.transpose(3, 0, 1, 2), label.transpose(3, 0, 1, 2), [2, 3])
    assert dice[2] == [1.0, 1.0] and np.isnan(dice[3]).all()
    table = frame_metrics(label, label, (1.0, 1.0, 2.0))
    assert set(table.columns) >= {"frame", "structure", "dice", "hd95", "status"} and len(table) == 6
    with pytest.raises(ValueError, match=r"\(X, Y, Z, T\)"):
        volume_curves(label[..., 0], (1, 1, 1))

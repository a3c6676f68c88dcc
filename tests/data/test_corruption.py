"""Tests of medrefine.data.corruption.corrupt_label: an imitation of an imperfect annotator."""

from __future__ import annotations

import time

import numpy as np
import pytest

from medrefine.data.corruption import (
    SEVERITY_LEVELS,
    _morphology,
    _sparse_slices,
    _thin_classes,
    corrupt_label,
    corruption_params,
)
from medrefine.data.phantoms import make_cardiac_phantom
from medrefine.errors import InputError


def mean_foreground_dice(pred: np.ndarray, ref: np.ndarray, num_classes: int = 11) -> float:
    scores = []
    for c in range(1, num_classes):
        a, b = pred == c, ref == c
        total = a.sum() + b.sum()
        if total:
            scores.append(2.0 * np.logical_and(a, b).sum() / total)
    return float(np.mean(scores))


@pytest.fixture(scope="module")
def phantoms48():
    return [make_cardiac_phantom(48, seed=seed)[1:] for seed in (10, 11, 12)]


@pytest.fixture(scope="module")
def label32():
    return make_cardiac_phantom(32, seed=0)[1:]


def test_severity_ordering_and_moderate_calibration(phantoms48):
    dice = {}
    for severity in SEVERITY_LEVELS:
        dice[severity] = np.mean([
            mean_foreground_dice(corrupt_label(label, severity=severity, seed=i, num_classes=11, spacing=sp), label)
            for i, (label, sp) in enumerate(phantoms48)
        ])
    assert dice["mild"] > dice["moderate"] > dice["severe"], dice
    assert 0.65 <= dice["moderate"] <= 0.85, dice
    assert dice["mild"] > 0.78 and dice["severe"] < 0.7, dice


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64, np.uint16])
def test_keeps_shape_dtype_and_label_range(label32, dtype):
    label, spacing = label32
    label = label.astype(dtype)
    noisy = corrupt_label(label, severity="severe", seed=3, num_classes=11, spacing=spacing)
    assert noisy.shape == label.shape and noisy.dtype == label.dtype
    assert set(np.unique(noisy)) <= set(np.unique(label)) | {0}
    assert noisy.min() >= 0 and noisy.max() <= 10


def test_input_untouched_and_deterministic(label32):
    label, spacing = label32
    before = label.copy()
    a = corrupt_label(label, seed=5, spacing=spacing)
    b = corrupt_label(label, seed=5, spacing=spacing)
    c = corrupt_label(label, seed=6, spacing=spacing)
    d = corrupt_label(label, seed=np.random.default_rng(5), spacing=spacing)
    np.testing.assert_array_equal(label, before)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, d)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, label)


def test_severity_zero_is_an_exact_copy(label32):
    label, spacing = label32
    out = corrupt_label(label, severity=0.0, spacing=spacing)
    np.testing.assert_array_equal(out, label)
    assert out is not label


def test_empty_label_stays_empty():
    label = np.zeros((12, 12, 12), np.uint8)
    np.testing.assert_array_equal(corrupt_label(label, severity="severe"), label)


def test_parameters_grow_with_severity():
    values = [corruption_params(s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert values[0].displacement_mm == values[0].morphology_mm == values[0].num_blobs == 0
    for field in ("displacement_mm", "morphology_mm", "slice_gap_mm", "thin_drop_fraction", "num_blobs",
                  "blob_radius_mm"):
        series = [getattr(v, field) for v in values]
        assert series == sorted(series), field
    assert corruption_params("moderate") == corruption_params(SEVERITY_LEVELS["moderate"])


def test_sparse_slices_keep_drawn_slices_and_interpolate_between():
    # a ball: the drawn slices come back unchanged, the others lie between their neighbours
    grid = np.indices((24, 24, 24)) - 11.5
    ball = ((grid**2).sum(0) <= 8.0**2).astype(np.uint8)
    rng = np.random.default_rng(0)
    out = _sparse_slices(ball, rng, (1.0, 1.0, 1.0), [1], gap_mm=4.0, axis=2)
    offset = int(np.random.default_rng(0).integers(4))
    drawn = np.arange(offset, 24, 4)
    np.testing.assert_array_equal(out[..., drawn], ball[..., drawn])
    area = out.sum(axis=(0, 1)).astype(int)
    for z in range(drawn[0], drawn[-1]):
        below = drawn[drawn <= z].max()
        above = drawn[drawn >= z].min()
        lo, hi = sorted((area[below], area[above]))
        assert lo - 2 <= area[z] <= hi + 2


def test_morphology_erodes_or_dilates_by_about_the_radius():
    label = np.zeros((30, 30, 30), np.uint8)
    label[5:25, 5:25, 5:25] = 1
    label[12:18, 12:18, 12:18] = 2
    sizes = set()
    for seed in range(8):
        out = _morphology(label, np.random.default_rng(seed), (1.0, 1.0, 1.0), [1, 2], radius_mm=3.0)
        assert set(np.unique(out)) <= {0, 1, 2}
        sizes.add(int((out > 0).sum()) - int((label > 0).sum()))
    assert min(sizes) < 0 < max(sizes)  # both erosion and dilation happen


def test_thin_classes_are_the_coronaries():
    _, label, spacing = make_cardiac_phantom(64, seed=0)
    thin = _thin_classes(label, spacing, list(range(1, 11)))
    assert 9 in thin
    assert not {1, 2, 3, 4, 5, 6, 7} & set(thin)


def test_fast_enough_at_64(tmp_path):
    _, label, spacing = make_cardiac_phantom(64, seed=1)
    start = time.perf_counter()
    corrupt_label(label, severity="severe", spacing=spacing)
    assert time.perf_counter() - start < 10.0  # ~0.3 s on one free core; generous for busy CI


@pytest.mark.parametrize(
    ("label", "kwargs", "error", "match"),
    [
        (np.zeros((8, 8, 8), np.float32), {}, TypeError, "integer dtype"),
        ([[[0]]], {}, TypeError, "numpy array"),
        (np.zeros((8, 8), np.uint8), {}, InputError, "must be 3D"),
        (np.full((8, 8, 8), -1, np.int16), {}, InputError, ">= 0"),
        (np.full((8, 8, 8), 11, np.uint8), {"num_classes": 11}, InputError, "< num_classes=11"),
        (np.zeros((8, 8, 8), np.uint8), {"severity": "moderat"}, InputError, "Did you mean 'moderate'"),
        (np.zeros((8, 8, 8), np.uint8), {"severity": 1.5}, InputError, r"in \[0, 1\]"),
        (np.zeros((8, 8, 8), np.uint8), {"severity": None}, TypeError, "`severity`"),
        (np.zeros((8, 8, 8), np.uint8), {"spacing": (1.0, 0.0, 1.0)}, InputError, "`spacing`"),
        (np.zeros((8, 8, 8), np.uint8), {"slice_axis": 3}, InputError, "`slice_axis`"),
    ],
)
def test_bad_input(label, kwargs, error, match):
    with pytest.raises(error, match=match):
        corrupt_label(label, **kwargs)

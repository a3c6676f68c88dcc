"""Tests for medrefine.losses.rampup."""

from __future__ import annotations

import math

import pytest

from medrefine.losses.rampup import SigmoidRampup, sigmoid_rampup


@pytest.mark.parametrize(
    "step,length,expected",
    [
        (0, 30, math.exp(-5.0)),
        (15, 30, math.exp(-1.25)),
        (24, 30, math.exp(-5.0 * 0.2**2)),
        (30, 30, 1.0),
        (100, 30, 1.0),  # clipped above
        (-5, 30, math.exp(-5.0)),  # clipped below
        (7, 0, 1.0),  # no ramp-up
    ],
)
def test_values(step, length, expected):
    assert sigmoid_rampup(step, length) == pytest.approx(expected, rel=1e-12)


def test_monotone():
    values = [sigmoid_rampup(s, 50) for s in range(60)]
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_schedule_object():
    schedule = SigmoidRampup(30, weight=0.1)
    assert schedule(15) == pytest.approx(0.1 * math.exp(-1.25))
    assert schedule(30) == pytest.approx(0.1)


@pytest.mark.parametrize("length", [-1, float("nan"), float("inf")])
def test_bad_length(length):
    with pytest.raises(ValueError, match="`rampup_length` must be a finite number >= 0"):
        sigmoid_rampup(1, length)
    with pytest.raises(ValueError, match="`rampup_length`"):
        SigmoidRampup(length)


@pytest.mark.parametrize("length", [0, 7, 30.5])
def test_module(length):
    """``SigmoidRampup(L)(step)`` is ``sigmoid_rampup(step, L)`` (default weight 1), and ``weight`` scales it."""
    for step in (-3, 0, 1, 6.5, 15, 30, 31, 100):
        assert SigmoidRampup(length)(step) == sigmoid_rampup(step, length)
        assert SigmoidRampup(length, weight=0.3)(step) == 0.3 * sigmoid_rampup(step, length)

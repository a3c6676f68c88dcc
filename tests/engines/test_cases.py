"""Tests of medrefine.engines.cases (stacking cases, foreground Dice)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrefine.engines import foreground_dice, stack_cases
from medrefine.errors import InputError


def test_stack_cases_and_errors(blob_cases):
    images, labels, clean = stack_cases(blob_cases)
    assert images.shape == (3, 1, 24, 24, 24) and labels.shape == (3, 24, 24, 24) and clean is None
    assert labels.dtype == torch.uint8
    with pytest.raises(InputError, match="no 'label' entry"):
        stack_cases([{"image": np.zeros((2, 2, 2)), "lable": np.zeros((2, 2, 2))}])
    with pytest.raises(InputError, match="one grid"):
        stack_cases([blob_cases[0], {"image": np.zeros((1, 4, 4, 4)), "label": np.zeros((4, 4, 4), int)}])
    with pytest.raises(InputError, match="is empty"):
        stack_cases([])


def test_foreground_dice():
    a = torch.tensor([0, 1, 1, 2, 2])
    b = torch.tensor([0, 1, 0, 2, 2])
    assert foreground_dice(a, b, 3) == pytest.approx((2 / 3 + 1.0) / 2)
    assert foreground_dice(torch.zeros(3), torch.zeros(3), 3) == 1.0

"""Multi-target cross-entropy: per-target CE, unlabelled ignored, class weights with empty classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medrefine.losses.multi_target import MultiTargetCrossEntropy, balanced_class_weights, multi_target_cross_entropy


def test_equals_mean_of_per_target_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(5, 5)
    labels = torch.tensor([[0, 1], [2, -1], [1, 0], [-1, 1], [0, 0]])
    expected = (F.cross_entropy(logits[:, :3], labels[:, 0], ignore_index=-1)
                + F.cross_entropy(logits[:, 3:], labels[:, 1], ignore_index=-1)) / 2
    assert torch.allclose(multi_target_cross_entropy(logits, labels, [3, 2]), expected)


def test_unlabelled_rows_do_not_change_the_loss():
    logits = torch.randn(3, 2, requires_grad=True)
    loss = multi_target_cross_entropy(logits, torch.tensor([[1], [-1], [-1]]), [2])
    loss.backward()
    assert torch.allclose(loss, F.cross_entropy(logits[:1], torch.tensor([1])))
    assert float(logits.grad[1:].abs().sum()) == 0.0
    nothing = multi_target_cross_entropy(logits, torch.full((3, 1), -1), [2])
    assert float(nothing.detach()) == 0.0 and nothing.requires_grad


def test_class_weights_survive_an_empty_class():
    weights = balanced_class_weights(np.array([[0, 1], [0, -1], [0, 0], [1, 0]]), [3, 2])
    assert weights[0] == pytest.approx([4 / 9, 4 / 3, 1.0])  # class 2 never seen: weight 1, no division by zero
    assert weights[1] == pytest.approx([0.75, 1.5])
    loss = MultiTargetCrossEntropy([3, 2], class_weights=weights)
    assert torch.isfinite(loss(torch.randn(4, 5), torch.tensor([[0, 1], [0, -1], [0, 0], [1, 0]])))
    assert loss.init_args["class_weights"][0][2] == 1.0


def test_errors():
    with pytest.raises(ValueError, match=r"`logits` must be \(B, 5\)"):
        multi_target_cross_entropy(torch.zeros(2, 4), torch.zeros(2, 2, dtype=torch.long), [3, 2])
    with pytest.raises(ValueError, match="labels of target 0 must be in"):
        balanced_class_weights([[3]], [2])

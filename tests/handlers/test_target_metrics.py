"""Tests of medrefine.handlers.target_metrics and the lesion bundle's choice of selection metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from medrefine.handlers.target_metrics import MultiTargetBalancedAccuracy, MultiTargetBalancedCrossEntropy


def _logits_labels():
    # two targets: 3 classes, then 2; the second target of the last sample is unlabelled (-1)
    logits = torch.tensor([[2.0, 0.0, 0.0, 1.0, 0.0],
                           [0.0, 2.0, 0.0, 0.0, 1.0],
                           [0.0, 0.0, 2.0, 1.0, 0.0],
                           [2.0, 0.0, 0.0, 0.0, 3.0]])
    labels = torch.tensor([[0, 0], [1, 1], [1, 1], [2, -1]])
    return logits, labels


def test_balanced_accuracy_matches_scikit_learn_per_target():
    logits, labels = _logits_labels()
    metric = MultiTargetBalancedAccuracy([3, 2])
    metric.update((logits[:2], labels[:2]))
    metric.update((logits[2:], labels[2:]))  # two batches: the metric keeps every sample
    first = balanced_accuracy_score(labels[:, 0].numpy(), logits[:, :3].argmax(1).numpy())
    second = balanced_accuracy_score(labels[:3, 1].numpy(), logits[:3, 3:].argmax(1).numpy())
    assert metric.compute() == pytest.approx((first + second) / 2)


def test_balanced_cross_entropy_by_hand():
    logits, labels = _logits_labels()
    metric = MultiTargetBalancedCrossEntropy([3, 2])
    metric.update((logits, labels))
    p1 = torch.softmax(logits[:, :3], 1).numpy()
    p2 = torch.softmax(logits[:, 3:], 1).numpy()
    ce = lambda p: -math.log(p)  # noqa: E731
    target1 = np.mean([ce(p1[0, 0]), np.mean([ce(p1[1, 1]), ce(p1[2, 1])]), ce(p1[3, 2])])  # classes 0, 1, 2
    target2 = np.mean([ce(p2[0, 0]), np.mean([ce(p2[1, 1]), ce(p2[2, 1])])])  # the unlabelled sample left out
    assert metric.compute() == pytest.approx((target1 + target2) / 2, rel=1e-5)
    negative = MultiTargetBalancedCrossEntropy([3, 2], negative=True)
    negative.update((logits, labels))
    assert negative.compute() == pytest.approx(-metric.compute())


def test_balanced_cross_entropy_weighs_a_minority_class_as_much_as_the_majority():
    # nine confident right answers of class 0 and one confident wrong answer of class 1
    logits = torch.tensor([[4.0, 0.0]] * 10)
    labels = torch.tensor([[0]] * 9 + [[1]])
    metric = MultiTargetBalancedCrossEntropy([2])
    metric.update((logits, labels))
    right, wrong = -math.log(1 / (1 + math.exp(-4))), -math.log(1 / (1 + math.exp(4)))
    assert metric.compute() == pytest.approx((right + wrong) / 2)  # not (9 right + wrong) / 10


def test_selection_metrics_key_and_the_other_alongside():
    from medrefine.workflows.lesion import selection_metrics

    key, other = selection_metrics("neg_balanced_ce", [3, 2])
    assert list(key) == ["val_neg_balanced_ce"] and list(other) == ["val_balanced_accuracy"]
    key, other = selection_metrics("balanced_accuracy", [3, 2])
    assert list(key) == ["val_balanced_accuracy"] and list(other) == ["val_neg_balanced_ce"]
    with pytest.raises(ValueError, match="Did you mean 'balanced_accuracy'"):
        selection_metrics("balanced_acuracy", [2])


@pytest.mark.slow
def test_metrics_gather_unequal_shards_across_processes(two_process_json):
    """Under torchrun each rank scores its shard of the validation split, 3 and 2 lesions here: the
    metrics gather all five (shards of unequal size) and equal the one-process values."""
    code = (
        "import json, sys, torch\n"
        "import torch.distributed as dist\n"
        "from medrefine.handlers.target_metrics import MultiTargetBalancedAccuracy, MultiTargetBalancedCrossEntropy\n"
        "dist.init_process_group('gloo')\n"
        "rank = dist.get_rank()\n"
        "g = torch.Generator().manual_seed(0)\n"
        "logits, labels = torch.randn(5, 5, generator=g), torch.tensor([[0, 1], [1, 0], [2, 1], [1, 1], [0, 0]])\n"
        "share = slice(0, 3) if rank == 0 else slice(3, 5)\n"
        "out = {}\n"
        "for name, metric in (('ba', MultiTargetBalancedAccuracy([3, 2])), ('ce', MultiTargetBalancedCrossEntropy([3, 2]))):\n"
        "    metric.update((logits[share], labels[share]))\n"
        "    out[name] = metric.compute()\n"
        "if rank == 0:\n"
        "    json.dump(out, open(sys.argv[1], 'w'))\n"
        "dist.destroy_process_group()\n")
    got = two_process_json(code)
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(5, 5, generator=g), torch.tensor([[0, 1], [1, 0], [2, 1], [1, 1], [0, 0]])
    for name, metric in (("ba", MultiTargetBalancedAccuracy([3, 2])), ("ce", MultiTargetBalancedCrossEntropy([3, 2]))):
        metric.update((logits, labels))
        assert got[name] == pytest.approx(metric.compute(), rel=1e-6), name

"""Classification metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.metrics.classification import (
    balanced_accuracy,
    bootstrap_ci,
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    ovr_auc,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.fixture
def three_class():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    logits = rng.normal(size=(60, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p


def test_against_scikit_learn(three_class):
    y, p = three_class
    pred = p.argmax(1)
    assert balanced_accuracy(y, pred, 3) == pytest.approx(sklearn_metrics.balanced_accuracy_score(y, pred))
    assert macro_f1(y, pred, 3) == pytest.approx(sklearn_metrics.f1_score(y, pred, average="macro"))
    assert ovr_auc(y, p) == pytest.approx(sklearn_metrics.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert ovr_auc(y == 1, np.stack([1 - p[:, 1], p[:, 1]], 1)) == pytest.approx(sklearn_metrics.roc_auc_score(y == 1, p[:, 1]))
    assert (confusion_matrix(y, pred, 3) == sklearn_metrics.confusion_matrix(y, pred, labels=[0, 1, 2])).all()


def test_unlabelled_are_dropped(three_class):
    y, p = three_class
    y2 = y.copy()
    y2[:10] = -1
    assert balanced_accuracy(y2, p.argmax(1), 3) == pytest.approx(balanced_accuracy(y[10:], p[10:].argmax(1), 3))


def test_ece_by_hand():
    # two bins used: confidence 0.9 (2 lesions, 1 right), 0.6 (2 lesions, 2 right)
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6))


def test_bootstrap_interval_contains_the_estimate(three_class):
    y, p = three_class
    low, high = bootstrap_ci(ovr_auc, y, p, samples=200, seed=0)
    assert low < ovr_auc(y, p) < high
    metrics = classification_metrics(y, p, bootstrap=50)
    assert metrics["auc_low"] <= metrics["auc"] <= metrics["auc_high"]
    assert metrics["n"] == 60

"""Classification metrics of one categorical target: accuracy, balanced accuracy, macro-F1,
one-vs-rest AUC (with bootstrap 95 % intervals), confusion matrix and calibration (ECE).

Inputs are integer labels ``(N,)`` and class probabilities ``(N, K)``; unlabelled entries (label
``-1``) are dropped. AUC is MONAI's :func:`monai.metrics.compute_roc_auc` (macro one-vs-rest);
the rest is a confusion-matrix computation, written here because MONAI's
``ConfusionMatrixMetric`` is per-class binary (no balanced accuracy, no multi-class F1 macro over
present classes) and has no calibration or bootstrap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "accuracy",
    "balanced_accuracy",
    "bootstrap_ci",
    "classification_metrics",
    "confusion_matrix",
    "expected_calibration_error",
    "macro_f1",
    "ovr_auc",
    "reliability_bins",
]


def _labelled(labels: Sequence[int], probabilities: np.ndarray | None = None):
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    keep = y >= 0
    if probabilities is None:
        return y[keep], None
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"`probabilities` must be (N={y.shape[0]}, K), got {p.shape}")
    return y[keep], p[keep]


def confusion_matrix(labels: Sequence[int], predicted: Sequence[int], num_classes: int) -> np.ndarray:
    """``(K, K)`` counts, rows = true class, columns = predicted class (unlabelled rows dropped)."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    pred = np.asarray(predicted, dtype=np.int64).reshape(-1)
    if y.shape != pred.shape:
        raise ValueError(f"`labels` and `predicted` must have the same length, got {y.shape} and {pred.shape}")
    keep = y >= 0
    return np.bincount(y[keep] * num_classes + pred[keep], minlength=num_classes**2).reshape(num_classes, num_classes)


def accuracy(labels: Sequence[int], predicted: Sequence[int]) -> float:
    """Fraction of labelled entries predicted right (NaN when none is labelled)."""
    y = np.asarray(labels).reshape(-1)
    keep = y >= 0
    return float(np.mean(y[keep] == np.asarray(predicted).reshape(-1)[keep])) if keep.any() else float("nan")


def balanced_accuracy(labels: Sequence[int], predicted: Sequence[int], num_classes: int) -> float:
    """Mean recall over the classes present in ``labels`` (scikit-learn's definition)."""
    cm = confusion_matrix(labels, predicted, num_classes)
    support = cm.sum(1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present])) if present.any() else float("nan")


def macro_f1(labels: Sequence[int], predicted: Sequence[int], num_classes: int) -> float:
    """Unweighted mean F1 over the classes present in labels or predictions (F1 = 0 when undefined)."""
    cm = confusion_matrix(labels, predicted, num_classes)
    tp = np.diag(cm).astype(float)
    denominator = cm.sum(0) + cm.sum(1)
    present = denominator > 0
    if not present.any():
        return float("nan")
    return float(np.mean(2 * tp[present] / denominator[present]))


def ovr_auc(labels: Sequence[int], probabilities: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes present (binary: AUC of class 1); NaN with < 2 classes."""
    import torch
    from monai.metrics import compute_roc_auc

    y, p = _labelled(labels, probabilities)
    present = np.unique(y)
    if present.size < 2:
        return float("nan")
    if p.shape[1] == 2:
        return float(compute_roc_auc(torch.as_tensor(p[:, 1]), torch.as_tensor(y)))
    aucs = [float(compute_roc_auc(torch.as_tensor(p[:, k]), torch.as_tensor((y == k).astype(np.int64)))) for k in present]
    return float(np.mean(aucs))


def reliability_bins(labels: Sequence[int], probabilities: np.ndarray, bins: int = 10
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-label calibration per equal-width confidence bin: (mean confidence, accuracy, count)."""
    y, p = _labelled(labels, probabilities)
    confidence = p.max(1)
    correct = (p.argmax(1) == y).astype(float)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, minlength=bins) / count
        bin_accuracy = np.bincount(index, correct, minlength=bins) / count
    return mean_confidence, bin_accuracy, count


def expected_calibration_error(labels: Sequence[int], probabilities: np.ndarray, bins: int = 10) -> float:
    """ECE: ``sum_b n_b / N * |accuracy_b - confidence_b|`` over equal-width top-label confidence bins."""
    confidence, acc, count = reliability_bins(labels, probabilities, bins)
    if count.sum() == 0:
        return float("nan")
    filled = count > 0
    return float(np.sum(count[filled] / count.sum() * np.abs(acc[filled] - confidence[filled])))


def bootstrap_ci(metric: Callable[[np.ndarray, np.ndarray], float], labels: Sequence[int], probabilities: np.ndarray, *,
                 samples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(labels, probabilities)`` over resampled lesions.

    Resamples that give NaN (e.g. one class only, for AUC) are skipped. Returns ``(low, high)``
    (NaN, NaN when every resample fails).
    """
    y, p = _labelled(labels, probabilities)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(samples)):
        pick = rng.integers(0, len(y), len(y))
        value = metric(y[pick], p[pick])
        if np.isfinite(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def classification_metrics(labels: Sequence[int], probabilities: np.ndarray, *, bootstrap: int = 1000,
                           seed: int = 0) -> dict[str, float]:
    """Every metric of one target: ``n``, accuracy, balanced_accuracy (+ ``_low``/``_high``), macro_f1,
    auc (+ ``_low``/``_high``), ece. ``bootstrap=0`` skips the intervals."""
    y, p = _labelled(labels, probabilities)
    k = p.shape[1]
    pred = p.argmax(1)
    out = {"n": float(len(y)), "accuracy": accuracy(y, pred), "balanced_accuracy": balanced_accuracy(y, pred, k),
           "macro_f1": macro_f1(y, pred, k), "auc": ovr_auc(y, p), "ece": expected_calibration_error(y, p)}
    if bootstrap and len(y):
        out["balanced_accuracy_low"], out["balanced_accuracy_high"] = bootstrap_ci(
            lambda a, b: balanced_accuracy(a, b.argmax(1), k), y, p, samples=bootstrap, seed=seed)
        out["auc_low"], out["auc_high"] = bootstrap_ci(ovr_auc, y, p, samples=bootstrap, seed=seed)
    return out

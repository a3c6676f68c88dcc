"""Report of a lesion classification: metric tables with 95 % intervals, confusion matrices,
reliability diagrams and (CRN) the modality x target routing weights, as ``report.md`` and a
self-contained ``report.html`` in the same :class:`~medrefine.reports.document.Document` format
as the segmentation reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medrefine.reports._render import new_figure, save_png
from medrefine.reports.document import Document

__all__ = ["confusion_png", "reliability_png", "routing_png", "write_classification_report"]

_SHOWN = ("n", "accuracy", "balanced_accuracy", "macro_f1", "auc", "ece")


def confusion_png(matrix: np.ndarray, values: Sequence[str], out: str | Path, *, title: str = "") -> Path:
    """Confusion matrix (rows: true, columns: predicted) with counts, as PNG."""
    fig = new_figure(1.2 + 0.6 * len(values), 1.0 + 0.6 * len(values))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(int(count)), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(values)), values)
    ax.set_yticks(range(len(values)), values)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, out)


def reliability_png(labels: np.ndarray, probabilities: np.ndarray, out: str | Path, *, bins: int = 10,
                    title: str = "") -> Path:
    """Reliability diagram: accuracy against mean top-label confidence per bin, with the diagonal."""
    from medrefine.metrics.classification import reliability_bins

    confidence, accuracy, count = reliability_bins(labels, probabilities, bins)
    filled = count > 0
    fig = new_figure(3.2, 3.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--")
    ax.plot(confidence[filled], accuracy[filled], marker="o", color="#4c72b0")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, out)


def routing_png(weights: np.ndarray, modalities: Sequence[str], targets: Sequence[str], out: str | Path) -> Path:
    """Heat map of the ``(M, T)`` routing weights of a CRN."""
    fig = new_figure(1.5 + 0.8 * len(targets), 1.0 + 0.5 * len(modalities))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(np.asarray(weights, dtype=float), cmap="viridis", vmin=0, vmax=1)
    for (i, j), w in np.ndenumerate(np.asarray(weights, dtype=float)):
        ax.text(j, i, f"{w:.2f}", ha="center", va="center", fontsize=8, color="w" if w < 0.6 else "k")
    ax.set_xticks(range(len(targets)), targets, rotation=30)
    ax.set_yticks(range(len(modalities)), modalities)
    ax.set_title("routing weight (modality -> target)", fontsize=9)
    fig.tight_layout()
    return save_png(fig, out)


def _fmt(row: Mapping[str, float], key: str) -> str:
    value = row.get(key, float("nan"))
    if key == "n":
        return str(int(value))
    text = "—" if not np.isfinite(value) else f"{value:.3f}"
    low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        text += f" [{low:.3f}, {high:.3f}]"
    return text


def write_classification_report(metrics: pd.DataFrame, confusions: Mapping[str, np.ndarray],
                                reliability: Mapping[str, tuple[np.ndarray, np.ndarray]],
                                targets: Mapping[str, Sequence[str]], out_dir: str | Path, *,
                                title: str = "Lesion classification", routing: Mapping[str, Any] | None = None) -> Path:
    """Write ``report.md`` and ``report.html`` (+ PNGs) into ``out_dir``.

    Args:
        metrics: ``scope, target, metric, value`` rows (:func:`medrefine.workflows.lesion_evaluation.evaluate_lesions`).
        confusions: pooled confusion matrix per target.
        reliability: per target ``(labels, probabilities)`` for the reliability diagram.
        targets: ``{name: [class values]}``.
        out_dir: the report folder (created).
        title: report title.
        routing: ``{"weights": (M, T), "modalities": [...], "targets": [...]}`` of a CRN, or None.

    Returns:
        Path of ``report.html``.
    """
    from medrefine.io import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = Document(title)
    doc.heading("Summary")
    doc.paragraph("Out-of-fold predictions: each lesion scored once, by the model of the fold that held it out. "
                  "Intervals: percentile bootstrap over lesions (95 %).")
    for scope in dict.fromkeys(metrics["scope"]):
        part = metrics[metrics["scope"] == scope]
        rows = []
        for name in targets:
            values = dict(zip(part.loc[part["target"] == name, "metric"], part.loc[part["target"] == name, "value"].astype(float)))
            if values:
                rows.append([name] + [_fmt(values, k) for k in _SHOWN])
        doc.heading(f"Metrics: {scope}", 3 if scope != "pooled" else 2)
        doc.table(["target", *_SHOWN], rows)
    doc.heading("Confusion matrices and calibration")
    for name, matrix in confusions.items():
        doc.image(confusion_png(matrix, list(targets[name]), out / f"confusion_{name}.png", title=name),
                  f"{name}: confusion matrix (pooled)")
        y, p = reliability[name]
        doc.image(reliability_png(y, p, out / f"reliability_{name}.png", title=name),
                  f"{name}: reliability diagram (top-label confidence, 10 bins)")
    if routing is not None:
        doc.heading("CRN routing")
        doc.image(routing_png(np.asarray(routing["weights"]), routing["modalities"], routing["targets"], out / "routing.png"),
                  "which modality each target reads (fixed: the configured matrix; learned: the gates)")
    with atomic_write(out / "report.md") as tmp:
        tmp.write_text(doc.markdown())
    with atomic_write(out / "report.html") as tmp:
        tmp.write_text(doc.html())
    return out / "report.html"

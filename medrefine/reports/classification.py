"""Report of a lesion classification: metric tables with 95 % intervals, confusion matrices,
reliability diagrams, where the models looked (occlusion maps per target and modality) and (CRN)
the modality x target routing weights and the attention between targets, as ``report.md`` and a
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

__all__ = ["attention_png", "confusion_png", "reliability_png", "routing_png", "saliency_png",
           "write_classification_report"]

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


def attention_png(weights: np.ndarray, targets: Sequence[str], out: str | Path) -> Path:
    """Heat map of a CRN's ``(T, T)`` attention: row ``t`` is how target ``t`` attends to each target."""
    weights = np.asarray(weights, dtype=float)
    fig = new_figure(1.5 + 0.8 * len(targets), 1.2 + 0.6 * len(targets))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(weights, cmap="viridis", vmin=0, vmax=1)
    for (i, j), w in np.ndenumerate(weights):
        ax.text(j, i, f"{w:.2f}", ha="center", va="center", fontsize=8, color="w" if w < 0.6 else "k")
    ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right")
    ax.set_yticks(range(len(targets)), targets)
    ax.set_xlabel("attended target")
    ax.set_ylabel("attending target")
    ax.set_title("attention (target -> target)", fontsize=9)
    fig.tight_layout()
    return save_png(fig, out)


def saliency_png(lesion: Mapping[str, Any], out: str | Path) -> Path:
    """Occlusion maps of one lesion: rows = targets, columns = modalities; the central axial slice
    of each modality's crop in grey, the map (positive part, scaled per row) in colour over it and
    the lesion mask's contour. A missing modality is an empty panel.

    Args:
        lesion: ``case``, ``reason``, ``modalities``, ``targets``, ``image (M, X, Y, Z)``, ``mask
            (X, Y, Z)``, ``presence (M,)``, ``maps (T, M, X, Y, Z)``, ``truth``, ``predicted``,
            ``confidence`` (one per target), as
            :func:`medrefine.workflows.lesion_saliency.explain_lesions` returns them.
        out: the PNG to write.

    Returns:
        ``out``.
    """
    image, maps = np.asarray(lesion["image"], dtype=float), np.asarray(lesion["maps"], dtype=float)
    mask, presence = np.asarray(lesion["mask"], dtype=float), np.asarray(lesion["presence"], dtype=float)
    modalities, targets = list(lesion["modalities"]), list(lesion["targets"])
    z = image.shape[-1] // 2
    fig = new_figure(1.2 + 1.7 * len(modalities), 0.6 + 1.8 * len(targets))
    for t, target in enumerate(targets):
        top = max(float(maps[t, ..., z].max()), 1e-6)
        for m, modality in enumerate(modalities):
            ax = fig.add_subplot(len(targets), len(modalities), t * len(modalities) + m + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if t == 0:
                ax.set_title(modality, fontsize=9)
            if m == 0:
                truth = lesion["truth"][t] if str(lesion["truth"][t]) != "" else "?"
                ax.set_ylabel(f"{target}\ntrue {truth}, pred {lesion['predicted'][t]}\n"
                              f"({lesion['confidence'][t]:.2f}; max drop {top:.2g})", fontsize=7)
            if presence[m] == 0:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=9, color="#777", transform=ax.transAxes)
                continue
            ax.imshow(image[m, ..., z].T, cmap="gray", origin="lower")
            heat = maps[t, m, ..., z].T
            ax.imshow(heat, cmap="inferno", origin="lower", alpha=0.75 * np.clip(heat / top, 0.0, 1.0), vmin=0.0, vmax=top)
            if mask[..., z].max() > 0.5 > mask[..., z].min():
                ax.contour(mask[..., z].T, levels=[0.5], colors="#00e5ff", linewidths=0.8, origin="lower")
    fig.suptitle(f"{lesion['case']}: {lesion.get('reason', '')}", fontsize=9)
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
                                title: str = "Lesion classification", routing: Mapping[str, Any] | None = None,
                                saliency: Sequence[Mapping[str, Any]] | None = None,
                                attention: Mapping[str, Any] | None = None) -> Path:
    """Write ``report.md`` and ``report.html`` (+ PNGs) into ``out_dir``.

    Args:
        metrics: ``scope, target, metric, value`` rows (:func:`medrefine.workflows.lesion_evaluation.evaluate_lesions`).
        confusions: pooled confusion matrix per target.
        reliability: per target ``(labels, probabilities)`` for the reliability diagram.
        targets: ``{name: [class values]}``.
        out_dir: the report folder (created).
        title: report title.
        routing: ``{"weights": (M, T), "modalities": [...], "targets": [...]}`` of a CRN, or None.
        saliency: occlusion maps of chosen lesions (:func:`saliency_png` lists the keys), or None/empty.
        attention: ``{"weights": (T, T), "targets": [...]}`` of a CRN, or None.

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
    if saliency:
        doc.heading("Where the models looked")
        doc.paragraph("Occlusion sensitivity (MONAI OcclusionSensitivity), by the fold model that held the lesion out: "
                      "a box of one modality at a time is blurred towards the crop's mean and slid over the crop; "
                      "bright = hiding that region of that modality lowered the probability of the predicted class "
                      "most (it supported the prediction), no colour = no effect or against it. Central axial slice "
                      "of each crop, colours scaled per target row, cyan contour: the lesion mask.")
        for lesion in saliency:
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(lesion["case"]))
            doc.image(saliency_png(lesion, out / f"saliency_{name}.png"), f"{lesion['case']}: {lesion.get('reason', '')}")
    if routing is not None:
        doc.heading("CRN routing")
        doc.image(routing_png(np.asarray(routing["weights"]), routing["modalities"], routing["targets"], out / "routing.png"),
                  "which modality each target reads (fixed: the configured matrix; learned: the gates)")
    if attention is not None:
        doc.heading("CRN attention between targets")
        doc.image(attention_png(np.asarray(attention["weights"]), attention["targets"], out / "attention.png"),
                  "how each target's token attends to the targets' tokens (rows sum to 1), mean over the "
                  "out-of-fold lesions and the attention layers, then over the fold models")
    with atomic_write(out / "report.md") as tmp:
        tmp.write_text(doc.markdown())
    with atomic_write(out / "report.html") as tmp:
        tmp.write_text(doc.html())
    return out / "report.html"

"""Cardiac function from 4D segmentations: volume curves, ED/ES volumes, ejection fraction, mass; per-frame overlap.

Volumes are voxel counts times the voxel volume (ml); the end-diastolic (ED) frame is the frame
of largest LV volume (or the one given), the end-systolic (ES) frame the one of smallest;
``EF = 100 (EDV - ESV) / EDV``; myocardial mass = ED myocardial volume x 1.05 g/ml. Dice and HD95
per frame come from :func:`medrefine.metrics.binary.binary_metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from medrefine.metrics.binary import binary_metrics

__all__ = ["CARDIAC_STRUCTURES", "MYOCARDIAL_DENSITY", "cardiac_function", "ejection_fraction", "frame_dice",
           "frame_metrics", "volume_curves"]

#: label value -> structure of the cine classes
CARDIAC_STRUCTURES: dict[int, str] = {1: "left_ventricle", 2: "myocardium", 3: "right_ventricle"}
#: g/ml
MYOCARDIAL_DENSITY = 1.05


def volume_curves(label: np.ndarray, spacing: Sequence[float],
                  structures: Mapping[int, str] = CARDIAC_STRUCTURES) -> dict[str, np.ndarray]:
    """Volume (ml) of each structure in every frame of a ``(X, Y, Z, T)`` label."""
    label = np.asarray(label)
    if label.ndim != 4:
        raise ValueError(f"`label` must be (X, Y, Z, T), got shape {label.shape}")
    spacing = [float(s) for s in spacing]
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"`spacing` must be 3 positive values, got {spacing}")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    flat = label.reshape(-1, label.shape[3])
    return {name: (flat == value).sum(axis=0).astype(np.float64) * voxel_ml for value, name in structures.items()}


def ejection_fraction(edv: float, esv: float) -> float:
    """``100 (EDV - ESV) / EDV`` (%); NaN for an empty ED volume.

    Example:
        >>> ejection_fraction(120.0, 50.0)
        58.333333333333336
    """
    return float("nan") if edv <= 0 else 100.0 * (float(edv) - float(esv)) / float(edv)


def cardiac_function(curves: Mapping[str, np.ndarray], ed_frame: int | None = None) -> dict[str, float]:
    """EDV, ESV, EF of the LV and RV, myocardial volume and mass at ED, ED and ES frames.

    Args:
        curves: :func:`volume_curves` output.
        ed_frame: the ED frame; default the frame of largest LV volume.

    Returns:
        ``lv_edv_ml, lv_esv_ml, lv_ef, rv_edv_ml, rv_esv_ml, rv_ef, myocardium_ml, myocardial_mass_g,
        ed_frame, es_frame`` (RV keys only when the curves hold the RV).
    """
    lv = np.asarray(curves["left_ventricle"], dtype=np.float64)
    ed = int(np.argmax(lv)) if ed_frame is None else int(ed_frame)
    es = int(np.argmin(lv))
    out: dict[str, float] = {"ed_frame": ed, "es_frame": es}
    for short, name in (("lv", "left_ventricle"), ("rv", "right_ventricle")):
        if name in curves:
            values = np.asarray(curves[name], dtype=np.float64)
            edv, esv = float(values[ed]), float(values.min())
            out.update({f"{short}_edv_ml": edv, f"{short}_esv_ml": esv, f"{short}_ef": ejection_fraction(edv, esv)})
    if "myocardium" in curves:
        myo = float(np.asarray(curves["myocardium"])[ed])
        out.update({"myocardium_ml": myo, "myocardial_mass_g": myo * MYOCARDIAL_DENSITY})
    return out


def frame_dice(pred: np.ndarray, ref: np.ndarray, classes: Iterable[int]) -> dict[int, list[float]]:
    """Dice of each class in each frame of ``(F, ...)`` label arrays (NaN where both are empty)."""
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"`pred` and `ref` must have the same shape, got {pred.shape} and {ref.shape}")
    out: dict[int, list[float]] = {}
    for value in classes:
        p = (pred == value).reshape(pred.shape[0], -1)
        r = (ref == value).reshape(ref.shape[0], -1)
        inter, total = (p & r).sum(axis=1), p.sum(axis=1) + r.sum(axis=1)
        out[int(value)] = [float(2 * i / s) if s else float("nan") for i, s in zip(inter, total)]
    return out


def frame_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                  structures: Mapping[int, str] = CARDIAC_STRUCTURES, metrics: Sequence[str] = ("dice", "hd95")):
    """Dice and HD95 per frame and structure of two ``(X, Y, Z, T)`` labels, as a long pandas table.

    Returns:
        Columns ``frame, structure, <metrics...>, status``.
    """
    import pandas as pd

    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape or pred.ndim != 4:
        raise ValueError(f"`pred` and `ref` must be (X, Y, Z, T) of one shape, got {pred.shape} and {ref.shape}")
    rows = []
    for f in range(pred.shape[3]):
        for value, name in structures.items():
            values, status = binary_metrics(pred[..., f] == value, ref[..., f] == value, spacing=spacing, metrics=metrics)
            rows.append({"frame": f, "structure": name, **values, "status": status})
    return pd.DataFrame(rows)

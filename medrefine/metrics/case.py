"""All metrics of all classes of one case, as a tidy DataFrame.

Fast for many classes: one :func:`scipy.ndimage.find_objects` pass per volume gives the bounding
box of every label value; each class is then measured on the union of its two boxes plus one
voxel (:func:`medrefine.metrics.binary.binary_metrics`), so a 41-class CT costs roughly the work
of the structures' boxes, not 41 full volumes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from medrefine.metrics.binary import (
    METRICS,
    binary_metrics,
    check_metrics,
    check_spacing,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "compute_case_metrics", "resolve_classes"]

logger = logging.getLogger(__name__)

#: Columns of the tidy metrics table, in order (``status``: see :data:`medrefine.metrics.STATUSES`).
COLUMNS: tuple[str, ...] = ("case", "class_id", "class_name", "metric", "value", "status")


def _as_label_array(array: object, name: str) -> np.ndarray:
    """An integer, non-negative label array (floats with integral values are cast)."""
    arr = np.asarray(array)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise TypeError(f"`{name}` must hold integer label values, got dtype {arr.dtype} with non-integral values")
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"`{name}` label values must be >= 0, got minimum {arr.min()}")
    return arr


def resolve_classes(
    classes: Mapping[int, str] | int | None, present: Sequence[int] = ()
) -> dict[int, str]:
    """The foreground classes to score: ``{class_id: name}`` without background (0).

    Args:
        classes: a class table ``{id: name}`` (as :func:`medrefine.data.classes.load_classes`
            returns), a class count (``n`` -> classes ``1..n-1`` named ``class_<id>``, background
            included in the count, MONAI's ``num_classes``), or ``None`` for the values in
            ``present``.
        present: label values found in the volumes; values missing from a table are not scored
            (a warning is logged), values ``>= n`` for a count raise.

    Raises:
        ValueError: a count < 1 or a label value beyond the count.
        TypeError: ``classes`` of another type.
    """
    present = sorted(int(v) for v in present if int(v) != 0)
    if classes is None:
        return {c: f"class_{c}" for c in present}
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        if classes < 1:
            raise ValueError(f"`classes` as a count must be >= 1 (background included), got {classes}")
        beyond = [c for c in present if c >= classes]
        if beyond:
            raise ValueError(f"`classes` is {classes} (values 0..{classes - 1}), but the labels hold values {beyond}")
        return {c: f"class_{c}" for c in range(1, int(classes))}
    if isinstance(classes, Mapping):
        table = {int(k): str(v) for k, v in classes.items() if int(k) != 0}
        unknown = [c for c in present if c not in table]
        if unknown:
            logger.warning("label values %s are not in the class table: not scored", unknown)
        return dict(sorted(table.items()))
    raise TypeError(f"`classes` must be a dict {{id: name}}, a class count or None, got {type(classes).__name__}")


def _box(slices: Sequence[slice | None], value: int) -> tuple[slice, ...] | None:
    return slices[value - 1] if value - 1 < len(slices) else None


def compute_case_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    spacing: Sequence[float] | float,
    classes: Mapping[int, str] | int | None = None,
    metrics: Sequence[str] = METRICS,
    nsd_tolerance_mm: float = 1.0,
    missing_distance_mm: float | None = None,
    case: str = "case",
) -> pd.DataFrame:
    """Dice, IoU, HD95, ASSD and NSD of every foreground class of one case.

    Background (0) is not scored. Definitions and the rule for structures absent from the
    prediction and/or the reference: see :mod:`medrefine.metrics.binary`.

    Args:
        pred: predicted label map ``(*spatial)`` of integer class values.
        ref: reference label map, same shape.
        spacing: voxel size in mm along each array axis (``Volume.spacing``), or one number.
        classes: ``{id: name}`` table (only its classes are scored; other values found are
            logged as a warning), a class count (background included), or ``None`` for the values
            present in either map. A class of the table in neither map gets
            ``status="absent_both"`` rows with NaN values.
        metrics: names among ``("dice", "iou", "hd95", "assd", "nsd")``; default all.
        nsd_tolerance_mm: tolerance of the normalised surface Dice, mm.
        missing_distance_mm: HD95/ASSD of a structure in only one map; ``None`` = diagonal of the
            volume in mm.
        case: case identifier written in the ``case`` column.

    Returns:
        Tidy DataFrame with columns :data:`COLUMNS` (``case, class_id, class_name, metric, value,
        status``), one row per class and metric, ordered by class id then metric.

    Raises:
        ValueError: shapes differ, bad spacing, unknown metric, negative labels.
        TypeError: non-integral label values.

    Example:
        >>> ref = np.zeros((16, 16, 8), np.uint8); ref[4:10, 4:10, 2:6] = 1
        >>> df = compute_case_metrics(ref, ref, spacing=(1.0, 1.0, 2.5), classes={1: "liver"})
        >>> df.set_index("metric")["value"].to_dict()
        {'dice': 1.0, 'iou': 1.0, 'hd95': 0.0, 'assd': 0.0, 'nsd': 1.0}
    """
    import pandas as pd
    from scipy.ndimage import find_objects

    pred = _as_label_array(pred, "pred")
    ref = _as_label_array(ref, "ref")
    if pred.shape != ref.shape:
        raise ValueError(f"`pred` and `ref` must have the same shape, got {pred.shape} and {ref.shape}")
    sampling = check_spacing(spacing, ref.ndim)
    names = check_metrics(metrics)
    if missing_distance_mm is None:
        missing_distance_mm = float(np.linalg.norm(np.asarray(ref.shape) * np.asarray(sampling)))

    boxes_pred, boxes_ref = find_objects(pred), find_objects(ref)
    present = [i + 1 for i, s in enumerate(boxes_pred) if s is not None]
    present += [i + 1 for i, s in enumerate(boxes_ref) if s is not None]
    table = resolve_classes(classes, sorted(set(present)))

    rows: list[tuple] = []
    for class_id, class_name in table.items():
        box_p, box_r = _box(boxes_pred, class_id), _box(boxes_ref, class_id)
        if box_p is None and box_r is None:
            values, status = {m: float("nan") for m in names}, "absent_both"
        else:
            parts = [b for b in (box_p, box_r) if b is not None]
            box = tuple(
                slice(max(min(b[d].start for b in parts) - 1, 0), min(max(b[d].stop for b in parts) + 1, ref.shape[d]))
                for d in range(ref.ndim)
            )
            values, status = binary_metrics(
                pred[box] == class_id,
                ref[box] == class_id,
                spacing=sampling,
                metrics=names,
                nsd_tolerance_mm=nsd_tolerance_mm,
                missing_distance_mm=missing_distance_mm,
            )
        rows.extend((case, class_id, class_name, m, values[m], status) for m in names)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["value"] = df["value"].astype(float)
    df["class_id"] = df["class_id"].astype(int)
    return df

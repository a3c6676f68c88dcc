"""The dataset fingerprint of a segmentation cohort: what a training plan is derived from.

Isensee F. et al., nnU-Net, Nature Methods 2021, section "dataset fingerprint": spacings and
shapes, the intensities of the foreground voxels and the classes present.
:mod:`medrefine.workflows.segmentation_plan` turns it into the bundle's keys. MONAI's Auto3DSeg
``DataAnalyzer`` computes more statistics than the plan needs, in its own report format, from a
datalist only; this reads the cases of any cohort layout the bundle reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medrefine.errors import InputError

__all__ = ["fingerprint", "label_values"]


def label_values(cases: Sequence[Mapping[str, Any]]) -> set[int]:
    """The label values that occur in the ``label`` files of ``cases``."""
    from medrefine.io import load_image

    found: set[int] = set()
    for case in cases:
        found |= {int(v) for v in np.unique(np.asarray(load_image(case["label"]).array))}
    return found


def _ras(volume: Any) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Spacing and shape along R, A, S (the axes after the bundle's ``Orientationd(RAS)``)."""
    import nibabel as nib

    order = nib.orientations.io_orientation(volume.affine)[:, 0].astype(int)
    spacing, shape = [0.0] * 3, [0] * 3
    for axis, target in enumerate(order):
        spacing[target], shape[target] = float(volume.spacing[axis]), int(volume.shape[axis])
    return tuple(spacing), tuple(shape)


def fingerprint(cases: Sequence[Mapping[str, Any]], classes: Mapping[int, str], *, samples_per_case: int = 100_000,
                seed: int = 0) -> dict[str, Any]:
    """The dataset fingerprint: what the plan is derived from.

    Args:
        cases: ``{"case", "image", "label"}`` (e.g. :func:`medrefine.workflows.segmentation.load_cases`).
        classes: the class table ``{value: name}``.
        samples_per_case: foreground voxels sampled per case for the intensity statistics.
        seed: of the sampling.

    Returns:
        ``{"num_cases", "spacings", "shapes", "intensity": {"p00_5", "p99_5", "mean", "std"},
        "class_voxels", "class_volumes_ml", "present", "table"}``; spacings and shapes in RAS order.
    """
    from medrefine.io import load_image

    rng = np.random.default_rng(seed)
    spacings, shapes, samples = [], [], []
    voxels: dict[int, int] = {}
    volume_ml: dict[int, float] = {}
    for case in cases:
        image, label = load_image(case["image"]), load_image(case["label"])
        spacing, shape = _ras(image)
        spacings.append(spacing)
        shapes.append(shape)
        lab = np.asarray(label.array).astype(np.int64)
        if lab.shape != image.shape:
            raise InputError(f"{case['label']}: expected the image's shape {image.shape}, found {lab.shape}")
        counts = np.bincount(lab.ravel())
        ml = float(np.prod(image.spacing)) / 1000.0
        for value in np.flatnonzero(counts):
            voxels[int(value)] = voxels.get(int(value), 0) + int(counts[value])
            volume_ml[int(value)] = volume_ml.get(int(value), 0.0) + float(counts[value]) * ml
        foreground = np.asarray(image.array)[lab > 0]
        if foreground.size > samples_per_case:
            foreground = rng.choice(foreground, samples_per_case, replace=False)
        samples.append(foreground.astype(np.float64))
    values = np.concatenate(samples) if samples else np.zeros(0)
    if values.size == 0:
        raise InputError(f"{cases[0]['label'] if cases else 'the dataset'}: expected foreground voxels in the labels, found none")
    present = sorted(v for v in voxels if v and v in classes)
    return {
        "num_cases": len(cases), "cases": [str(c["case"]) for c in cases],
        "spacings": [list(s) for s in spacings], "shapes": [list(s) for s in shapes],
        "intensity": {"p00_5": float(np.percentile(values, 0.5)), "p99_5": float(np.percentile(values, 99.5)),
                      "mean": float(values.mean()), "std": float(values.std())},
        "class_voxels": {str(k): voxels[k] for k in sorted(voxels)},
        "class_volumes_ml": {str(k): round(volume_ml[k], 3) for k in sorted(volume_ml)},
        "present": present, "table": {str(k): str(v) for k, v in sorted(classes.items())},
    }  # fmt: skip

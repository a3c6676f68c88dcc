"""Time medrefine's metrics on the real 41-class CT label against a perturbed copy, and MONAI's.

Loads ``../shared/data/totalseg_example/ct_seg.nii.gz`` (relative to the repository root; the
environment variable ``MEDREFINE_SHARED_DATA`` points elsewhere), perturbs a copy (per class: a
seeded random one-voxel dilation or erosion and a shift of up to one voxel), then times

- ``medrefine.metrics.compute_case_metrics`` for Dice, IoU, HD95, ASSD and NSD over every class
  present (per-class bounding boxes, one surface extraction and two EDTs per class);
- the same five metrics with MONAI's metric classes (``DiceMetric``, ``MeanIoU``,
  ``HausdorffDistanceMetric(percentile=95)``, ``SurfaceDistanceMetric(symmetric=True)``,
  ``SurfaceDiceMetric``) on the one-hot full volume, the usual MONAI route;

and prints both times, the ratio, and the largest difference between the two sets of values.

Run from the repository root::

    .venv/bin/python benchmarks/metrics.py [--repeats 5] [--monai-repeats 2] [--seed 0] [--tolerance 3.0] [--skip-monai]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDREFINE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data" / "totalseg_example"))


def perturb(label: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """A plausible 'prediction': each class dilated or eroded by one voxel (or kept) and shifted."""
    from scipy.ndimage import binary_dilation, binary_erosion, find_objects

    rng = np.random.default_rng(seed)
    out = np.zeros_like(label)
    for index, box in enumerate(find_objects(label)):
        if box is None:
            continue
        value = index + 1
        box = tuple(slice(max(s.start - 2, 0), min(s.stop + 2, n)) for s, n in zip(box, label.shape))
        mask = np.zeros(label.shape, bool)
        mask[box] = label[box] == value
        action = rng.choice(["dilate", "erode", "keep"])
        if action == "dilate":
            mask[box] = binary_dilation(mask[box])
        elif action == "erode" and binary_erosion(mask[box]).any():
            mask[box] = binary_erosion(mask[box])
        shift = [0, 0, 0]
        shift[int(rng.integers(0, 3))] = int(rng.integers(-1, 2))
        mask = np.roll(mask, shift, axis=(0, 1, 2))
        out[mask] = value
    return out


def best_of(repeats: int, fn):
    """(minimum wall time over ``repeats`` runs, result of the last run)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def run_monai(pred: np.ndarray, ref: np.ndarray, class_ids: list[int], spacing, tolerance: float) -> tuple[float, float, dict]:
    """MONAI's metric classes on one-hot volumes of the given classes: (one-hot time, metric time, values)."""
    import torch
    from monai.metrics import DiceMetric, HausdorffDistanceMetric, MeanIoU, SurfaceDiceMetric, SurfaceDistanceMetric

    start = time.perf_counter()
    lookup = np.zeros(max(int(pred.max()), int(ref.max()), max(class_ids)) + 1, np.int64)
    lookup[class_ids] = np.arange(1, len(class_ids) + 1)
    n = len(class_ids) + 1
    y_pred = torch.nn.functional.one_hot(torch.as_tensor(lookup[pred]), n).permute(3, 0, 1, 2)[None].float()
    y = torch.nn.functional.one_hot(torch.as_tensor(lookup[ref]), n).permute(3, 0, 1, 2)[None].float()
    onehot_time = time.perf_counter() - start
    kwargs = {"include_background": False, "reduction": "none"}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = {
            "dice": DiceMetric(**kwargs)(y_pred, y),
            "iou": MeanIoU(**kwargs)(y_pred, y),
            "hd95": HausdorffDistanceMetric(percentile=95, **kwargs)(y_pred, y, spacing=spacing),
            "assd": SurfaceDistanceMetric(symmetric=True, **kwargs)(y_pred, y, spacing=spacing),
            "nsd": SurfaceDiceMetric([tolerance] * (n - 1), **kwargs)(y_pred, y, spacing=spacing),
        }
    metric_time = time.perf_counter() - start
    return onehot_time, metric_time, {k: v[0].numpy() for k, v in values.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per medrefine timing; the best is reported (default 5)")
    parser.add_argument("--monai-repeats", type=int, default=2, help="runs of the (slow) MONAI timing (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbation (default 0)")
    parser.add_argument("--tolerance", type=float, default=3.0, help="NSD tolerance in mm (default 3.0 = one voxel)")
    parser.add_argument("--skip-monai", action="store_true", help="time medrefine only")
    args = parser.parse_args(argv)

    path = DATA / "ct_seg.nii.gz"
    if not path.is_file():
        print(f"benchmarks/metrics.py: the real CT label {path} is absent (the ../shared folder is missing); "
              "set MEDREFINE_SHARED_DATA to the totalseg_example folder.", file=sys.stderr)
        return 1

    import torch

    from medrefine.data.classes import load_classes
    from medrefine.io import load_label
    from medrefine.metrics import compute_case_metrics

    torch.set_num_threads(1)  # both sides single-threaded, as scipy's EDT and KD-tree are
    ref_volume = load_label(path)
    ref = ref_volume.array
    spacing = ref_volume.spacing
    pred = perturb(ref, seed=args.seed)
    classes = load_classes(DATA / "classes.json", task="total")
    class_ids = sorted(int(v) for v in np.unique(ref) if v)
    table = {c: classes.get(c, f"class_{c}") for c in class_ids}

    print(f"data: {path.name} shape {ref.shape} spacing {tuple(round(s, 3) for s in spacing)} mm, "
          f"{len(class_ids)} classes, perturbed copy (seed {args.seed}); NSD tolerance {args.tolerance} mm; "
          f"best of {args.repeats} (MONAI {args.monai_repeats}) runs, 1 thread")
    t_ours, df = best_of(args.repeats, lambda: compute_case_metrics(
        pred, ref, spacing=spacing, classes=table, nsd_tolerance_mm=args.tolerance, case="ct"))
    t_overlap, _ = best_of(args.repeats, lambda: compute_case_metrics(
        pred, ref, spacing=spacing, classes=table, metrics=("dice", "iou"), case="ct"))
    print(f"medrefine compute_case_metrics, all 5 metrics: {t_ours:.3f} s total, {1000 * t_ours / len(class_ids):.1f} ms per class")
    print(f"medrefine compute_case_metrics, dice+iou only: {t_overlap:.3f} s total, {1000 * t_overlap / len(class_ids):.2f} ms per class")
    logging.getLogger("medrefine.metrics").setLevel(logging.ERROR)  # one class at a time: the others are "not in the table"
    per_class = []
    for class_id, name in table.items():
        t_class, _ = best_of(args.repeats, lambda: compute_case_metrics(
            pred, ref, spacing=spacing, classes={class_id: name}, nsd_tolerance_mm=args.tolerance))
        per_class.append((t_class, class_id, name, int(np.count_nonzero(ref == class_id))))
    per_class.sort(reverse=True)
    print("  slowest classes (alone, incl. the bounding-box pass): " + ", ".join(
        f"{name} ({voxels} vox) {1000 * t:.1f} ms" for t, _, name, voxels in per_class[:5]))
    wide = df.pivot(index="class_id", columns="metric", values="value")
    print(f"  mean over classes: dice {wide['dice'].mean():.3f}, iou {wide['iou'].mean():.3f}, hd95 {wide['hd95'].mean():.2f} mm, "
          f"assd {wide['assd'].mean():.2f} mm, nsd {wide['nsd'].mean():.3f}")

    if not args.skip_monai:
        t_onehot, t_monai, monai_values = None, None, None
        times = []
        for _ in range(max(1, args.monai_repeats)):
            onehot_time, metric_time, monai_values = run_monai(pred, ref, class_ids, spacing, args.tolerance)
            times.append((onehot_time + metric_time, onehot_time, metric_time))
        total, t_onehot, t_monai = min(times)
        print(f"MONAI metric classes (one-hot {len(class_ids) + 1} channels): {total:.3f} s total "
              f"({t_onehot:.3f} s one-hot + {t_monai:.3f} s metrics), {1000 * total / len(class_ids):.1f} ms per class")
        print(f"ratio MONAI / medrefine: {total / t_ours:.1f}x")
        # structures present on both sides only: for a missing one MONAI gives inf, medrefine the diagonal
        both = (df.groupby("class_id")["status"].first() == "present").reindex(wide.index).to_numpy()
        diffs = {m: float(np.nanmax(np.abs(wide[m].to_numpy() - monai_values[m])[both])) for m in wide.columns}
        print(f"largest |medrefine - MONAI| per metric over the {int(both.sum())} classes in both: "
              + ", ".join(f"{m} {d:.2g}" for m, d in diffs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

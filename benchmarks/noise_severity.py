"""Measure how far each annotation-noise severity moves a label from the clean one.

For ``--cases`` cardiac phantoms (medrefine.data.phantoms) at ``--size``^3, corrupt the clean
label with every severity (medrefine.data.corruption.corrupt_label) and print the mean +- std
over cases of the mean foreground Dice (mean over classes 1..10 of the per-class Dice), the
per-class Dice, and the time per corruption. The table in docs/phantoms.md comes from:

    cd /work/main && .venv/bin/python benchmarks/noise_severity.py --cases 16 --size 64
    .venv/bin/python benchmarks/noise_severity.py --cases 4 --size 128    # optional
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from medrefine.data.corruption import SEVERITY_LEVELS, corrupt_label
from medrefine.data.phantoms import CARDIAC_CLASSES, make_cardiac_phantom


def dice_per_class(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of classes 1..num_classes-1 (NaN where both are empty), plain numpy."""
    n = num_classes
    both = np.bincount(ref.ravel().astype(np.int64) * n + pred.ravel(), minlength=n * n).reshape(n, n)
    inter = np.diag(both)[1:].astype(float)
    sizes = both.sum(0)[1:] + both.sum(1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sizes > 0, 2 * inter / sizes, np.nan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--severities", nargs="*", default=list(SEVERITY_LEVELS))
    args = parser.parse_args()

    severities = [s if s in SEVERITY_LEVELS else float(s) for s in args.severities]
    n = len(CARDIAC_CLASSES)
    dice = {s: [] for s in severities}
    seconds = {s: [] for s in severities}
    for case in range(args.cases):
        _, label, spacing = make_cardiac_phantom(args.size, seed=args.seed + case)
        for severity in severities:
            start = time.perf_counter()
            noisy = corrupt_label(label, severity=severity, seed=1000 + case, num_classes=n, spacing=spacing)
            seconds[severity].append(time.perf_counter() - start)
            dice[severity].append(dice_per_class(noisy, label, n))

    last = args.seed + args.cases - 1
    print(f"{args.cases} cases at {args.size}^3 (spacing {spacing[0]:.3f} mm), seeds {args.seed}..{last}")
    print()
    print("| severity | mean foreground Dice (mean ± std over cases) | time / case (s) |")
    print("|---|---|---|")
    for severity in severities:
        per_case = np.nanmean(np.array(dice[severity]), axis=1)
        print(f"| {severity} | {per_case.mean():.3f} ± {per_case.std():.3f} | {np.mean(seconds[severity]):.2f} |")
    print()
    print("| class | " + " | ".join(str(s) for s in severities) + " |")
    print("|---|" + "---|" * len(severities))
    for c in range(1, n):
        cells = []
        for severity in severities:
            values = np.array(dice[severity])[:, c - 1]
            cells.append(f"{np.nanmean(values):.2f} ± {np.nanstd(values):.2f}")
        print(f"| {c} {CARDIAC_CLASSES[c]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""Benchmark medrefine.geodesic against FastGeodis (CPU) and an exact Dijkstra reference.

Prints, for a 48x128x128 and a 128^3 volume (the MNI152 template shipped with nilearn, resampled to
the size; a smooth synthetic texture when nilearn is absent): the time of
:func:`medrefine.geodesic.generalised_geodesic_distance`, the time of FastGeodis'
``generalised_geodesic3d`` (or a note when FastGeodis is not installed), their ratio, and the largest
relative difference between the two results; then, on a 24x48x48 volume, the largest and mean
relative deviation of both from :func:`medrefine.geodesic.dijkstra_geodesic_distance` (the exact
shortest path on the 26-connected grid with the same local cost), and of the lambda=0 result from
the exact Euclidean distance transform (scipy).

Times are the best of ``--repeats`` runs after one warm-up run (median in brackets); the two
implementations alternate so that load from other processes hits both alike.

Run:
    cd /work/main && .venv/bin/python benchmarks/geodesic.py [--repeats 7] [--threads 2]

FastGeodis builds from source in a virtual environment that has torch:
    pip install "setuptools<70" wheel && pip install --no-build-isolation FastGeodis
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from medrefine.geodesic import dijkstra_geodesic_distance, generalised_geodesic_distance

SIZES = [(48, 128, 128), (128, 128, 128)]
SMALL = (24, 48, 48)
NUM_SEEDS = 7  # as PA-Seg's seven clicked points


def load_source() -> tuple[torch.Tensor, str]:
    """The MNI152 T1 template in [0, 1] with 1 mm voxels, or a synthetic stand-in."""
    try:
        from nilearn.datasets import load_mni152_template

        data = np.asarray(load_mni152_template().get_fdata(), dtype=np.float32)
        data = (data - data.min()) / max(float(data.max() - data.min()), 1e-12)
        return torch.from_numpy(data), "MNI152 template (nilearn), 1 mm"
    except ImportError:
        generator = torch.Generator().manual_seed(0)
        shape = (160, 192, 160)
        noise = F.avg_pool3d(torch.rand(1, 1, *shape, generator=generator), 9, 1, 4)[0, 0]
        grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, n) for n in shape], indexing="ij"))
        blob = (grid.pow(2).sum(0) < 0.5).float()
        data = 0.6 * blob + 0.4 * (noise - noise.min()) / (noise.max() - noise.min())
        return data, "synthetic smooth texture + blob (nilearn absent)"


def make_case(source: torch.Tensor, size: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Resample ``source`` to ``size`` (same field of view) and place seeds inside bright tissue."""
    image = F.interpolate(source[None, None], size=size, mode="trilinear", align_corners=True)
    spacing = [float(o - 1) / (n - 1) for o, n in zip(source.shape, size)]
    rng = np.random.default_rng(0)
    inside = np.argwhere(image[0, 0].numpy() > 0.5)
    points = inside[rng.choice(len(inside), NUM_SEEDS, replace=False)]
    seeds = torch.zeros_like(image)
    seeds[(0, 0, *points.T)] = 1.0
    return image.contiguous(), seeds, spacing


def relative_deviation(values: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Largest and mean ``|values - reference| / reference`` over non-seed voxels."""
    mask = reference > 0
    rel = np.abs(values[mask] - reference[mask]) / reference[mask]
    return float(rel.max()), float(rel.mean())


def time_runs(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in functions}
    for name, fn in functions.items():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (FastGeodis uses OpenMP)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    try:
        import FastGeodis
    except ImportError:
        FastGeodis = None

    source, source_name = load_source()
    print(f"image: {source_name}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        "FastGeodis: "
        + (
            f"{getattr(FastGeodis, '__version__', '?')} (CPU)"
            if FastGeodis
            else "not installed -> FastGeodis columns skipped (pip install 'setuptools<70' wheel && "
            "pip install --no-build-isolation FastGeodis)"
        )
    )
    print(f"seeds: {NUM_SEEDS} voxels in bright tissue; time = best of {args.repeats} (median)")
    print()
    header = (
        f"{'volume':>12} {'spacing (mm)':>17} {'lambda':>6} {'passes':>6} {'medrefine s':>17} "
        f"{'FastGeodis s':>17} {'ratio':>6} {'max rel diff':>12}"
    )
    print(header)
    print("-" * len(header))
    for size in SIZES:
        image, seeds, spacing = make_case(source, size)
        for lam, passes in ((0.5, 2), (1.0, 2), (1.0, 4)):
            functions = {
                "medrefine": partial(
                    generalised_geodesic_distance,
                    image,
                    seeds,
                    spacing=spacing,
                    lambda_geodesic=lam,
                    num_passes=passes,
                )
            }
            if FastGeodis:
                functions["fastgeodis"] = partial(
                    FastGeodis.generalised_geodesic3d, image, 1 - seeds, spacing, 1e10, lam, passes
                )
            times = time_runs(functions, args.repeats)
            ours = generalised_geodesic_distance(image, seeds, spacing=spacing, lambda_geodesic=lam, num_passes=passes)
            t_ours = f"{min(times['medrefine']):.3f} ({statistics.median(times['medrefine']):.3f})"
            if FastGeodis:
                theirs = FastGeodis.generalised_geodesic3d(image, 1 - seeds, spacing, 1e10, lam, passes)
                t_fg = f"{min(times['fastgeodis']):.3f} ({statistics.median(times['fastgeodis']):.3f})"
                ratio = f"{min(times['medrefine']) / min(times['fastgeodis']):.2f}"
                diff = f"{relative_deviation(ours.double().numpy(), theirs.double().numpy())[0]:.1e}"
            else:
                t_fg, ratio, diff = "not installed", "-", "-"
            volume = "x".join(map(str, size))
            spacing_text = ",".join(f"{s:.2f}" for s in spacing)
            print(f"{volume:>12} {spacing_text:>17} {lam:>6} {passes:>6} {t_ours:>17} {t_fg:>17} {ratio:>6} {diff:>12}")

    image, seeds, spacing = make_case(source, SMALL)
    print()
    print(
        f"accuracy on {'x'.join(map(str, SMALL))} (spacing {', '.join(f'{s:.2f}' for s in spacing)} mm): "
        "relative deviation max / mean over non-seed voxels"
    )
    header = f"{'lambda':>6} {'passes':>6} {'reference':>22} {'medrefine':>20} {'FastGeodis':>20}"
    print(header)
    print("-" * len(header))
    image_np, seeds_np = image[0, 0].double().numpy(), seeds[0, 0].numpy()
    for lam in (0.0, 0.5, 1.0):
        reference = dijkstra_geodesic_distance(image_np, seeds_np, spacing=spacing, lambda_geodesic=lam)
        for passes in (1, 2, 4):
            ours = generalised_geodesic_distance(image, seeds, spacing=spacing, lambda_geodesic=lam, num_passes=passes)
            mx, mean = relative_deviation(ours[0, 0].double().numpy(), reference)
            text_ours = f"{mx:.1e} / {mean:.1e}"
            if FastGeodis:
                theirs = FastGeodis.generalised_geodesic3d(image, 1 - seeds, spacing, 1e10, lam, passes)
                mx, mean = relative_deviation(theirs[0, 0].double().numpy(), reference)
                text_fg = f"{mx:.1e} / {mean:.1e}"
            else:
                text_fg = "not installed"
            print(f"{lam:>6} {passes:>6} {'Dijkstra 26-neighbour':>22} {text_ours:>20} {text_fg:>20}")
    try:
        from scipy.ndimage import distance_transform_edt
    except ImportError:
        print("scipy absent: exact EDT comparison skipped")
        return
    edt = distance_transform_edt(seeds_np == 0, sampling=spacing)
    for radius in (1, 2, 3):
        ours = generalised_geodesic_distance(
            image, seeds, spacing=spacing, lambda_geodesic=0.0, num_passes=2, neighbourhood_radius=radius
        )
        mx, mean = relative_deviation(ours[0, 0].double().numpy(), edt)
        text_ours = f"{mx:.1e} / {mean:.1e}"
        text_fg = "-"
        if FastGeodis and radius == 1:
            theirs = FastGeodis.generalised_geodesic3d(image, 1 - seeds, spacing, 1e10, 0.0, 2)
            mx, mean = relative_deviation(theirs[0, 0].double().numpy(), edt)
            text_fg = f"{mx:.1e} / {mean:.1e}"
        label = f"exact EDT, radius {radius}"
        print(f"{0.0:>6} {2:>6} {label:>22} {text_ours:>20} {text_fg:>20}")


if __name__ == "__main__":
    main()

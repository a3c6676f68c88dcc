"""Benchmark: medrefine's gated CRF loss against a straightforward unfold-based implementation.

Both implementations get the same 1x2x48x128x128 logits and image (spacing 3.0 x 0.5 x 0.5 mm),
down-sample them the same way (area averaging, then softmax), and evaluate the same loss
(Potts, one kernel: position sigma 6 mm, intensity sigma 0.1, radius 5, out-of-volume neighbours
excluded, normalised by the number of voxels). Two forms are measured:

* ``3d``          full 3D neighbourhood ((2r+1)^3 = 1331 offsets), down-sampling factor 2
                  -> 24x64x64 voxels. (The unfold version at 48x64x64 would need ~6-8 GB.)
* ``multiview2d`` PA-Seg's multi-view 2D form (in-plane (2r+1)^2 = 121 offsets per view, three
                  views averaged), down-sampling factor (1, 2, 2) -> 48x64x64 voxels (PA-Seg's
                  ``--down_size 64 64 48`` for a 128x128x48 patch).

Method. Each (implementation, form) runs in a fresh Python subprocess. After the inputs are
built and one small warm-up call has loaded every kernel, the process resets its peak resident
set size (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0) and records its current RSS; it then
runs forward + backward once and reads the peak (``VmHWM`` in ``/proc/self/status``). "peak MB"
is peak minus the RSS before the call: the extra memory the loss needs, including autograd's
saved tensors and the gradient. Where clear_refs is unavailable, ``getrusage(RUSAGE_SELF)
.ru_maxrss`` minus the RSS before the call is used instead (an upper bound). Time is the best of
``--repeats`` further forward + backward calls (``time.perf_counter``), which is robust to
other load on a shared machine. Torch runs with ``--threads`` threads (default 1) in both.
The loss values and the gradients w.r.t. the logits of the two implementations are compared
(relative difference).

Run::

    .venv/bin/python benchmarks/crf_loss.py            # both forms
    .venv/bin/python benchmarks/crf_loss.py --forms 3d --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = (1, 2, 48, 128, 128)
SPACING = (3.0, 0.5, 0.5)
RADIUS = 5
SIGMA_POSITION_MM = 6.0
SIGMA_INTENSITY = 0.1
FORMS = {"3d": (3, (2, 2, 2)), "multiview2d": ("multiview2d", (1, 2, 2))}


# ------------------------------------------------------------------------------------------------
# the straightforward baseline: unfold the neighbourhoods and let autograd do the rest
# ------------------------------------------------------------------------------------------------
def _unfold(x, radius):
    """Zero-padded neighbourhoods of (N, C, *spatial) as (N, C, *spatial, k^d) (a copy)."""
    import torch.nn.functional as F

    nd = x.ndim - 2
    padded = F.pad(x, [radius] * (2 * nd))
    for axis in range(nd):
        padded = padded.unfold(2 + axis, 2 * radius + 1, 1)
    return padded.reshape(*x.shape, -1)


def unfold_gated_crf(probs, image, spacing_mm, radius, sigma_pos, sigma_int):
    """Gated CRF loss over all (2r+1)^d neighbours via unfolding, for (N, C, *spatial) inputs."""
    import torch

    nd = probs.ndim - 2
    k = 2 * radius + 1
    grids = torch.meshgrid(*[torch.arange(-radius, radius + 1, dtype=probs.dtype)] * nd, indexing="ij")
    dist2 = sum((g * s) ** 2 for g, s in zip(grids, spacing_mm)).reshape(-1)
    position = torch.exp(-dist2 / (2 * sigma_pos**2))
    position[(k**nd) // 2] = 0.0  # no self pair
    valid = _unfold(torch.ones_like(image[:, :1]), radius)  # neighbour inside the volume
    image_unfolded = _unfold(image, radius)
    intensity = torch.exp(-((image_unfolded - image.unsqueeze(-1)) ** 2).sum(1, keepdim=True) / (2 * sigma_int**2))
    kernel = intensity * valid * position
    probs_unfolded = _unfold(probs, radius)
    agreement = (probs.unsqueeze(-1) * probs_unfolded).sum(1, keepdim=True)
    return (kernel * (1.0 - agreement)).sum() / (probs.shape[0] * probs[0, 0].numel())


def unfold_loss(logits, image, form, factor):
    """Down-sample like GatedCRFLoss, then evaluate the unfold baseline (3D or multi-view 2D)."""
    import torch

    from medrefine.losses.crf import downsample_for_crf

    size = tuple(max(1, int(round(s / f))) for s, f in zip(logits.shape[2:], factor))
    spacing = [s * n / o for s, n, o in zip(SPACING, logits.shape[2:], size)]
    probs = torch.softmax(downsample_for_crf(logits, size), 1)
    small = downsample_for_crf(image, size)
    if form == 3:
        return unfold_gated_crf(probs, small, spacing, RADIUS, SIGMA_POSITION_MM, SIGMA_INTENSITY)
    views = []
    for axis in range(3):  # slices along `axis`: move it into the batch dimension
        others = [a for a in range(3) if a != axis]
        perm = (0, 2 + axis, 1, 2 + others[0], 2 + others[1])

        def to_2d(x):
            x = x.permute(perm)
            return x.reshape(-1, x.shape[2], x.shape[3], x.shape[4])

        p2, i2 = to_2d(probs), to_2d(small)
        loss = unfold_gated_crf(p2, i2, [spacing[o] for o in others], RADIUS, SIGMA_POSITION_MM, SIGMA_INTENSITY)
        views.append(loss)
    return sum(views) / 3.0


def ours_loss(logits, image, form, factor):
    from medrefine.losses.crf import GatedCRFLoss

    loss_fn = GatedCRFLoss(
        sigma_position_mm=SIGMA_POSITION_MM,
        sigma_intensity=SIGMA_INTENSITY,
        radius=RADIUS,
        downsample_factor=factor,
        spatial_dims=form,
        softmax=True,
    )
    return loss_fn(logits, image, spacing=SPACING)


# ------------------------------------------------------------------------------------------------
# measurement in a fresh process
# ------------------------------------------------------------------------------------------------
def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not found in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmHWM") <= _status_kb("VmRSS") + 1024
    except OSError:
        return False


def worker(impl: str, form_name: str, repeats: int, threads: int, grad_path: str) -> dict:
    import resource

    import torch

    torch.set_num_threads(threads)
    form, factor = FORMS[form_name]
    fn = ours_loss if impl == "medrefine" else unfold_loss
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(SHAPE, generator=gen).requires_grad_(True)
    image = torch.randn((1, 1, *SHAPE[2:]), generator=gen)

    # warm-up on a small crop so that lazy initialisation is not counted as the loss's memory
    small = logits.detach()[..., :8, :16, :16].clone().requires_grad_(True)
    fn(small, image[..., :8, :16, :16].clone(), form, factor).backward()

    exact = _reset_peak()
    rss_before = _status_kb("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    loss = fn(logits, image, form, factor)
    loss.backward()
    first = time.perf_counter() - start
    if exact:
        peak_kb = _status_kb("VmHWM") - rss_before
        method = "VmHWM after clear_refs"
    else:
        peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, maxrss_before) - rss_before
        method = "ru_maxrss"
    torch.save(logits.grad, grad_path)

    times = [first]
    for _ in range(repeats):
        logits.grad = None
        start = time.perf_counter()
        fn(logits, image, form, factor).backward()
        times.append(time.perf_counter() - start)
    return {"loss": float(loss.detach()), "peak_mb": peak_kb / 1024.0, "time_s": min(times), "method": method}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forms", nargs="+", choices=sorted(FORMS), default=["3d", "multiview2d"])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the memory run (best is kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each subprocess")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "FORM", "GRAD_PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        impl, form_name, grad_path = args.worker
        print(json.dumps(worker(impl, form_name, args.repeats, args.threads, grad_path)))
        return 0

    import torch

    print(f"gated CRF loss, logits {SHAPE}, spacing {SPACING} mm, r={RADIUS}, "
          f"sigma_pos={SIGMA_POSITION_MM} mm, sigma_int={SIGMA_INTENSITY}, torch {torch.__version__}, "
          f"{args.threads} thread(s), best of {args.repeats + 1} forward+backward calls")
    header = f"{'form':<12} {'grid':<10} {'implementation':<16} {'time s':>8} {'peak MB':>9} {'loss':>12}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for form_name in args.forms:
            form, factor = FORMS[form_name]
            grid = "x".join(str(max(1, int(round(s / f)))) for s, f in zip(SHAPE[2:], factor))
            results = {}
            for impl in ("medrefine", "unfold"):
                grad_path = str(Path(tmp) / f"{impl}_{form_name}.pt")
                cmd = [sys.executable, os.path.abspath(__file__), "--repeats", str(args.repeats),
                       "--threads", str(args.threads), "--worker", impl, form_name, grad_path]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"{form_name:<12} {grid:<10} {impl:<16} FAILED (exit {proc.returncode}): "
                          f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
                    continue
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                res["grad"] = torch.load(grad_path)
                results[impl] = res
                print(f"{form_name:<12} {grid:<10} {impl:<16} {res['time_s']:>8.2f} {res['peak_mb']:>9.1f} "
                      f"{res['loss']:>12.6f}")
            if len(results) == 2:
                ours, ref = results["medrefine"], results["unfold"]
                rel_loss = abs(ours["loss"] - ref["loss"]) / abs(ref["loss"])
                rel_grad = float((ours["grad"] - ref["grad"]).norm() / ref["grad"].norm())
                print(f"{'':<12} {'':<10} {'ratio':<16} {ref['time_s'] / ours['time_s']:>7.2f}x "
                      f"{ref['peak_mb'] / max(ours['peak_mb'], 1e-3):>8.1f}x   (unfold / medrefine; >1 = ours better)")
                print(f"{'':<12} {'':<10} agreement: relative difference loss {rel_loss:.2e}, "
                      f"gradient {rel_grad:.2e}  [memory: {ours['method']}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Data-parallel scaling on this machine: training samples/s and inference cases/min, 1 vs N processes.

Runs the ``multiorgan_ct_segmentation`` bundle with its smoke config (a tiny 3D U-Net) on
synthetic cardiac phantoms, the way a user would: one process through
``python -m monai.bundle run``, N processes through ``python -m torch.distributed.run
--standalone --nproc_per_node N`` with the ``multi_gpu_train`` / ``multi_gpu_inference`` override
(gloo on CPU, nccl on GPU). Every process gets one thread (``OMP_NUM_THREADS=1``), so N processes
use N cores.

- Training: the same global batch (``batch_size`` is global in every bundle; each of N processes
  loads global batch / N), the epochs after the
  warm-up epoch(s), timed inside the run from the trainer's per-epoch seconds in
  ``logs/history.csv`` (process start-up, caching and the first epoch are left out); validation
  is switched off during the timed epochs. Samples = iterations x per-process batch x crops per
  case x N.
- Inference: ``--infer-cases`` unseen phantoms; the time of the evaluator's run (ignite's
  ``state.times["COMPLETED"]``, reading, inference, inversion and writing of every case) of the
  slowest process, recorded by a config layered on top. Start-up and the final merge are left out.

Efficiency = speedup / processes (1.0: perfect scaling). The machine may be shared: compare the
rows of one run, not runs on different days.

Usage::

    python benchmarks/scaling.py [--processes 2] [--cases 9] [--size 48] [--epochs 6] [--warmup 1]
                                 [--infer-cases 31] [--global-batch 4] [--work /tmp/medrefine_scaling] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE = REPO_ROOT / "bundles" / "multiorgan_ct_segmentation"


def _command(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "monai.bundle", "run"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "monai.bundle", "run"]


def _run(processes: int, root: Path, layers: list[str], overrides: dict[str, object]) -> float:
    configs = root / "configs"
    cmd = _command(processes) + [
        "--config_file", str([str(configs / f"{layer}.json") for layer in layers]),
        "--meta_file", str(configs / "metadata.json"), "--bundle_root", str(root),
    ]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd[:8])} ... failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def train(processes: int, root: Path, cohort: Path, args: argparse.Namespace) -> tuple[float, float]:
    """(samples per second over the timed epochs, wall seconds of the whole run)."""
    if args.global_batch % processes:
        sys.exit(f"--global-batch {args.global_batch} must be divisible by {processes} processes")
    work = root / f"train_{processes}"
    shutil.rmtree(work, ignore_errors=True)
    batch = args.global_batch // processes  # what each process loads
    layers = ["train", "multi_gpu_train", "smoke"] if processes > 1 else ["train", "smoke"]
    wall = _run(processes, root, layers, {
        "work_dir": str(work), "dataset_dir": str(cohort), "epochs": args.epochs, "batch_size": args.global_batch,
        "num_samples": args.crops, "val_interval": args.epochs + 1, "resume": False, "device": "cpu",
    })
    with open(work / "logs" / "history.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh)]
    timed = rows[args.warmup:]
    iterations = int(rows[-1]["iteration"]) - int(rows[args.warmup - 1]["iteration"]) if args.warmup else int(rows[-1]["iteration"])
    seconds = sum(float(r["seconds"]) for r in timed)
    return iterations * batch * args.crops * processes / seconds, wall


def infer(processes: int, root: Path, cohort: Path, model_dir: Path, args: argparse.Namespace) -> tuple[float, float]:
    """(cases per minute, wall seconds of the whole run)."""
    out = root / f"infer_{processes}"
    shutil.rmtree(out, ignore_errors=True)
    timer = root / "configs" / "bench_timer.json"
    timer.write_text(json.dumps({
        "bench_file": f"$'{out}/seconds_rank' + str(torch.distributed.get_rank() if torch.distributed.is_initialized() else 0)",
        "run": ["$@evaluator.run()", "$open(@bench_file, 'w').write(str(@evaluator.state.times['COMPLETED']))"],
    }))
    layers = ["inference", "multi_gpu_inference", "smoke", "bench_timer"] if processes > 1 else ["inference", "smoke", "bench_timer"]
    wall = _run(processes, root, layers, {"work_dir": str(model_dir.parent), "dataset_dir": str(cohort),
                                          "output_dir": str(out), "device": "cpu"})
    seconds = max(float(p.read_text()) for p in out.glob("seconds_rank*"))
    written = len(list(out.glob("*_seg.nii.gz")))
    if written != args.infer_cases:
        sys.exit(f"{out}: expected {args.infer_cases} segmentations, found {written}")
    return args.infer_cases / seconds * 60.0, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--processes", type=int, default=2, help="processes of the parallel runs (default 2)")
    parser.add_argument("--cases", type=int, default=9, help="phantom cases to train on (one held out for validation). Default 9")
    parser.add_argument("--infer-cases", type=int, default=31, help="phantom cases to infer (odd: the ranks differ by one). Default 31")
    parser.add_argument("--size", type=int, default=48, help="edge of each phantom volume in voxels. Default 48")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs, warm-up included. Default 6")
    parser.add_argument("--warmup", type=int, default=1, help="epochs left out of the timing. Default 1")
    parser.add_argument("--global-batch", type=int, default=4, help="cases per optimiser step over all processes. Default 4")
    parser.add_argument("--crops", type=int, default=2, help="random crops per case (num_samples). Default 2")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medrefine_scaling"), help="scratch folder (replaced)")
    parser.add_argument("--quick", action="store_true", help="5 training and 9 inference cases of 32^3, 3 epochs (about a minute and a half)")
    args = parser.parse_args()
    if args.quick:
        args.cases, args.infer_cases, args.size, args.epochs = 5, 9, 32, 3
    if not 1 <= args.warmup < args.epochs:
        sys.exit(f"--warmup must be in [1, --epochs), got {args.warmup} with --epochs {args.epochs}")
    from medrefine.data.phantoms import make_cardiac_cohort

    shutil.rmtree(args.work, ignore_errors=True)
    root = args.work / "bundle"
    shutil.copytree(BUNDLE, root, ignore=shutil.ignore_patterns("models", "eval", "logs", "__pycache__"))
    cohort = make_cardiac_cohort(args.work / "cohort", cases=args.cases, size=args.size, noise="moderate", seed=0)
    unseen = make_cardiac_cohort(args.work / "unseen", cases=args.infer_cases, size=args.size, noise="moderate", seed=1)
    import torch

    print(f"torch {torch.__version__} on {platform.processor() or platform.machine()} ({os.cpu_count()} cores), "
          f"multiorgan_ct_segmentation smoke, phantoms of {args.size}^3, 1 thread per process")
    print(f"training: {args.cases - 1} cases, global batch {args.global_batch} x {args.crops} crops, {args.epochs} epochs, "
          f"first {args.warmup} untimed; inference: {args.infer_cases} unseen cases")
    rows = []
    for kind in ("train", "inference"):
        base = None
        for n in (1, args.processes):
            if kind == "train":
                rate, wall = train(n, root, cohort, args)
            else:
                rate, wall = infer(n, root, unseen, root / "train_1" / "models", args)
            base = rate if base is None else base
            rows.append((kind, n, rate, "samples/s" if kind == "train" else "cases/min", rate / base, rate / base / n, wall))
    print(f"{'task':<10} {'processes':>9} {'throughput':>11} {'unit':<10} {'speedup':>8} {'efficiency':>10} {'wall s':>7}")
    for kind, n, rate, unit, speedup, efficiency, wall in rows:
        print(f"{kind:<10} {n:>9} {rate:>11.2f} {unit:<10} {speedup:>7.2f}x {efficiency:>10.2f} {wall:>7.1f}")


if __name__ == "__main__":
    main()

"""Multi-organ segmentation benchmark: (1) fit one real CT, (2) low-memory inference at full size.

Part ``fit``: the ``multiorgan_ct_segmentation`` bundle (3D U-Net by default) is trained and
validated on one and the same real case, ``../shared/data/totalseg_example/ct.nii.gz`` +
``ct_seg.nii.gz`` (41 TotalSegmentator structures; the environment variable
``MEDREFINE_SHARED_DATA`` points elsewhere). By default the network learns every structure present
in the label (41 structures, 42 output channels); ``--structures five`` restricts it to liver, spleen,
both kidneys and aorta.
Training on the test case proves the pipeline learns (data, labels, loss, inference,
inversion to the original grid, evaluation); it says nothing about generalisation. Then the
bundle's evaluate mode writes per-structure metrics; the target is mean Dice >= 0.8 on each of
the five structures.

Part ``memory``: peak RSS and time of the low-memory inference
(:func:`medrefine.inferers.slab.slab_sliding_window_argmax`) on a synthetic 512x512x300 CT with
41 structures (42 output channels), next to MONAI's ``sliding_window_inference`` + argmax on a
smaller volume (its full-size output alone would be 42 x 512 x 512 x 300 float32 = 13.2 GB).
Each measurement runs in a fresh process (``ru_maxrss``, printed in GiB as ``peak_rss_gb``).
Target: low-memory peak <= 4 GB.

Run from the repository root::

    .venv/bin/python benchmarks/multiorgan.py fit [--epochs 300] [--network unet] [--out /tmp/mo_fit]
    .venv/bin/python benchmarks/multiorgan.py fit --smoke           # a few epochs: checks the pipeline only
    .venv/bin/python benchmarks/multiorgan.py memory [--shape 512 512 300] [--classes 41] [--standard-shape 256 256 150]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDREFINE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data" / "totalseg_example"))
STRUCTURES = ["liver", "spleen", "kidney_left", "kidney_right", "aorta"]


# ------------------------------------------------------------------------------------- fit


def _cohort(out: Path) -> Path:
    """One-case decathlon datalist over the real CT (files referenced, not copied)."""
    for name in ("ct.nii.gz", "ct_seg.nii.gz", "classes.json"):
        if not (DATA / name).is_file():
            sys.exit(f"missing {DATA / name}: set MEDREFINE_SHARED_DATA to the totalseg_example folder")
    cohort = out / "cohort"
    cohort.mkdir(parents=True, exist_ok=True)
    for name in ("ct.nii.gz", "ct_seg.nii.gz"):
        link = cohort / name
        if not link.exists():
            link.symlink_to(DATA / name)
    shutil.copy(DATA / "classes.json", cohort / "classes.json")
    datalist = {"name": "totalseg_example", "training": [{"case": "s0000", "image": "ct.nii.gz", "label": "ct_seg.nii.gz"}]}
    (cohort / "datalist.json").write_text(json.dumps(datalist, indent=1))
    return cohort


def _present_structures() -> list[str]:
    """Names of the structures that occur in the real label (41 of the 117 TotalSegmentator classes)."""
    import numpy as np

    from medrefine.io import load_label, read_json

    table = read_json(DATA / "classes.json")["total"]
    values = np.unique(load_label(DATA / "ct_seg.nii.gz").array)
    return [table[str(int(v))] for v in values if v]


def fit(args: argparse.Namespace) -> int:
    import pandas as pd
    from monai.bundle import ConfigWorkflow

    from medrefine.bundle import config_files, find_bundle
    from medrefine.metrics import read_metrics_csv

    out = Path(args.out)
    if out.exists() and not args.resume:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    cohort = _cohort(out)
    bundle = find_bundle("multiorgan_ct_segmentation")
    root = out / "bundle"
    if not root.exists():
        shutil.copytree(bundle.path, root, ignore=shutil.ignore_patterns("models", "eval", "inference", "logs"))
    epochs = 4 if args.smoke else args.epochs
    structures = STRUCTURES if args.structures == "five" else _present_structures()
    overrides = {
        "dataset_dir": str(cohort), "bundle_root": str(root), "work_dir": str(root), "device": args.device,
        "network_name": args.network, "formulation": args.formulation, "structures": structures, "classes_task": "total",
        "num_val": 0, "pixdim": [3.0, 3.0, 3.0], "hu_window": [-200.0, 300.0], "roi_size": [96, 96, 32], "num_samples": 4,
        "batch_size": 1, "channels": [16, 32, 64, 128], "num_res_units": 1, "learning_rate": args.lr, "lr_min": args.lr / 10,
        "epochs": epochs, "val_interval": 2 if args.smoke else args.val_interval, "prob_flip": 0.0, "prob_rotate": 0.0,
        "prob_elastic": 0.0, "prob_intensity": 0.3, "cache_rate": 1.0, "num_workers": 0, "num_threads": args.threads,
    }
    files = {mode: [str(root / "configs" / f.name) for f in config_files(bundle, mode)] for mode in ("train", "evaluate")}
    start = time.perf_counter()
    for mode in ("train", "evaluate"):
        workflow = ConfigWorkflow(config_file=files[mode], meta_file=str(root / "configs" / "metadata.json"),
                                  logging_file=str(root / "configs" / "logging.conf"), workflow_type=None, **overrides)
        workflow.initialize()
        workflow.run()
        workflow.finalize()
    elapsed = time.perf_counter() - start
    df = read_metrics_csv(root / "eval" / "metrics.csv")
    dice = df[df["metric"] == "dice"].set_index("class_name")["value"]
    print(f"data: {DATA / 'ct.nii.gz'} (fit-to-one-case: train = validation = evaluation case)")
    print(f"network {args.network}, {args.formulation}, {epochs} epochs, {elapsed:.0f} s (train + evaluate)")
    print(f"{len(structures)} structures learned; all of them:")
    print(pd.DataFrame({"dice": dice.sort_values(ascending=False)}).to_string(float_format=lambda v: f"{v:.3f}"))
    five = dice.reindex(STRUCTURES)
    ok = bool((five >= 0.8).all())
    print(f"mean Dice over all {len(dice)} structures {dice.mean():.3f}")
    print("target structures: " + ", ".join(f"{k} {v:.3f}" for k, v in five.items()))
    print(f"liver, spleen, kidneys, aorta each >= 0.8: {ok}")
    print(f"outputs: {root / 'eval'} (metrics.csv, report/), history: {root / 'logs' / 'history.csv'}")
    return 0 if ok or args.smoke else 1


# ---------------------------------------------------------------------------------- memory


def _tiny_network(channels: int):
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(8, channels, 1)).eval()


def _measure(args: argparse.Namespace) -> int:
    """Child process: one inference, prints a JSON line with time and peak RSS."""
    import resource

    import torch

    torch.set_num_threads(args.threads)
    shape = tuple(args.shape)
    generator = torch.Generator().manual_seed(0)
    image = torch.rand((1, 1) + shape, generator=generator)  # a synthetic CT scaled to [0, 1]
    net = _tiny_network(args.classes + 1)
    start = time.perf_counter()
    with torch.no_grad():
        if args.method == "slab":
            from medrefine.inferers.slab import slab_sliding_window_argmax

            dtype = torch.float16 if args.float16 else torch.float32
            labels = slab_sliding_window_argmax(image, args.roi, net, sw_batch_size=args.sw_batch_size,
                                                overlap=0.25, buffer_dtype=dtype)
        else:
            from monai.inferers import sliding_window_inference

            labels = sliding_window_inference(image, args.roi, args.sw_batch_size, net, overlap=0.25,
                                              mode="gaussian").argmax(1, keepdim=True).to(torch.uint8)
    elapsed = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux
    print(json.dumps({"method": args.method, "shape": list(shape), "channels": args.classes + 1, "roi": list(args.roi),
                      "float16": bool(args.float16), "seconds": round(elapsed, 1), "peak_rss_gb": round(peak_gb, 2),
                      "labels": list(labels.shape)}))
    return 0


def memory(args: argparse.Namespace) -> int:
    runs = [("slab", args.shape, False)]
    if args.float16:
        runs.append(("slab", args.shape, True))
    if not args.skip_standard:
        runs.append(("standard", args.standard_shape, False))
    results = []
    for method, shape, half in runs:
        cmd = [sys.executable, __file__, "_measure", "--method", method, "--classes", str(args.classes),
               "--threads", str(args.threads), "--sw-batch-size", str(args.sw_batch_size),
               "--shape", *map(str, shape), "--roi", *map(str, args.roi)] + (["--float16"] if half else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
            results.append({"method": method, "shape": shape, "error": proc.returncode})
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    c = args.classes + 1
    print(f"output channels {c}; MONAI's full-size logits alone would take "
          f"{c * 4 * args.shape[0] * args.shape[1] * args.shape[2] / 1024**3:.1f} GB (float32)")
    for r in results:
        print(json.dumps(r))
    slab = [r for r in results if r.get("method") == "slab" and "peak_rss_gb" in r]
    return 0 if slab and all(r["peak_rss_gb"] <= 4.0 for r in slab) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("fit", help="fit-to-one-case training on the real CT")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--val-interval", type=int, default=25)
    p.add_argument("--network", default="unet", choices=["unet", "attention_unet", "unet2d", "unet2.5d"])
    p.add_argument("--formulation", default="multiclass", choices=["multiclass", "multilabel"])
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--structures", default="present", choices=["present", "five"],
                   help="present: all 41 structures of the label (default); five: the five target structures only")
    p.add_argument("--device", default="cuda:0" if os.environ.get("CUDA_VISIBLE_DEVICES") else "cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="/tmp/medrefine_multiorgan_fit")
    p.add_argument("--resume", action="store_true", help="keep --out and continue from its latest checkpoint")
    p.add_argument("--smoke", action="store_true", help="4 epochs: checks that the pipeline runs")
    for name in ("memory", "_measure"):
        m = sub.add_parser(name, help="peak RSS and time of low-memory vs standard inference" if name == "memory" else None)
        m.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300])
        m.add_argument("--standard-shape", type=int, nargs=3, default=[256, 256, 150])
        m.add_argument("--roi", type=int, nargs=3, default=[128, 128, 32])
        m.add_argument("--classes", type=int, default=41)
        m.add_argument("--sw-batch-size", type=int, default=4)
        m.add_argument("--threads", type=int, default=2)
        m.add_argument("--float16", action="store_true", help="also measure (memory) / use (_measure) a float16 buffer")
        m.add_argument("--skip-standard", action="store_true")
        m.add_argument("--method", default="slab", choices=["slab", "standard"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return {"fit": fit, "memory": memory, "_measure": _measure}[args.part](args)


if __name__ == "__main__":
    sys.exit(main())

"""Point-supervision benchmark (PA-Seg): how close do seven clicks per image get to full labels?

For each task it prints the Dice (against the full labels) of

  (p) the geodesic pseudo-labels: the expanded seeds' foreground (unlabeled counted as background);
  (1) stage 1: network A trained on the expanded seeds (partial CE + Dice, multi-view gated CRF and
      variance losses with ramp-up), selected by Dice on the seeds (no full labels);
  (2) stage 2: network A after self and cross monitoring with network B (both from stage 1),
      selected by the agreement of the two networks;
  (f) full supervision: network A with the same schedule trained on the full labels;

and the targets stage 1 >= 0.85 x full supervision, stage 2 >= stage 1. Everything runs through the
``point_supervised_segmentation`` bundle (``medrefine.bundle.run_workflow``), as a user would.

Tasks:

* ``phantom``: blob phantoms (a lumpy target in textured background, 3D,
  :func:`medrefine.data.blobs.make_blob_phantom`); trained on ``--train-cases`` cases with
  simulated seven-point annotations, tested on ``--test-cases`` other cases.
* ``liver``, ``spleen``: the real CT in ../shared/data/totalseg_example (3 mm, 122 x 101 x 30) with
  seven simulated points on the organ. There is one such case, so training and test image are the
  same (the weak-label setting: points on an image, the segmentation of that image scored); the
  full-supervision reference then fits that case's full label (an upper bound, not a
  generalisation figure).
* ``mr_liver``, ``mr_spleen``, ``mr_kidney``: the same on the real MR of that folder (3 mm,
  117 x 91 x 20, smaller than the bundle's ``roi_size``), liver, spleen and right kidney.

Every task runs with the bundle's defaults: the intensity normalisation and the recipe are chosen
from the image (``intensity: auto``: CT window for the CT, percentiles for the MR and the phantom),
``roi_size`` is the bundle's, and the networks are the bundle's ``network_name`` (A) and
``network2_name`` (B).

Run from the repository root::

    .venv/bin/python benchmarks/point_supervision.py                       # all tasks
    .venv/bin/python benchmarks/point_supervision.py --tasks phantom --epochs 40
    .venv/bin/python benchmarks/point_supervision.py --quick                # minutes: checks the pipeline only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL_CT = Path(os.environ.get("MEDREFINE_SHARED_DATA", REPO.parent / "shared" / "data" / "totalseg_example"))
# TotalSegmentator class values: task "total" (CT) and "total_mr" (MR)
REAL_TASKS = {"liver": ("ct", 5, "liver"), "spleen": ("ct", 1, "spleen"), "mr_liver": ("mr", 5, "liver"),
              "mr_spleen": ("mr", 1, "spleen"), "mr_kidney": ("mr", 2, "kidney_right")}
TASKS = ["phantom", *REAL_TASKS]
# the bundle's defaults: its recipes (one per intensity mode, chosen from the image) and its networks
TRAIN = json.loads((REPO / "bundles" / "point_supervised_segmentation" / "configs" / "train.json").read_text())
STAGE2 = json.loads((REPO / "bundles" / "point_supervised_segmentation" / "configs" / "stage2.json").read_text())
EXPANSION_KEYS = ("threshold", "lambda_geodesic", "background_threshold", "smooth_mm")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    p.add_argument("--train-cases", type=int, default=8, help="phantom training cases (default 8)")
    p.add_argument("--test-cases", type=int, default=4, help="phantom test cases (default 4)")
    p.add_argument("--size", type=int, default=48, help="phantom grid edge (default 48)")
    p.add_argument("--epochs", type=int, default=None, help="stage-1 and full-supervision epochs (default: 60 phantom, 100 CT and MR)")
    p.add_argument("--stage2-epochs", type=int, default=None, help="stage-2 epochs (default: half of --epochs)")
    p.add_argument("--network-a", default=TRAIN["network_name"], help="primary network (default: the bundle's network_name)")
    p.add_argument("--network-b", default=STAGE2["network2_name"], help="second network of stage 2 (default: the bundle's network2_name)")
    p.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=JSON",
                   help="extra bundle override for every run, e.g. --set weight_variance=0.0")
    p.add_argument("--quick", action="store_true", help="tiny: 3+2 phantoms of 32^3, 4 epochs (checks the pipeline)")
    p.add_argument("--out", type=Path, default=Path("/tmp/medrefine_point_supervision"))
    args = p.parse_args(argv)
    if args.quick:
        args.train_cases, args.test_cases, args.size, args.epochs = 3, 2, 32, 4
    return args


# ----------------------------------------------------------------------------------- data


def make_phantom_task(out: Path, args) -> dict:
    from medrefine.data.blobs import make_blob_phantom
    from medrefine.data.phantoms import phantom_affine
    from medrefine.io import save_nifti
    from medrefine.points import simulate_points, write_points_json

    entries = {"training": [], "test": []}
    for i in range(args.train_cases + args.test_cases):
        image, label, spacing = make_blob_phantom(args.size, seed=1000 + i)
        affine = phantom_affine(image.shape, spacing)
        case = f"blob_{i:03d}"
        img = save_nifti(image, out / "images" / f"{case}.nii.gz", affine=affine)
        lab = save_nifti(label, out / "labels" / f"{case}.nii.gz", affine=affine)
        entry = {"case": case, "image": str(img), "label": str(lab)}
        if i < args.train_cases:
            points = simulate_points(label, affine, seed=i, source=case)
            entry["points"] = str(write_points_json(points, out / "points" / f"{case}.json",
                                                    reference_shape=label.shape, reference_affine=affine))
            entries["training"].append(entry)
        else:
            entries["test"].append(entry)
    (out / "datalist.json").write_text(json.dumps(entries, indent=1))
    return {"dataset_dir": str(out), "target_classes": [1], "epochs": args.epochs or 60, "test_key": "test"}


def make_real_task(out: Path, name: str, args) -> dict:
    from medrefine.io import load_label
    from medrefine.points import simulate_points, write_points_json

    modality, value, organ = REAL_TASKS[name]
    image, seg = REAL_CT / f"{modality}.nii.gz", REAL_CT / f"{modality}_seg.nii.gz"
    for path in (image, seg):
        if not path.is_file():
            raise SystemExit(f"missing {path}: set MEDREFINE_SHARED_DATA to the totalseg_example folder")
    label = load_label(seg)
    points = simulate_points(label.array, label.affine, classes=[value], seed=0, source=f"{organ} of {seg.name}")
    out.mkdir(parents=True, exist_ok=True)
    pts = write_points_json(points, out / f"{organ}_points.json", reference_shape=label.shape, reference_affine=label.affine)
    entry = {"case": f"{modality}_{organ}", "image": str(image), "label": str(seg), "points": str(pts)}
    (out / "datalist.json").write_text(json.dumps({"training": [entry], "test": [entry]}, indent=1))
    return {"dataset_dir": str(out), "target_classes": [value], "class_names": [organ], "epochs": args.epochs or 100,
            "test_key": "test"}


def pseudo_label_dice(task: dict, expansion: dict) -> tuple[list[float], str]:
    """Dice of the geodesic pseudo-labels' foreground against the full labels, per training case,
    with the intensity mode the bundle chooses for the cohort (returned too)."""
    from monai.transforms import LoadImage

    from medrefine.io import load_image, load_label
    from medrefine.points import load_points
    from medrefine.transforms import expand_point_set
    from medrefine.workflows.point_supervision import cohort_intensity, intensity_transform

    datalist = json.loads((Path(task["dataset_dir"]) / "datalist.json").read_text())
    mode = cohort_intensity(datalist["training"], expansion.pop("intensity", "auto"), expansion.pop("intensity_range", None))
    normalise = intensity_transform(mode, None)
    target = task["target_classes"][0]
    scores = []
    for e in datalist["training"]:
        image = load_image(e["image"])
        points = load_points(e["points"], image=image)
        tensor = LoadImage(image_only=True, ensure_channel_first=True)(e["image"])
        array = np.asarray(normalise({"image": tensor})["image"][0], dtype=np.float32)
        seeds = expand_point_set(array, points, image.affine, **expansion)
        fg, ref = seeds == target, load_label(e["label"]).array == target
        scores.append(2 * float((fg & ref).sum()) / max(1.0, float(fg.sum() + ref.sum())))
    return scores, mode


# ------------------------------------------------------------------------------------ runs


def run(root: Path, mode: str, overrides: dict) -> None:
    from medrefine.bundle import find_bundle, run_workflow

    if not root.exists():
        shutil.copytree(find_bundle("point_supervised_segmentation").path, root,
                        ignore=shutil.ignore_patterns("models", "eval", "inference", "logs"))
    run_workflow(root, mode, overrides)


def test_dice(root: Path, overrides: dict, task: dict, tag: str) -> float:
    import pandas as pd

    out = root / f"eval_{tag}"
    run(root, "evaluate", {**overrides, "data_key": task["test_key"], "output_dir": str(out), "write_report": False})
    df = pd.read_csv(out / "metrics.csv")
    return float(df[df["metric"] == "dice"]["value"].mean())


def run_task(name: str, task: dict, args, work: Path) -> dict:
    common = {
        "dataset_dir": task["dataset_dir"], "device": "cpu", "num_threads": args.threads, "channels": args.channels,
        "target_classes": task["target_classes"], "class_names": task.get("class_names"),
        "epochs": task["epochs"], "val_interval": max(1, task["epochs"] // 6), "sw_batch_size": 1,
        "rampup_epochs": max(1, task["epochs"] // 10),
    }
    for item in args.overrides:
        key, _, value = item.partition("=")
        common[key] = json.loads(value)
    result: dict = {"task": name}
    t0 = time.perf_counter()
    intensity = {"intensity": common.get("intensity", TRAIN["intensity"]), "intensity_range": common.get("intensity_range")}
    probe, mode = pseudo_label_dice(task, dict(intensity))
    recipe = {**TRAIN["recipes"][mode], **{k: common[k] for k in EXPANSION_KEYS if k in common}}
    scores, _ = pseudo_label_dice(task, {**intensity, **{k: recipe[k] for k in EXPANSION_KEYS}})
    result["pseudo"], result["intensity"] = float(np.mean(scores)), mode
    weak = work / "weak"
    a = {**common, "bundle_root": str(weak), "work_dir": str(weak), "network_name": args.network_a}
    run(weak, "train", a)
    result["stage1"] = test_dice(weak, a, task, "stage1")
    run(weak, "train", {**common, "bundle_root": str(weak), "work_dir": str(weak), "network_name": args.network_b})
    stage2 = {**a, "network2_name": args.network_b, "epochs": args.stage2_epochs or max(2, task["epochs"] // 2),
              "refresh_epochs": max(1, (args.stage2_epochs or max(2, task["epochs"] // 2)) // 5)}
    stage2["val_interval"] = max(1, stage2["epochs"] // 5)
    run(weak, "stage2", stage2)
    result["stage2"] = test_dice(weak, a, task, "stage2")
    full = work / "full"
    f = {**a, "bundle_root": str(full), "work_dir": str(full), "simulate_points": True, "seed_transforms": [], "weight_crf": 0.0,
         "weight_variance": 0.0, "expand_transforms": [{"_target_": "CopyItemsd", "keys": "label", "names": "seeds"}]}
    run(full, "train", f)
    result["full"] = test_dice(full, f, task, "full")
    result["minutes"] = (time.perf_counter() - t0) / 60
    return result


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("pseudo", "geodesic pseudo-label"), ("stage1", "stage 1"), ("stage2", "stage 2"), ("full", "full labels")]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.2
    for k, (key, label) in enumerate(keys):
        xs = [i + (k - 1.5) * width for i in range(len(results))]
        ax.bar(xs, [r[key] for r in results], width, label=label)
    ax.set_xticks(range(len(results)), [r["task"] for r in results])
    ax.set(ylabel="Dice", ylim=(0, 1), title="point supervision (7 clicks) vs full labels")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from medrefine.handlers import TrainingCollapsed

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("ignite", "monai", "medrefine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    results = []
    for name in args.tasks:
        data = args.out / name / "data"
        task = make_phantom_task(data, args) if name == "phantom" else make_real_task(data, name, args)
        print(f"[{name}] training (epochs {task['epochs']}) ...", flush=True)
        try:
            results.append(run_task(name, task, args, args.out / name))
        except TrainingCollapsed as err:  # the bundle stopped a collapsed run: the task fails, the others still run
            print(f"[{name}] {err}", flush=True)
            results.append({"task": name, "intensity": "?", "pseudo": float("nan"), "stage1": 0.0, "stage2": 0.0,
                            "full": float("nan"), "minutes": float("nan"), "collapsed": str(err)})
            continue
        r = results[-1]
        print(f"[{name}] intensity {r['intensity']}  pseudo {r['pseudo']:.3f}  stage1 {r['stage1']:.3f}  stage2 {r['stage2']:.3f}  full {r['full']:.3f}  "
              f"({r['minutes']:.1f} min)", flush=True)
    print(f"\nnetworks: A = {args.network_a}, B = {args.network_b}; channels {args.channels}; threads {args.threads}")
    print(f"{'task':<10} {'intensity':>10} {'pseudo':>7} {'stage1':>7} {'stage2':>7} {'full':>7} {'s1/full':>8} {'s2>=s1':>7} {'min':>6}")
    ok = True
    for r in results:
        ratio = r["stage1"] / r["full"] if r["full"] > 0 else float("nan")
        better = r["stage2"] >= r["stage1"]
        ok &= bool(ratio >= 0.85 and better and "collapsed" not in r)
        print(f"{r['task']:<10} {r['intensity']:>10} {r['pseudo']:7.3f} {r['stage1']:7.3f} {r['stage2']:7.3f} {r['full']:7.3f} {ratio:8.3f} "
              f"{str(better):>7} {r['minutes']:6.1f}")
    print(f"targets (stage 1 >= 0.85 x full, stage 2 >= stage 1) met on every task: {ok}")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "point_supervision.png")
    print(f"results: {args.out / 'results.json'}, plot: {args.out / 'point_supervision.png'}")
    return 0 if ok or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: how much does NeAR refinement improve noisy multi-class labels, on data it was not tuned on?

Tune on one thing, report on another: it runs two independently written cardiac phantom
families, ``own`` (:mod:`medrefine.data.phantoms` + :mod:`medrefine.data.corruption`, the
family the recipe was tuned on) and ``sdf`` (:mod:`medrefine.data.heart_sdf` +
:mod:`medrefine.data.annotator_noise`: signed-distance anatomy, connected coronary trees of
1.5-2.5 mm radius, slice-wise and model-style annotator errors; never used for tuning). On each
(moderately noisy labels, mean foreground Dice ~0.75 against the clean ones) it compares,
against the clean labels:

  (a) the noisy labels themselves;
  (b) the best per-class morphological smoothing (closing then opening with a ball; the radius of
      each class searched against the clean labels, so an optimistic baseline);
  (c) a MONAI 3D U-Net trained on the noisy labels and applied to the same cases;
  (d) NeAR, transductive: the auto-decoder trained on all cases' noisy labels, each case decoded
      with its own latent;
  (e) NeAR, inductive: trained without the last ``--held-out`` cases, which are then refined by
      fitting a new latent each with the decoder frozen.

It prints mean foreground Dice and HD95 per method, per-class Dice and HD95, the structures
that got worse than the noisy input or were erased, and the training and refinement times;
refinement runs with the do-no-harm guard unless ``--no-guard``. With ``--real-ct`` it also
corrupts the 41-class label of the real CT in ../shared/data/totalseg_example with the same noise
model, refines it, and prints noisy vs refined.

    .venv/bin/python benchmarks/near_refinement.py            # the full run (16 cases)
    .venv/bin/python benchmarks/near_refinement.py --quick    # a few minutes, smaller everything
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
REAL_CT = REPO.parent / "shared" / "data" / "totalseg_example"
WINDOW = (-100.0, 500.0)  # HU window scaled to [0, 1]: contrast-enhanced blood pool vs myocardium vs fat


def bundle_recipe() -> dict:
    """The loss, optimiser and decoder settings of the bundle's train.json: the benchmark measures its defaults."""
    from medrefine.workflows.near_plan import bundle_recipe as recipe

    return recipe(REPO / "bundles" / "annotation_refinement")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=16, help="phantom cases (default 16)")
    p.add_argument("--held-out", type=int, default=4, help="cases kept out of training for (e) (default 4)")
    p.add_argument("--size", type=int, default=64, help="phantom grid edge (default 64)")
    p.add_argument("--resolution", type=int, default=64, help="cube edge NeAR refines at (default 64: the phantoms' native grid; NeAR used 128 on 128^3-scale data)")
    p.add_argument("--train-resolution", type=int, default=32, help="query grid edge in training (default 32)")
    p.add_argument("--num-points", type=int, default=4096, help="random query points per case and step (default 4096)")
    p.add_argument("--epochs", type=int, default=None, help="NeAR epochs (default: the bundle's, default_epochs(cases): 200 for 16 cases, 1,600 for the one real CT)")
    p.add_argument("--grid-sizes", nargs="+", type=int, default=[4, 8], help="latent grid edges, coarse to fine (default 4 8, the bundle's)")
    p.add_argument("--grid-channels", nargs="+", type=int, default=[64, 32], help="channels per grid (default 64 32, the bundle's)")
    p.add_argument("--batch-size", type=int, default=8, help="NeAR cases per step (default 8)")
    p.add_argument("--fit-steps", type=int, default=60, help="latent-fitting steps for (e) (default 60, the bundle's)")
    p.add_argument("--fit-lr", type=float, default=0.03, help="latent-fitting learning rate for (e) (default 0.03, the bundle's)")
    p.add_argument("--unet-epochs", type=int, default=30, help="U-Net epochs for (c) (default 30)")
    p.add_argument("--noise", default="moderate", help="annotation noise severity (default moderate)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--skip-unet", action="store_true", help="skip baseline (c)")
    p.add_argument("--families", nargs="+", default=["own", "sdf"], choices=["own", "sdf"],
                   help="phantom families (default both: own = tuned on, sdf = independent)")
    p.add_argument("--no-guard", action="store_true", help="refine without the do-no-harm guard")
    p.add_argument("--real-ct", action="store_true", help="also run on the real CT's 41-class label")
    p.add_argument("--quick", action="store_true", help="small and fast: 6 cases, 48^3, few epochs")
    p.add_argument("--out", type=Path, default=None, help="keep the outputs here (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.quick:
        args.cases, args.held_out, args.size, args.resolution = 6, 2, 48, 64
        args.train_resolution, args.epochs, args.fit_steps, args.unet_epochs = 24, 100, 40, 10
    return args


# ------------------------------------------------------------------------------------ scores


def scores(pred: np.ndarray, ref: np.ndarray, spacing, classes: dict[int, str]) -> dict[str, dict[int, float]]:
    from medrefine.metrics import compute_case_metrics

    df = compute_case_metrics(pred, ref, spacing=spacing, classes=classes, metrics=("dice", "hd95"))
    out: dict[str, dict[int, float]] = {"dice": {}, "hd95": {}}
    for _, r in df.iterrows():
        out[r["metric"]][int(r["class_id"])] = float(r["value"])
    return out


def summarise(per_case: list[dict[str, dict[int, float]]], classes: dict[int, str]) -> dict:
    fg = [c for c in classes if c != 0]
    dice = np.array([[s["dice"].get(c, np.nan) for c in fg] for s in per_case])
    hd = np.array([[s["hd95"].get(c, np.nan) for c in fg] for s in per_case])
    return {
        "dice": float(np.nanmean(np.nanmean(dice, axis=1))),
        "hd95": float(np.nanmean(np.nanmean(hd, axis=1))),
        "per_class": {c: float(np.nanmean(dice[:, i])) for i, c in enumerate(fg)},
        "per_class_hd95": {c: float(np.nanmedian(hd[:, i])) for i, c in enumerate(fg)},
    }


# --------------------------------------------------------------------------------- baselines


def morphological_smoothing(noisy: np.ndarray, radii: dict[int, int]) -> np.ndarray:
    """Per class: binary closing then opening with a ball of the class's radius (voxels)."""
    from scipy import ndimage
    from skimage.morphology import ball

    out = np.zeros_like(noisy)
    for c, r in sorted(radii.items()):
        mask = noisy == c
        if r > 0 and mask.any():
            fp = ball(r)
            mask = ndimage.binary_opening(ndimage.binary_closing(mask, structure=fp), structure=fp)
        out[mask & (out == 0)] = c
    return out


def best_smoothing(noisy_list, clean_list, spacing, classes, radii=(0, 1, 2, 3)) -> tuple[list[np.ndarray], dict[int, int]]:
    """Search each class's radius for the best mean Dice against the clean labels (an oracle choice)."""
    from medrefine.metrics.binary import binary_metrics

    best: dict[int, int] = {}
    for c in (c for c in classes if c != 0):
        means = []
        for r in radii:
            ds = []
            for noisy, clean in zip(noisy_list, clean_list):
                smoothed = morphological_smoothing(np.where(noisy == c, c, 0).astype(noisy.dtype), {c: r}) == c
                ds.append(binary_metrics(smoothed, clean == c, spacing=spacing, metrics=("dice",))[0]["dice"])
            means.append(np.nanmean(ds))
        best[c] = radii[int(np.nanargmax(means))]
    return [morphological_smoothing(n, best) for n in noisy_list], best


def unet_baseline(images, noisy_list, num_classes: int, epochs: int, seed: int) -> list[np.ndarray]:
    """A MONAI 3D U-Net trained on the noisy labels (whole volumes, flips), applied to the same cases."""
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    net = UNet(spatial_dims=3, in_channels=1, out_channels=num_classes, channels=(16, 32, 64, 128),
               strides=(2, 2, 2), num_res_units=1)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    x = torch.as_tensor(np.stack(images))[:, None].float()
    y = torch.as_tensor(np.stack(noisy_list))[:, None].long()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(2):
            xb, yb = x[idx], y[idx]
            for axis in (2, 3, 4):
                if torch.rand(1, generator=gen) < 0.5:
                    xb, yb = xb.flip(axis), yb.flip(axis)
            opt.zero_grad()
            loss_fn(net(xb), yb).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return [net(x[i : i + 1]).argmax(1)[0].numpy().astype(np.uint8) for i in range(len(x))]


# --------------------------------------------------------------------------------------- NeAR


def train_near(cases, args, workdir: Path):
    from medrefine.engines import create_autodecoder_trainer
    from medrefine.losses.near import NeARLoss, inverse_frequency_weights
    from medrefine.networks import ImplicitRefiner

    k = 11 if args.num_classes is None else args.num_classes
    recipe = bundle_recipe()
    net = ImplicitRefiner(num_cases=len(cases), out_channels=k, grid_sizes=tuple(args.grid_sizes),
                          grid_channels=tuple(args.grid_channels), latent_dim=recipe["latent_dim"],
                          hidden_channels=tuple(recipe["hidden_channels"]))
    labels = torch.stack([torch.as_tensor(c["label"]).long() for c in cases])
    weights = inverse_frequency_weights(labels, k, class_weight_cap=recipe["class_weight_cap"])
    from medrefine.engines import default_epochs, default_latent_weight

    epochs = args.epochs or default_epochs(len(cases))
    latent = default_latent_weight(epochs) if recipe["lambda_latent"] is None else float(recipe["lambda_latent"])
    loss = NeARLoss(k, class_weights=weights, lambda_dice=recipe["lambda_dice"], lambda_latent=latent)
    trainer = create_autodecoder_trainer(
        net, cases, loss_function=loss, lr=recipe["learning_rate"], max_epochs=epochs, batch_size=args.batch_size,
        train_resolution=args.train_resolution, num_points=args.num_points, seed=args.seed,
    )
    start = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - start
    # the bundle's path: model.pt + model.json (the last weights: no reference label chooses them), built back
    from medrefine.data.phantoms import CARDIAC_CLASSES
    from medrefine.workflows.near import export_model, load_model

    export_model(trainer, cases, workdir / "export", classes=getattr(args, "class_table", None) or CARDIAC_CLASSES,
                 preprocessing={"resolution": args.resolution, "margin_mm": 10.0, "window": list(WINDOW)})
    net, model = load_model(workdir / "export")
    return net, model, seconds


def refine(net, model, cases, out_dir: Path, refine_mode: str, args) -> list[np.ndarray]:
    """Refine with the trained model; inductive fitting uses the training loss recorded in model.json."""
    from medrefine.io import load_label
    from medrefine.workflows.near import refine_cases

    written = refine_cases(net, cases, out_dir, refine_mode=refine_mode, model=model, fit_steps=args.fit_steps, fit_lr=args.fit_lr,
                           fit_resolution=args.train_resolution, fit_num_points=args.num_points,
                           guard=not args.no_guard)
    return [load_label(w["refined"]).array for w in written]


# ------------------------------------------------------------------------------------ report


def print_table(results: dict[str, dict], classes: dict[int, str]) -> None:
    names = list(results)
    print(f"\n{'method':<44} {'mean fg Dice':>12} {'HD95 mm':>8}")
    for n in names:
        print(f"{n:<44} {results[n]['dice']:>12.3f} {results[n]['hd95']:>8.2f}")
    print(f"\nper-class Dice\n{'class':<24}" + "".join(f"{n.split(' ')[0]:>8}" for n in names))
    for c, name in classes.items():
        if c == 0:
            continue
        print(f"{name:<24}" + "".join(f"{results[n]['per_class'][c]:>8.3f}" for n in names))
    print("\nper-class HD95 (mm), median over cases (a class missing from a prediction counts as the volume's diagonal)")
    print(f"{'class':<24}" + "".join(f"{n.split(' ')[0]:>8}" for n in names))
    for c, name in classes.items():
        if c == 0:
            continue
        print(f"{name:<24}" + "".join(f"{results[n]['per_class_hd95'][c]:>8.2f}" for n in names))


FAMILIES = {
    "own": "medrefine.data.phantoms (the family the recipe was tuned on)",
    "sdf": "medrefine.data.heart_sdf (written independently; not used for tuning)",
}


def make_family_cohort(family: str, out_dir: Path, args) -> Path:
    """A cohort of ``family`` with the benchmark's size and noise: its datalist path."""
    if family == "own":
        from medrefine.data.phantoms import make_cardiac_cohort

        return make_cardiac_cohort(out_dir, cases=args.cases, size=args.size, noise=args.noise, seed=args.seed)
    from medrefine.data.heart_sdf_cohort import make_heart_sdf_cohort

    return make_heart_sdf_cohort(out_dir, cases=args.cases, size=args.size, noise=args.noise, seed=args.seed)


def run_family(family: str, args, workdir: Path) -> dict[str, dict]:
    """(a) noisy, (b) best smoothing, (c) U-Net, (d) NeAR transductive, (e) NeAR inductive on one family."""
    from medrefine.data.phantoms import CARDIAC_CLASSES
    from medrefine.io import load_image, load_label
    from medrefine.workflows.near import load_refinement_cases

    classes = CARDIAC_CLASSES
    print(f"\n=== family {family}: {FAMILIES[family]}", flush=True)
    datalist = make_family_cohort(family, workdir / "cohort", args)
    cases = load_refinement_cases(datalist, size=args.resolution, num_classes=11, window=WINDOW)
    clean = [load_label(c["clean_path"]).array for c in cases]
    noisy = [load_label(c["label_path"]).array for c in cases]
    images = [load_image(c["image_path"]).array for c in cases]
    spacing = load_label(cases[0]["clean_path"]).spacing
    held = args.held_out
    results: dict[str, dict] = {}

    def record(name: str, preds: list[np.ndarray], refs: list[np.ndarray]) -> None:
        results[name] = summarise([scores(p, r, spacing, classes) for p, r in zip(preds, refs)], classes)
        results[name]["erased"] = sum(int(((p == c).sum() == 0) and ((r == c).sum() > 0))
                                      for p, r in zip(preds, refs) for c in classes if c)
        print(f"  {name}: mean fg Dice {results[name]['dice']:.3f}, HD95 {results[name]['hd95']:.2f} mm", flush=True)

    record("(a) noisy labels", noisy, clean)
    smoothed, radii = best_smoothing(noisy, clean, spacing, classes)
    record("(b) best per-class smoothing", smoothed, clean)
    print(f"      radii per class: {radii}")
    if not args.skip_unet:
        t = time.perf_counter()
        hu = [np.clip((im + 1000.0) / 2000.0, 0, 1).astype(np.float32) for im in images]
        record("(c) 3D U-Net on noisy labels", unet_baseline(hu, noisy, 11, args.unet_epochs, args.seed), clean)
        print(f"      U-Net training + inference {time.perf_counter() - t:.0f} s")

    net, model, seconds = train_near(cases, args, workdir / "transductive")
    t = time.perf_counter()
    record("(d) NeAR transductive", refine(net, model, cases, workdir / "out_d", "transductive", args), clean)
    per_case_d = (time.perf_counter() - t) / len(cases)
    from medrefine.engines import default_epochs

    print(f"      NeAR training {seconds / 60:.1f} min ({args.epochs or default_epochs(len(cases))} epochs, {len(cases)} cases); "
          f"refinement {per_case_d:.1f} s per case")

    train_cases, new_cases = cases[:-held], cases[-held:]
    net_e, model_e, seconds_e = train_near(train_cases, args, workdir / "inductive")
    record(f"(a') noisy labels, {held} held-back cases", noisy[-held:], clean[-held:])
    t = time.perf_counter()
    record(f"(e) NeAR inductive, {held} held-back cases", refine(net_e, model_e, new_cases, workdir / "out_e",
                                                               "inductive", args), clean[-held:])
    per_case_e = (time.perf_counter() - t) / len(new_cases)
    print(f"      NeAR training (inductive model) {seconds_e / 60:.1f} min; refinement (latent fit + decode) "
          f"{per_case_e:.1f} s per case")
    print_table(results, classes)
    a, d = results["(a) noisy labels"]["dice"], results["(d) NeAR transductive"]["dice"]
    b = results["(b) best per-class smoothing"]["dice"]
    a2 = results[f"(a') noisy labels, {held} held-back cases"]
    e = results[f"(e) NeAR inductive, {held} held-back cases"]
    worse = {m: [classes[c] for c in results[m]["per_class"] if results[m]["per_class"][c] < ref["per_class"][c] - 0.01]
             for m, ref in (("(d) NeAR transductive", results["(a) noisy labels"]),
                            (f"(e) NeAR inductive, {held} held-back cases", a2))}
    print(f"\n[{family}] (d) - (a) = {d - a:+.3f} (target >= +0.08);  (d) - (b) = {d - b:+.3f};  "
          f"(e) - (a') = {e['dice'] - a2['dice']:+.3f} (target >= +0.05)")
    print(f"[{family}] HD95 (d) {results['(d) NeAR transductive']['hd95']:.2f} vs noisy {results['(a) noisy labels']['hd95']:.2f} mm; "
          f"(e) {e['hd95']:.2f} vs {a2['hd95']:.2f} mm (target: <= noisy)")
    for m, names in worse.items():
        print(f"[{family}] {m}: structures below noisy - 0.01: {', '.join(names) or 'none'}; "
              f"structures erased in a case: {results[m]['erased']}")
    print(f"[{family}] NeAR training {seconds / 60:.1f} min for {len(cases)} cases (target <= 10); "
          f"refinement {per_case_d:.1f} s per case transductive, {per_case_e:.1f} s inductive (target <= 5)")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.num_classes = None
    workdir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="near_bench_"))
    if workdir.exists() and args.out:
        shutil.rmtree(workdir)
    print(f"cohorts: {args.cases} cardiac phantoms per family at {args.size}^3, {args.noise} noise; NeAR cube "
          f"{args.resolution}^3, train grid {args.train_resolution}^3, {args.num_points} points/case/step, "
          f"{args.epochs or 'default'} epochs, batch {args.batch_size}; guard {'on' if not args.no_guard else 'off'}; "
          f"torch {torch.__version__}, {args.threads} threads")
    for family in args.families:
        run_family(family, args, workdir / family)
    if args.real_ct:
        run_real_ct(args, workdir)
    if not args.out:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def run_real_ct(args, workdir: Path) -> None:
    """Corrupt the real CT's 41-class label, refine it (transductive, one case), compare."""
    import json

    from medrefine.data.classes import load_classes
    from medrefine.data.corruption import corrupt_label
    from medrefine.io import load_image, load_label, save_nifti
    from medrefine.workflows.near import load_refinement_cases

    if not (REAL_CT / "ct.nii.gz").is_file():
        print(f"\nreal CT: skipped ({REAL_CT} not found)")
        return
    image = load_image(REAL_CT / "ct.nii.gz")
    label = load_label(REAL_CT / "ct_seg.nii.gz")
    table = load_classes(REAL_CT / "classes.json", task="total")
    present = sorted(int(v) for v in np.unique(label.array) if v != 0)
    remap = np.zeros(int(label.array.max()) + 1, dtype=np.uint8)
    remap[present] = np.arange(1, len(present) + 1)
    clean = remap[label.array]
    classes = {0: "background", **{i + 1: table.get(c, f"class_{c}") for i, c in enumerate(present)}}
    noisy = corrupt_label(clean, severity=args.noise, seed=args.seed, spacing=label.spacing)
    d = workdir / "real"
    save_nifti(image, d / "images" / "ct.nii.gz")
    save_nifti(clean, d / "labels" / "ct.nii.gz", affine=label.affine)
    save_nifti(noisy, d / "labels_noisy" / "ct.nii.gz", affine=label.affine)
    (d / "datalist.json").write_text(json.dumps({"training": [{"case": "ct", "image": "images/ct.nii.gz",
                                                               "label": "labels_noisy/ct.nii.gz",
                                                               "label_clean": "labels/ct.nii.gz"}]}))
    k = len(classes)
    # the bundle's default cube: the CT's native resolution (a 64^3 cube would halve it in-plane)
    cases = load_refinement_cases(d, size=None, num_classes=k, margin_mm=5.0, window=(-160.0, 240.0))
    size = int(cases[0]["image"].shape[-1])
    args.num_classes = k
    args.class_table = classes
    args.batch_size = 1
    resolution, train_resolution = args.resolution, args.train_resolution
    args.resolution, args.train_resolution = size, size // 2
    net, model, seconds = train_near(cases, args, d / "train")
    t = time.perf_counter()
    refined = refine(net, model, cases, d / "out", "transductive", args)[0]
    per_case = time.perf_counter() - t
    args.resolution, args.train_resolution = resolution, train_resolution
    results: dict[str, dict] = {}
    for name, pred in (("(a) noisy labels", noisy),
                       ("(b) best per-class smoothing", best_smoothing([noisy], [clean], label.spacing, classes)[0][0]),
                       ("(d) NeAR transductive", refined)):
        results[name] = summarise([scores(pred, clean, label.spacing, classes)], classes)
    print(f"\n=== real CT ({k - 1} structures, {args.noise} noise; cube {size}^3, train grid {size // 2}^3)")
    print_table(results, classes)
    a, d_ = results["(a) noisy labels"], results["(d) NeAR transductive"]
    worse = [classes[c] for c in d_["per_class"] if d_["per_class"][c] < a["per_class"][c] - 0.01]
    erased = [classes[c] for c in classes if c and (refined == c).sum() == 0 and (noisy == c).sum() > 0]
    print(f"\n[real CT] (d) - (a) = {d_['dice'] - a['dice']:+.3f} (target >= +0.08); HD95 {d_['hd95']:.2f} vs noisy "
          f"{a['hd95']:.2f} mm (target: <= noisy)")
    print(f"[real CT] structures below noisy - 0.01: {', '.join(worse) or 'none'}; erased (in the input, not in the "
          f"output): {', '.join(erased) or 'none'}")
    print(f"[real CT] NeAR training {seconds / 60:.1f} min; refinement {per_case:.1f} s")


if __name__ == "__main__":
    sys.exit(main())

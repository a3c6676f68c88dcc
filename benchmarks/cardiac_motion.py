"""Cardiac motion (NIMOSEF) on cine phantoms with a known answer, next to a SimpleITK demons baseline.

Prints, for training and unseen subjects: Dice per structure (mean over frames) against the
phantom truth; LV and RV ejection-fraction absolute error (from the through-plane super-resolved
decoding, res_factor_z 2, against the exact phantom volumes); displacement end-point error (mm)
of the ED boundary points against the phantom's motion, for the model and for demons
registration from ED to each frame; Dice of the res_factor_z 2 segmentation against the phantom
sampled at that resolution; folding share; training time and code fitting time.

The model is trained with the bundle's defaults (configs/train.json, and inference.json's code
fitting); ``--set KEY=VALUE`` changes one for an experiment. The recipe was tuned on cohort seed 0;
the default seed 1 is a cohort it was not tuned on.

    python benchmarks/cardiac_motion.py --quick      # small cohort, few epochs (minutes on 2 cores)
    python benchmarks/cardiac_motion.py              # 20 training + 4 unseen subjects, 96x96x10, 20 frames
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


REPO = Path(__file__).resolve().parents[1]
NETWORK_KEYS = ("activation", "latent_dim", "hidden_channels", "num_layers", "max_displacement", "time_harmonics", "omega")
LOSS_KEYS = ("lambda_intensity", "lambda_seg", "lambda_code", "lambda_chamfer", "lambda_displacement",
             "lambda_ed_displacement", "lambda_folding", "lambda_volume", "lambda_laplacian", "lambda_consistency")
TRAIN_KEYS = ("epochs", "batch_size", "num_points", "boundary_points", "jacobian_points", "jacobian_method", "lr_network",
              "lr_codes", "lr_gamma", "grad_clip", "motion_warmup_epochs", "bidirectional_chamfer")
FIT_KEYS = ("fit_steps", "fit_lr", "fit_points")


def bundle_recipe() -> dict:
    """The bundle's defaults (train.json, and inference.json's code fitting): the benchmark measures them."""
    configs = REPO / "bundles" / "cardiac_motion" / "configs"
    train = json.loads((configs / "train.json").read_text())
    infer = json.loads((configs / "inference.json").read_text())
    recipe = {k: train[k] for k in NETWORK_KEYS + LOSS_KEYS + TRAIN_KEYS}
    recipe.update({k: infer[k] for k in FIT_KEYS})
    return recipe


def demons_epe(case: dict, points_world: np.ndarray, truth: np.ndarray, iterations: int) -> float:
    """EPE (mm) of SimpleITK fast symmetric demons from the ED frame to every frame, at the ED points."""
    import SimpleITK as sitk

    affine = case["affine"]
    spacing = np.linalg.norm(affine[:3, :3], axis=0)

    def image(frame):
        img = sitk.GetImageFromArray(np.ascontiguousarray(case["image"][..., frame].transpose(2, 1, 0)))
        img.SetSpacing(spacing.tolist())
        img.SetOrigin([-affine[0, 3], -affine[1, 3], affine[2, 3]])
        img.SetDirection([-1, 0, 0, 0, -1, 0, 0, 0, 1])
        return img

    fixed = image(case["ed_frame"])
    lps = points_world * np.array([-1.0, -1.0, 1.0])
    errors = []
    demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
    demons.SetNumberOfIterations(iterations)
    demons.SetStandardDeviations(1.5)
    for f in range(case["image"].shape[3]):
        field = demons.Execute(fixed, image(f))
        transform = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
        moved = np.array([transform.TransformPoint(p.tolist()) for p in lps]) * np.array([-1.0, -1.0, 1.0])
        errors.append(np.linalg.norm(moved - points_world - truth[f], axis=1).mean())
    return float(np.mean(errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small cohort and few epochs")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1, help="cohort seed (default 1; the recipe was tuned on seed 0)")
    parser.add_argument("--skip-demons", action="store_true", help="skip the registration baseline (its column prints nan)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value of the bundle's configs, e.g. --set lambda_laplacian=0.1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from medrefine.data.cine_implicit import load_split, preprocess_cine, read_manifest
    from medrefine.data.cine_phantoms import CinePhantom, make_cine_cohort, render_cine
    from medrefine.engines.nimosef import CineTensors, NimosefTrainer, nimosef_optimizer
    from medrefine.engines.nimosef_fit import fit_codes
    from medrefine.inferers.nimosef import decode_frames, upsampled_grid
    from medrefine.losses.jacobian import jacobian, jacobian_determinant
    from medrefine.losses.nimosef import NimosefLoss
    from medrefine.metrics.cardiac import cardiac_function, frame_dice, volume_curves
    from medrefine.networks.nimosef import nimosef_network
    from medrefine.workflows.nimosef import write_subject_outputs
    from ignite.engine import Events

    recipe = bundle_recipe()
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in recipe:
            parser.error(f"--set {item}: unknown key {key!r}; one of {sorted(recipe)}")
        try:
            recipe[key] = json.loads(value)
        except json.JSONDecodeError:  # a word such as siren or autograd
            recipe[key] = value
    if args.quick:
        n_train, n_test, size, slices, frames, spacing = 6, 2, (48, 48), 8, 8, (3.0, 3.0, 10.0)
        recipe.update(epochs=150, hidden_channels=64, fit_steps=100, num_points=2048)
    else:
        n_train, n_test, size, slices, frames, spacing = 20, 4, (96, 96), 10, 20, (1.5, 1.5, 8.0)
    epochs = args.epochs or int(recipe["epochs"])
    work = Path(tempfile.mkdtemp(prefix="cardiac_bench_"))
    root = make_cine_cohort(work / "cine", subjects=n_train + n_test, size=size, slices=slices, frames=frames,
                            spacing=spacing, seed=args.seed)
    manifest = read_manifest(preprocess_cine(root, work / "derivatives", seed=args.seed, write_parquet=False,
                                             require_transform=True))
    every = load_split(manifest, ["train", "val", "test"])
    every.sort(key=lambda c: c["case"])
    train, unseen = every[:n_train], every[n_train:]
    net = nimosef_network(len(train), **{k: recipe[k] for k in NETWORK_KEYS}, seed=args.seed)
    optimizer = nimosef_optimizer(net, recipe["lr_network"], recipe["lr_codes"])
    loss = NimosefLoss(**{k: recipe[k] for k in LOSS_KEYS}, motion_warmup_epochs=recipe["motion_warmup_epochs"],
                       bidirectional=recipe["bidirectional_chamfer"])
    trainer = NimosefTrainer(net, optimizer, train, loss, max_epochs=epochs, batch_size=recipe["batch_size"],
                             num_points=recipe["num_points"], boundary_points=recipe["boundary_points"],
                             jacobian_points=recipe["jacobian_points"], jacobian_method=recipe["jacobian_method"],
                             grad_clip=recipe["grad_clip"], seed=args.seed)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, recipe["lr_gamma"])
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: scheduler.step())  # once per epoch, as the bundle
    fit_steps = recipe["fit_steps"]
    start = time.time()
    trainer.run()
    train_time = time.time() - start
    scale = trainer.scale_mm
    unseen_data = CineTensors(unseen, scale)
    fit_start = time.time()
    codes_unseen = fit_codes(net, unseen_data, steps=fit_steps, lr=recipe["fit_lr"], num_points=recipe["fit_points"])
    fit_time = (time.time() - fit_start) / len(unseen)
    rows = []
    for group, cases, codes in (("train", train, net.latents.weight.detach()), ("unseen", unseen, codes_unseen)):
        data = CineTensors(cases, scale)
        for i, case in enumerate(cases):
            truth = json.loads((root / "derivatives/phantom_truth" / case["case"] / f"{case['case']}_truth.json").read_text())
            phantom = CinePhantom.from_dict(truth["phantom"])
            code = codes[i : i + 1]
            phases = [f / frames for f in range(frames)]
            seg = decode_frames(net, code, data.coords[i], phases, data.t_ed(i), heads=("seg",))["seg"].numpy()
            ref = case["label"].reshape(-1, frames).T
            dice = {k: float(np.nanmean(v)) for k, v in frame_dice(seg, ref, (1, 2, 3)).items()}
            hi = write_subject_outputs(net, code, case, work / "out" / group, scale_mm=scale, res_factor_z=2, write_parquet=False)
            aff_hi, shape_hi = upsampled_grid(case["affine"], case["image"].shape[:3], 2)
            _, truth_hi = render_cine(phantom, aff_hi, shape_hi, frames, image=False)
            dice_hi = float(np.nanmean([np.nanmean(v) for v in frame_dice(hi["seg"].transpose(3, 0, 1, 2),
                                                                           truth_hi.transpose(3, 0, 1, 2), (1, 2, 3)).values()]))
            func = cardiac_function(volume_curves(hi["seg"], np.linalg.norm(aff_hi[:3, :3], axis=0)), ed_frame=0)
            motion = np.load(root / "derivatives/phantom_truth" / case["case"] / f"{case['case']}_motion.npz")
            pts_w, true_d = motion["points"].astype(np.float64), motion["displacement"].astype(np.float64)
            inv = np.linalg.inv(case["local_to_world"])
            local = torch.from_numpy(((pts_w @ inv[:3, :3].T + inv[:3, 3]) / scale).astype(np.float32))
            disp = decode_frames(net, code, local, phases, data.t_ed(i), heads=("displacement",))["displacement"].numpy()
            pred_d = disp * scale @ case["local_to_world"][:3, :3].T
            epe = float(np.linalg.norm(pred_d - true_d, axis=-1).mean())

            def field(p, t=phases[len(phases) // 3]):
                return net.decode(code, p, torch.full(p.shape[:2], t), torch.zeros(1), heads=("displacement",))["displacement"]

            with torch.enable_grad():
                det = jacobian_determinant(jacobian(field, local.unsqueeze(0)))
            rows.append({"group": group, "case": case["case"], **{f"dice_{k}": v for k, v in dice.items()},
                         "dice_hi": dice_hi, "lv_ef_err": abs(func["lv_ef"] - truth["lv_ef"]),
                         "rv_ef_err": abs(func["rv_ef"] - truth["rv_ef"]), "epe": epe,
                         "epe_demons": np.nan if args.skip_demons else demons_epe(case, pts_w, true_d, 50),
                         "folding": float((det <= 0).float().mean())})
    import pandas as pd

    table = pd.DataFrame(rows)
    print(f"cine phantoms (seed {args.seed}): {n_train} training + {n_test} unseen subjects, {size[0]}x{size[1]}x{slices}, "
          f"{frames} frames, spacing {spacing} mm; bundle recipe ({recipe['activation']}, {epochs} epochs); training "
          f"{train_time:.0f} s on {args.threads} CPU thread(s), code fitting {fit_time:.1f} s per unseen subject")
    summary = table.groupby("group")[["dice_1", "dice_2", "dice_3", "dice_hi", "lv_ef_err", "rv_ef_err", "epe",
                                      "epe_demons", "folding"]].mean()
    summary.columns = ["Dice LV", "Dice myo", "Dice RV", "Dice z2", "|dEF| LV", "|dEF| RV", "EPE mm", "EPE demons",
                       "folding"]
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()

"""Benchmark: single-modality models, early fusion and CRN on lesion phantoms, cross-validated.

Writes a lesion phantom cohort (``medrefine phantom lesions``: T1, ART, DWI, ADC; targets
``enhancement`` readable from ART alone, ``diffusion`` only from DWI and ADC together,
``malignant`` from both), then runs the lesion_classification bundle's ``cross_validation`` mode
(grouped by patient, stratified, seeded; checkpoint chosen on an inner validation split by the
class-balanced cross-entropy, the bundle's default ``selection_metric``) for

1. one early-fusion ResNet-18 (3D) per single modality (the best per target is reported),
2. early fusion: all modalities as channels, ResNet-18 (3D),
3. CRN (3D, learned gating over all modalities, disease head on the other targets' probabilities),

every network with lesion pooling (the bundle's default), and prints per target the pooled
out-of-fold balanced accuracy and AUC with bootstrap 95 % intervals. CRN is run a second time the
reference's way (checkpoint chosen on the test fold, ``selection=test``) and printed next to the
nested figures: the difference is the size of the leak. The configurations run in ``--jobs``
processes of one thread each (small 3D networks use two cores better as two processes than as
two threads); the runtime is printed at the end.

The recipe (crop padding, lesion pooling, disease head, 60 epochs, learning rate, selection metric) was tuned on
cohorts of phantom seed 0; the benchmark reports on seed 1 (``--seed``), lesions it was not
tuned on.

Run::

    .venv/bin/python benchmarks/lesion_classification.py            # 90 patients, 5 folds, 60 epochs
    .venv/bin/python benchmarks/lesion_classification.py --quick    # 24 patients, 3 folds, 6 epochs
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def _run(root: Path, bundle: Path, dataset: Path, folds: int, settings: dict, bootstrap: int) -> dict:
    import pandas as pd
    import torch

    torch.set_num_threads(int(settings["num_threads"]))
    from medrefine.bundle import run_workflow

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shutil.copy(dataset.parent / "folds.json", root / "folds.json")  # every configuration: the same folds
    base = {"dataset_dir": str(dataset), "device": "cpu", "num_folds": folds, "work_dir": str(root), **settings}
    run_workflow(bundle, "cross_validation", base)
    run_workflow(bundle, "evaluate", {**base, "bootstrap": bootstrap, "write_report": False})
    table = pd.read_csv(root / "eval" / "metrics.csv")
    pooled = table[table["scope"] == "pooled"]
    return {(r.target, r.metric): float(r.value) for r in pooled.itertuples()}


def _fmt(m: dict, target: str, metric: str) -> str:
    return f"{m[target, metric]:.3f} [{m[target, metric + '_low']:.3f}, {m[target, metric + '_high']:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="24 patients, 3 folds, 6 epochs (a smoke run).")
    parser.add_argument("--patients", type=int, default=None)
    parser.add_argument("--folds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in all (default 2).")
    parser.add_argument("--jobs", type=int, default=None, help="Configurations run at once (default: --threads).")
    parser.add_argument("--seed", type=int, default=1, help="Phantom cohort seed (the recipe was tuned on seed 0).")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=None, help="Work folder (default: a temporary one).")
    args = parser.parse_args()
    patients = args.patients or (24 if args.quick else 90)  # seed 1: 218 lesions (the issue asks >= 200 of >= 80)
    folds = args.folds or (3 if args.quick else 5)
    epochs = args.epochs or (6 if args.quick else 60)
    jobs = max(1, args.jobs or args.threads)
    per_job = max(1, args.threads // jobs)

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from medrefine.bundle.discovery import bundles_root
    from medrefine.data.lesion_phantoms import TARGET_SOURCES, make_lesion_cohort
    from medrefine.data.lesions import load_lesions
    from medrefine.workflows.lesion import lesion_folds

    start = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="lesion_bench_"))
    dataset = make_lesion_cohort(work / "data" / "lesions", patients=patients, seed=args.seed, overwrite=True)
    cohort = load_lesions(dataset)
    lesion_folds(cohort, folds=folds, stratify="diffusion", seed=0, folds_file=dataset.parent / "folds.json")
    print(f"cohort (phantom seed {args.seed}): {len(cohort)} lesions of {patients} patients, modalities "
          f"{list(cohort.modalities)}, {folds}-fold CV grouped by patient (stratified on diffusion), {epochs} epochs, "
          f"16^3 crops at 2.5 mm; {jobs} job(s) x {per_job} thread(s)", flush=True)
    bundle = bundles_root() / "lesion_classification"
    common = {"epochs": epochs, "pixdim": [2.5, 2.5, 2.5], "size": [16, 16, 16], "batch_size": 16,
              "learning_rate": 0.002, "stratify_target": "diffusion", "num_threads": per_job, "inner_folds": 4,
              "pooling": "lesion"}
    fusion = {**common, "network_name": "resnet18", "widen_factor": 0.25}
    crn = {**common, "network_name": "crn", "gating": "learned", "disease_head": True, "widen_factor": 1.0}
    configs = {f"single {m}": (f"single_{m}", {**fusion, "modalities": [m]}) for m in cohort.modalities}
    configs["early fusion"] = ("fusion", fusion)
    configs["CRN"] = ("crn", crn)
    configs["CRN, test-fold selection"] = ("crn_ref", {**crn, "selection": "test"})
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {name: pool.submit(_run, work / folder, bundle, dataset, folds, settings, args.bootstrap)
                   for name, (folder, settings) in configs.items()}
        results = {name: future.result() for name, future in futures.items()}
    leak = results.pop("CRN, test-fold selection")
    for target in cohort.targets:
        singles = [k for k in results if k.startswith("single")]
        best = max(singles, key=lambda k: results[k][target, "balanced_accuracy"])
        print(f"\ntarget {target} (readable from {', '.join(TARGET_SOURCES[target])})")
        print(f"  {'model':<28} {'balanced accuracy [95% CI]':<30} {'AUC [95% CI]':<30}")
        for name in (best, "early fusion", "CRN"):
            label = f"best single ({best[7:]})" if name == best else name
            print(f"  {label:<28} {_fmt(results[name], target, 'balanced_accuracy'):<30} {_fmt(results[name], target, 'auc'):<30}")
        nested = results["CRN"][target, "balanced_accuracy"]
        ref = leak[target, "balanced_accuracy"]
        print(f"  {'CRN, test-fold selection':<28} {_fmt(leak, target, 'balanced_accuracy'):<30} "
              f"{_fmt(leak, target, 'auc'):<30} (nested {nested:.3f}, leak {ref - nested:+.3f})")
    print(f"\nruntime: {(time.perf_counter() - start) / 60:.1f} min on {args.threads} CPU thread(s)")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

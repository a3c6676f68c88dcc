"""Lesion classification bundle: cohort, leak-free folds, pre-processing and the cross-validation run.

Cross-validation without leaks (what the seed got wrong: it chose checkpoints on the test fold,
split lesions of one patient across folds, and drew unseeded splits):

- the outer folds are grouped by patient and stratified on one target
  (:func:`~medrefine.data.splits.grouped_kfold_splits`), seeded, and written once to
  ``folds.json``, so later runs (and a run with changed test labels) use the same folds;
- in each outer fold, an inner grouped split of the *training folds only* is the validation set
  for checkpoint choice and early stopping; class weights come from the training part;
- the test fold is scored once, after training, by the chosen checkpoint
  (``predictions.csv`` beside ``model.pt``).

``selection="test"`` reproduces the seed's way (validation = the test fold) for comparison.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medrefine.data.lesions import LesionCohort, load_lesions
from medrefine.errors import InputError, did_you_mean

__all__ = [
    "SELECTIONS",
    "class_weights",
    "cross_validate",
    "describe_model",
    "fold_split",
    "lesion_cases",
    "lesion_folds",
    "lesion_preprocessing",
    "load_lesion_cohort",
    "network_input",
    "routing_matrix",
    "selection_metrics",
    "SELECTION_METRICS",
]

logger = logging.getLogger(__name__)

#: ``selection_metric`` -> the evaluator's metric name (greater is better for both)
SELECTION_METRICS = {"neg_balanced_ce": "val_neg_balanced_ce", "balanced_accuracy": "val_balanced_accuracy"}

SELECTIONS = ("nested", "test")
FOLDS_FILE = "folds.json"


def load_lesion_cohort(dataset_dir: str | Path, *, modalities: Sequence[str] | None = None,
                       targets: Sequence[str] | Mapping[str, Sequence[Any]] | None = None,
                       allow_missing: bool = True, unlabelled: bool = False, nan_policy: str = "refuse") -> LesionCohort:
    """The cohort, every image opened and checked as ``medrefine validate`` checks it (readable, 3D,
    finite unless ``nan_policy="zero"``, centre inside; validate first, then write).

    Raises:
        InputError: the first problem, in one line naming the file.
    """
    return load_lesions(dataset_dir, modalities=modalities, targets=targets, allow_missing=allow_missing,
                        unlabelled=unlabelled, check_images=True, nan_policy=nan_policy)


def lesion_cases(cohort: LesionCohort | None) -> list[dict[str, Any]]:
    """One case per lesion naming every file it reads (for :func:`~medrefine.workflows.preflight.preflight`);
    ``[]`` for None (no cohort to read)."""
    return [] if cohort is None else cohort.as_cohort().cases


def lesion_preprocessing(modalities: Sequence[str], targets: Mapping[str, Sequence[str]], pixdim: Sequence[float],
                         size: Sequence[int], nan_policy: str = "refuse") -> list:
    """Deterministic part: crop every modality around its centre, then z-score each channel."""
    from monai.transforms import NormalizeIntensityd

    from medrefine.transforms.lesion_crop import LesionCropd

    return [LesionCropd(modalities, targets, spacing_mm=pixdim, size=size, nan_policy=nan_policy),
            NormalizeIntensityd(keys="image", channel_wise=True)]


def network_input() -> Any:
    """Last transform: the mask becomes the image's last channel (``(M + 1, *size)``)."""
    from monai.transforms import ConcatItemsd

    return ConcatItemsd(keys=["image", "mask"], name="image", dim=0)


def _strata(cohort: LesionCohort, stratify: str | None) -> list[int]:
    names = list(cohort.targets)
    name = names[0] if stratify is None else stratify
    if name not in names:
        raise InputError(f"{cohort.source}: `stratify` names no target {name!r}; targets are {names}.{did_you_mean(name, names)}")
    return cohort.label_matrix()[:, names.index(name)].tolist()


def lesion_folds(cohort: LesionCohort, *, folds: int = 5, stratify: str | None = None, seed: int = 0,
                 folds_file: str | Path | None = None) -> dict[str, int]:
    """``{lesion: fold}``: read from ``folds_file`` when it exists, else computed (and written there).

    Raises:
        InputError: the file is unreadable, lacks a lesion of the cohort, or has another fold count.
    """
    from medrefine.data.splits import grouped_kfold_splits
    from medrefine.io import atomic_write, read_json

    path = Path(folds_file) if folds_file else None
    if path is not None and path.is_file():
        data = read_json(path, what="fold assignment")
        assignment = data.get("folds") if isinstance(data, dict) else None
        if not isinstance(assignment, dict):
            raise InputError(f"{path}: expected {{'folds': {{lesion: fold}}}}, found {str(data)[:60]!r}")
        missing = [c for c in cohort.case_ids if c not in assignment]
        if missing or int(data.get("num_folds", -1)) != int(folds):
            raise InputError(f"{path}: expected {folds} folds covering every lesion, found {data.get('num_folds')} folds"
                             f"{f' and no fold for {missing[0]!r}' if missing else ''}; delete it to split again")
        return {c: int(assignment[c]) for c in cohort.case_ids}
    splits = grouped_kfold_splits(cohort.case_ids, groups=cohort.patients(), strata=_strata(cohort, stratify),
                                  folds=folds, seed=seed)
    assignment = {case: k for k, split in enumerate(splits) for case in split["val"]}
    if path is not None:
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps({"num_folds": int(folds), "seed": int(seed), "stratify": stratify,
                                       "folds": assignment}, indent=1) + "\n")
    return assignment


def fold_split(cohort: LesionCohort, *, fold: int = 0, folds: int = 5, stratify: str | None = None, seed: int = 0,
               folds_file: str | Path | None = None, inner_folds: int = 4, selection: str = "nested"
               ) -> dict[str, list[dict[str, Any]]]:
    """The ``train``/``val``/``test`` lesion records of outer fold ``fold``.

    ``selection="nested"``: ``val`` is one inner grouped, stratified fold of the training folds
    (``inner_folds`` of them, seed ``seed + 1 + fold``), so nothing of the test fold is seen
    before it is scored; ``"test"``: ``val`` is the test fold (the reference's way, it leaks).

    Raises:
        InputError: ``fold`` out of range or an unknown ``selection``.
    """
    from medrefine.data.splits import grouped_kfold_splits

    if selection not in SELECTIONS:
        raise InputError(f"`selection` must be one of {list(SELECTIONS)}, got {selection!r}.{did_you_mean(selection, SELECTIONS)}")
    if isinstance(fold, bool) or not 0 <= int(fold) < int(folds):
        raise InputError(f"`fold` must be in [0, {folds}), got {fold!r}")
    assignment = lesion_folds(cohort, folds=folds, stratify=stratify, seed=seed, folds_file=folds_file)
    test = [r for r in cohort.records if assignment[r["case"]] == int(fold)]
    rest = [r for r in cohort.records if assignment[r["case"]] != int(fold)]
    if selection == "test":
        return {"train": rest, "val": test, "test": test}
    inner_cohort = cohort.subset([r["case"] for r in rest])
    groups = len(set(inner_cohort.patients()))
    inner = grouped_kfold_splits(inner_cohort.case_ids, groups=inner_cohort.patients(),
                                 strata=_strata(inner_cohort, stratify), folds=max(2, min(int(inner_folds), groups)),
                                 seed=int(seed) + 1 + int(fold))[0]
    val = set(inner["val"])
    return {"train": [r for r in rest if r["case"] not in val], "val": [r for r in rest if r["case"] in val], "test": test}


def class_weights(cohort: LesionCohort, records: Sequence[Mapping[str, Any]], enabled: bool = True
                  ) -> list[list[float]] | None:
    """Balanced class weights of the training records (None when ``enabled`` is False)."""
    from medrefine.losses.multi_target import balanced_class_weights

    if not enabled:
        return None
    labels = np.array([cohort.label_indices(r) for r in records], dtype=np.int64).reshape(len(records), -1)
    return balanced_class_weights(labels, cohort.num_classes)


def routing_matrix(modalities: Sequence[str], targets: Sequence[str], routing: Mapping[str, Sequence[str]] | None
                   ) -> list[list[int]] | None:
    """``{target: [modalities]}`` (the seed's lists) -> the ``(M, T)`` 0/1 matrix; None: all-to-all.

    Raises:
        InputError: an unknown target or modality name (did-you-mean).
    """
    if routing is None:
        return None
    matrix = [[0] * len(targets) for _ in modalities]
    for target, sources in routing.items():
        if target not in targets:
            raise InputError(f"`routing` names no target {target!r}; targets are {list(targets)}.{did_you_mean(target, targets)}")
        for m in sources:
            if m not in modalities:
                raise InputError(f"`routing` of {target!r} names no modality {m!r}; modalities are {list(modalities)}."
                                 f"{did_you_mean(m, modalities)}")
            matrix[list(modalities).index(m)][list(targets).index(target)] = 1
    for t, target in enumerate(targets):
        if not any(row[t] for row in matrix):
            raise InputError(f"`routing` must route at least one modality to every target; {target!r} has none")
    return matrix


def describe_model(model_dir: str | Path, network: Any, cohort: LesionCohort, *, pixdim: Sequence[float],
                   size: Sequence[int], extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model.json``: the network, the output channels as ``target=value`` classes, the
    crop geometry (``pixdim``, ``size``), modalities and targets."""
    from medrefine.workflows.models import write_description

    classes, index = {}, 0
    for name, values in cohort.targets.items():
        for value in values:
            classes[index] = f"{name}={value}"
            index += 1
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    return write_description(model_dir, network, classes=classes,
                             preprocessing={"pixdim": list(pixdim), "size": list(size)},
                             extra={"modalities": list(cohort.modalities), "targets": cohort.targets, **(extra or {})})


def cross_validate(bundle_root: str | Path, settings: Mapping[str, Any], *, folds: int = 5,
                   models_dir: str | Path | None = None, bundle: str | Path = "lesion_classification",
                   extra_configs: Sequence[str | Path] = ()) -> Path:
    """Train every outer fold (the bundle's train mode, ``model_dir = models/fold_<k>``) and pool the
    test folds' predictions into ``models/oof_predictions.csv``.

    Args:
        bundle_root: the run's work folder (the config's ``bundle_root``).
        settings: the train config's values for every fold (the config's ``fold_settings``).
        folds: number of outer folds.
        models_dir: where the fold folders go; default ``<bundle_root>/models``.
        bundle: the bundle whose train config runs each fold (name or folder); ``bundle_root``
            itself when it holds ``configs/``.
        extra_configs: configs layered on each fold's train config (the config's ``fold_configs``;
            ``["mlflow"]`` when ``configs/mlflow.json`` is layered: every fold a tracked run).

    Returns:
        Path of the pooled out-of-fold predictions.
    """
    import pandas as pd

    from medrefine.bundle import run_workflow
    from medrefine.io import atomic_write

    models = Path(models_dir) if models_dir else Path(bundle_root) / "models"
    if (Path(bundle_root) / "configs" / "train.json").is_file():
        bundle = bundle_root
    tables = []
    for k in range(int(folds)):
        fold_dir = models / f"fold_{k}"
        logger.info("cross-validation: fold %d of %d -> %s", k + 1, folds, fold_dir)
        run_workflow(bundle, "train", {**dict(settings), "bundle_root": str(bundle_root), "fold": k,
                                            "num_folds": int(folds), "model_dir": str(fold_dir),
                                            "log_dir": str(Path(settings.get("log_dir", models.parent / "logs")) / f"fold_{k}")},
                     extra_configs=list(extra_configs))
        tables.append(pd.read_csv(fold_dir / "predictions.csv", dtype={"case": str, "patient": str}))
    out = models / "oof_predictions.csv"
    with atomic_write(out) as tmp:
        pd.concat(tables, ignore_index=True).to_csv(tmp, index=False)
    return out


def selection_metrics(selection_metric: str, num_classes: Sequence[int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(key metric, additional metrics)`` of the validation evaluator, both computed every validation.

    ``selection_metric`` picks the key metric, the one that chooses the checkpoint (and stops early):
    ``"neg_balanced_ce"`` (default; the negative class-balanced cross-entropy, smooth on a small
    inner validation split) or ``"balanced_accuracy"``. The other one is computed alongside, so the
    history shows both and the collapse stop reads balanced accuracy either way.

    Raises:
        ValueError: an unknown ``selection_metric`` (with a did-you-mean).
    """
    from medrefine.handlers.target_metrics import MultiTargetBalancedAccuracy, MultiTargetBalancedCrossEntropy

    if selection_metric not in SELECTION_METRICS:
        raise ValueError(f"`selection_metric` must be one of {list(SELECTION_METRICS)}, got {selection_metric!r}"
                         f".{did_you_mean(str(selection_metric), SELECTION_METRICS)}")
    metrics = {"val_neg_balanced_ce": MultiTargetBalancedCrossEntropy(num_classes, negative=True),
               "val_balanced_accuracy": MultiTargetBalancedAccuracy(num_classes)}
    key = SELECTION_METRICS[selection_metric]
    return {key: metrics.pop(key)}, metrics

"""Lesion classification: predictions tables, fold-model ensembles, evaluation and inference CSV.

A predictions table has one row per lesion: ``case``, ``patient``, ``fold``, and per target
``<t>`` (true class value, empty when not labelled), ``prob_<t>=<value>`` per class, ``pred_<t>``
and ``confidence_<t>``. Ensembles of the fold models: mean probability (``pred`` = argmax,
``confidence`` = its probability) and majority vote (``vote_<t>``, ``vote_share_<t>``: the
fraction of models that voted for it; ties go to the higher mean probability).

Prediction loops over the fold models on each batch; MONAI's ``EnsembleEvaluator`` keeps one
output key per model and no per-target split, and the table is what every caller wants.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from medrefine.errors import InputError

if TYPE_CHECKING:
    from medrefine.data.lesions import LesionCohort

__all__ = [
    "ensemble",
    "evaluate_ensemble",
    "evaluate_lesions",
    "find_models",
    "infer_lesions",
    "out_of_fold_predictions",
    "predict_probabilities",
    "predictions_table",
    "routing_of",
    "score_test_fold",
]

logger = logging.getLogger(__name__)


def find_models(model_dir: str | Path) -> list[Path]:
    """The fold models ``<model_dir>/fold_*/model.json``, else ``<model_dir>/model.json``.

    Raises:
        InputError: none found.
    """
    root = Path(model_dir)
    folds = sorted(root.glob("fold_*/model.json"), key=lambda p: int(p.parent.name.split("_")[-1]))
    found = folds or ([root / "model.json"] if (root / "model.json").is_file() else [])
    if not found:
        raise InputError(f"{root}: expected model.json (train) or fold_*/model.json (cross_validation), found none; "
                         "train the bundle first")
    return found


def predict_probabilities(networks: Sequence[torch.nn.Module], records: Sequence[Mapping[str, Any]], preprocessing: list,
                          num_classes: Sequence[int], *, device: Any = "cpu", batch_size: int = 8) -> np.ndarray:
    """``(models, lesions, sum K)`` per-target softmax probabilities of every network."""
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose

    from medrefine.networks.lesion import split_logits
    from medrefine.workflows.lesion import network_input

    loader = DataLoader(Dataset(list(records), Compose([*preprocessing, network_input()])), batch_size=batch_size,
                        shuffle=False, num_workers=0)
    out: list[list[np.ndarray]] = [[] for _ in networks]
    with torch.no_grad():
        for batch in loader:
            image, presence = batch["image"].to(device), batch["presence"].to(device)
            for i, net in enumerate(networks):
                parts = split_logits(net.eval()(image, presence).float(), num_classes)
                out[i].append(torch.cat([torch.softmax(p, 1) for p in parts], 1).cpu().numpy())
    return np.stack([np.concatenate(o) for o in out])


def ensemble(probabilities: np.ndarray, num_classes: Sequence[int]) -> dict[str, np.ndarray]:
    """Mean-probability and majority-vote ensembles of ``(models, lesions, sum K)`` probabilities.

    Returns:
        ``mean`` ``(lesions, sum K)``; per target ``t`` (index): ``vote`` ``(lesions, T)`` voted
        class, ``vote_share`` ``(lesions, T)`` fraction of models voting for it.

    Example:
        >>> p = np.array([[[0.6, 0.4]], [[0.3, 0.7]], [[0.8, 0.2]]])  # 3 models, 1 lesion, 1 target
        >>> e = ensemble(p, [2]); e["vote"].tolist(), e["vote_share"].round(2).tolist()
        ([[0]], [[0.67]])
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 3 or p.shape[2] != sum(num_classes):
        raise ValueError(f"`probabilities` must be (models, lesions, {sum(num_classes)}), got {p.shape}")
    mean = p.mean(0)
    votes, shares, start = [], [], 0
    for k in num_classes:
        part = p[:, :, start : start + k]
        counts = np.stack([(part.argmax(2) == c).sum(0) for c in range(k)], 1).astype(float)  # (lesions, K)
        tie_break = mean[:, start : start + k] * 1e-6  # < 1 vote: decides ties only
        choice = (counts + tie_break).argmax(1)
        votes.append(choice)
        shares.append(counts[np.arange(len(choice)), choice] / p.shape[0])
        start += k
    return {"mean": mean, "vote": np.stack(votes, 1), "vote_share": np.stack(shares, 1)}


def predictions_table(records: Sequence[Mapping[str, Any]], targets: Mapping[str, Sequence[str]],
                      probabilities: np.ndarray, *, fold: int | None = None,
                      votes: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """The predictions table of the module docstring for ``(lesions, sum K)`` probabilities."""
    rows = []
    for i, record in enumerate(records):
        row: dict[str, Any] = {"case": record["case"], "patient": record.get("patient", record["case"])}
        if fold is not None:
            row["fold"] = int(fold)
        start = 0
        for t, (name, values) in enumerate(targets.items()):
            part = probabilities[i, start : start + len(values)]
            value = record.get("targets", {}).get(name)
            row[name] = "" if value is None else value
            for v, prob in zip(values, part):
                row[f"prob_{name}={v}"] = float(prob)
            row[f"pred_{name}"] = values[int(part.argmax())]
            row[f"confidence_{name}"] = float(part.max())
            if votes is not None:
                row[f"vote_{name}"] = values[int(votes["vote"][i, t])]
                row[f"vote_share_{name}"] = float(votes["vote_share"][i, t])
            start += len(values)
        rows.append(row)
    return pd.DataFrame(rows)


def _write_csv(table: pd.DataFrame, path: Path) -> Path:
    from medrefine.io import atomic_write

    with atomic_write(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


def score_test_fold(model_dir: str | Path, network: torch.nn.Module, cohort: Any, records: Sequence[Mapping[str, Any]],
                    preprocessing: list, *, fold: int, device: Any = "cpu") -> Path:
    """After training: load the chosen checkpoint (``model.pt``) and score the test fold once
    into ``predictions.csv`` beside it."""
    from medrefine.workflows.models import load_weights

    model_dir = Path(model_dir)
    load_weights(network, model_dir / "model.pt", device=device)
    probabilities = predict_probabilities([network], records, preprocessing, cohort.num_classes, device=device)[0]
    return _write_csv(predictions_table(records, cohort.targets, probabilities, fold=fold), model_dir / "predictions.csv")


def _load_models(model_dir: str | Path, device: Any) -> tuple[list[torch.nn.Module], Any]:
    from medrefine.workflows.models import read_model

    descriptions = [read_model(p) for p in find_models(model_dir)]
    first = descriptions[0]
    for d in descriptions[1:]:
        if d.value("modalities") != first.value("modalities") or d.value("targets") != first.value("targets") \
                or d.preprocessing != first.preprocessing:
            raise InputError(f"{d.where}: expected the modalities, targets and crop of {first.where}, found others; "
                             "an ensemble needs models of one cross-validation")
    return [d.load_network(device=device) for d in descriptions], first


def infer_lesions(model_dir: str | Path, dataset: str | Path | LesionCohort, output_csv: str | Path, *,
                  device: Any = "cpu", batch_size: int = 8, nan_policy: str = "refuse") -> Path:
    """Ensemble every fold model on a lesion cohort (folder or table) -> predictions CSV.

    A folder or table is read with the models' modalities (missing ones get presence 0) and
    checked before anything is written (:func:`~medrefine.workflows.lesion.load_lesion_cohort`);
    a :class:`~medrefine.data.lesions.LesionCohort` is taken as already read and checked so.
    Targets need no labels here.
    """
    from medrefine.data.lesions import LesionCohort
    from medrefine.workflows.lesion import lesion_preprocessing, load_lesion_cohort

    networks, model = _load_models(model_dir, device)
    modalities, targets = model.value("modalities"), model.value("targets")
    cohort = dataset if isinstance(dataset, LesionCohort) else load_lesion_cohort(
        dataset, modalities=modalities, targets=targets, unlabelled=True, nan_policy=nan_policy)
    pre = lesion_preprocessing(modalities, targets, model.preprocessing["pixdim"], model.preprocessing["size"],
                               nan_policy=nan_policy)
    num_classes = [len(v) for v in targets.values()]
    probabilities = predict_probabilities(networks, cohort.records, pre, num_classes, device=device, batch_size=batch_size)
    votes = ensemble(probabilities, num_classes)
    table = predictions_table(cohort.records, targets, votes["mean"], votes=votes)
    return _write_csv(table, Path(output_csv))


def evaluate_lesions(predictions: str | Path | pd.DataFrame, targets: Mapping[str, Sequence[str]], output_dir: str | Path,
                     *, bootstrap: int = 1000, seed: int = 0, report: bool = True, title: str = "Lesion classification",
                     routing: Mapping[str, Any] | None = None, saliency: Sequence[Mapping[str, Any]] | None = None,
                     attention: Mapping[str, Any] | None = None) -> Path:
    """Metrics of an out-of-fold predictions table per fold and pooled -> ``metrics.csv``,
    ``confusion_<target>.csv`` and (``report``) ``report.html``.

    ``routing`` (:func:`routing_of`), ``saliency`` and ``attention``
    (:func:`~medrefine.workflows.lesion_saliency.explain_lesions`) add their report sections.

    Returns:
        Path of ``metrics.csv`` (columns ``scope, target, metric, value``).
    """
    from medrefine.metrics.classification import classification_metrics, confusion_matrix

    table = predictions if isinstance(predictions, pd.DataFrame) else pd.read_csv(predictions, dtype=str, keep_default_na=False)
    output_dir = Path(output_dir)
    rows, confusions, reliability = [], {}, {}
    scopes = [("pooled", table)]
    if "fold" in table.columns and table["fold"].nunique() > 1:
        scopes += [(f"fold_{f}", part) for f, part in table.groupby("fold", sort=True)]
    for name, values in targets.items():
        columns = [f"prob_{name}={v}" for v in values]
        for scope, part in scopes:
            labelled = part[part[name].astype(str) != ""]
            if labelled.empty:
                continue
            y = np.array([list(values).index(str(v)) for v in labelled[name]])
            p = labelled[columns].astype(float).to_numpy()
            metrics = classification_metrics(y, p, bootstrap=bootstrap if scope == "pooled" else 0, seed=seed)
            rows += [{"scope": scope, "target": name, "metric": k, "value": v} for k, v in metrics.items()]
            if scope == "pooled":
                confusions[name] = confusion_matrix(y, p.argmax(1), len(values))
                reliability[name] = (y, p)
    if not rows:
        raise InputError(f"{predictions if not isinstance(predictions, pd.DataFrame) else 'predictions'}: "
                         "expected labelled lesions to evaluate, found none")
    metrics_table = pd.DataFrame(rows)
    _write_csv(metrics_table, output_dir / "metrics.csv")
    for name, cm in confusions.items():
        values = list(targets[name])
        _write_csv(pd.DataFrame(cm, index=[f"true={v}" for v in values], columns=[f"pred={v}" for v in values])
                   .reset_index(names="class"), output_dir / f"confusion_{name}.csv")
    if report:
        from medrefine.reports.classification import write_classification_report

        write_classification_report(metrics_table, confusions, reliability, targets, output_dir / "report", title=title,
                                    routing=routing, saliency=saliency, attention=attention)
    return output_dir / "metrics.csv"


def out_of_fold_predictions(model_dir: str | Path) -> Path:
    """``oof_predictions.csv`` of a cross-validation, else the one trained fold's ``predictions.csv``.

    Raises:
        InputError: neither exists.
    """
    root = Path(model_dir)
    for path in (root / "oof_predictions.csv", root / "predictions.csv"):
        if path.is_file():
            return path
    raise InputError(f"{root}: expected oof_predictions.csv (cross_validation) or predictions.csv (train), found "
                     "neither; run the bundle's train or cross_validation mode first")


def routing_of(model_dir: str | Path) -> dict[str, Any] | None:
    """Routing weights of a CRN (averaged over the fold models) for the report, None for others."""
    networks, model = _load_models(model_dir, "cpu")
    if not all(hasattr(n, "routing_weights") for n in networks):
        return None
    with torch.no_grad():
        weights = np.mean([n.routing_weights().cpu().numpy() for n in networks], axis=0)
    return {"weights": weights, "modalities": list(model.value("modalities")), "targets": list(model.value("targets"))}


def evaluate_ensemble(model_dir: str | Path, dataset: str | Path | LesionCohort, output_dir: str | Path, *,
                      device: Any = "cpu", bootstrap: int = 1000, seed: int = 0, report: bool = True,
                      nan_policy: str = "refuse") -> Path:
    """Ensemble the fold models on a labelled held-out cohort (a folder, table or checked
    :class:`~medrefine.data.lesions.LesionCohort`, as :func:`infer_lesions`) and evaluate it (mean
    probability; the vote columns are in ``ensemble_predictions.csv``). Returns the metrics CSV."""
    from medrefine.workflows.models import read_model

    output_dir = Path(output_dir)
    table = infer_lesions(model_dir, dataset, output_dir / "ensemble_predictions.csv", device=device,
                          nan_policy=nan_policy)
    targets = read_model(find_models(model_dir)[0]).value("targets")
    return evaluate_lesions(table, targets, output_dir, bootstrap=bootstrap, seed=seed, report=report,
                            title="Lesion classification: ensemble of the fold models")

"""Lesion classification: where the fold models looked (occlusion sensitivity) and CRN attention.

For the evaluation report (:func:`medrefine.reports.classification.write_classification_report`):

- :func:`choose_lesions`: per target the most confidently wrong and right out-of-fold lesions;
- :func:`occlusion_maps`: how much each target's predicted-class probability drops when a box of
  one modality is hidden (MONAI's :class:`~monai.visualize.OcclusionSensitivity`, Gaussian
  occlusion towards the z-scored crop's mean 0), one modality at a time, so the maps say which
  modality and where; one pass serves every target. Occlusion needs no gradients or layer names,
  so it serves the ResNet, DenseNet and CRN alike; GradCAM needs a named layer per network and
  sees only the fused features, not each modality;
- :func:`mean_attention`: a CRN's target-to-target attention averaged over lesions (per fold
  model over the lesions it held out, then over the folds);
- :func:`explain_lesions`: both for a cross-validation, each lesion by the model of the fold that
  held it out; it reads the cohort only when something needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from medrefine.errors import InputError

if TYPE_CHECKING:
    from medrefine.data.lesions import LesionCohort

__all__ = ["choose_lesions", "explain_lesions", "mean_attention", "occlusion_maps"]

logger = logging.getLogger(__name__)


class _ModalityProbabilities(nn.Module):
    """One modality channel in (``(B, 1, *spatial)``), every target's softmax probabilities out
    (``(B, sum K)``); the other channels and the presence flags are those of the lesion."""

    def __init__(self, network: nn.Module, image: torch.Tensor, presence: torch.Tensor, channel: int,
                 num_classes: Sequence[int]) -> None:
        super().__init__()
        self.network, self.image, self.presence = network, image, presence
        self.channel, self.num_classes = int(channel), [int(k) for k in num_classes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from medrefine.networks.lesion import split_logits

        image = self.image.expand(x.shape[0], *self.image.shape[1:]).clone()
        image[:, self.channel] = x[:, 0]
        logits = self.network(image, self.presence.expand(x.shape[0], -1))
        return torch.cat([torch.softmax(p, 1) for p in split_logits(logits.float(), self.num_classes)], 1)


def occlusion_maps(network: nn.Module, image: torch.Tensor, presence: torch.Tensor, num_classes: Sequence[int], *,
                   classes: Sequence[int] | None = None, mask_size: int | Sequence[int] | None = None,
                   overlap: float = 0.5, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Occlusion sensitivity of each target's class to each modality.

    Args:
        network: ``(image, presence) -> (B, sum K)`` logits.
        image: ``(M + 1, *spatial)`` one lesion's input (modalities, then the lesion mask).
        presence: ``(M,)`` presence flags; a missing modality (0) gets a map of zeros.
        num_classes: classes per target (``T`` entries).
        classes: the class index per target to explain; default the predicted one.
        mask_size: occluded box (voxels per axis); default a quarter of the crop per axis.
        overlap: overlap of neighbouring boxes in [0, 1). Default 0.5.
        batch_size: occluded copies per forward pass. Default 32.

    Returns:
        ``maps (T, M, *spatial)``: the drop of the class probability when that part of that
        modality is hidden (positive: the region supported the class), and ``probabilities
        (sum K,)`` of the unoccluded lesion.

    Raises:
        ValueError: ``image`` and ``presence`` disagree on the modalities.
    """
    from monai.networks.utils import eval_mode
    from monai.visualize import OcclusionSensitivity

    image = torch.as_tensor(np.asarray(image), dtype=torch.float32)  # a plain tensor: no MetaTensor bookkeeping
    presence = torch.as_tensor(np.asarray(presence), dtype=torch.float32).reshape(-1)
    modalities, spatial = image.shape[0] - 1, tuple(image.shape[1:])
    if modalities < 1 or presence.numel() != modalities:
        raise ValueError(f"`image` must be (M + 1, *spatial) for `presence` of M = {presence.numel()} flags, got "
                         f"{tuple(image.shape)}")
    device = next(network.parameters(), torch.empty(0)).device
    batch, flags = image[None].to(device), presence[None].to(device)
    starts = np.cumsum([0, *num_classes[:-1]])
    with eval_mode(network):
        probabilities = _ModalityProbabilities(network, batch, flags, 0, num_classes)(batch[:, :1])[0].cpu().numpy()
    if classes is None:
        classes = [int(np.argmax(probabilities[s : s + k])) for s, k in zip(starts, num_classes)]
    maps = np.zeros((len(num_classes), modalities, *spatial), dtype=np.float32)
    for m in np.flatnonzero(presence.numpy()):
        occlusion = OcclusionSensitivity(_ModalityProbabilities(network, batch, flags, m, num_classes),
                                         mask_size=[max(1, s // 4) for s in spatial] if mask_size is None else mask_size,
                                         n_batch=batch_size, verbose=False, mode="gaussian", overlap=overlap,
                                         activate=False)
        occluded = torch.as_tensor(occlusion(batch[:, m : m + 1])[0]).cpu().numpy()[0]  # (sum K, *spatial)
        for t, (s, c) in enumerate(zip(starts, classes)):
            maps[t, m] = probabilities[s + int(c)] - occluded[s + int(c)]
    return maps, probabilities.astype(np.float32)


def _read_table(predictions: str | Path | pd.DataFrame) -> pd.DataFrame:
    return predictions.astype(str) if isinstance(predictions, pd.DataFrame) else \
        pd.read_csv(predictions, dtype=str, keep_default_na=False)


def choose_lesions(predictions: str | Path | pd.DataFrame, targets: Mapping[str, Sequence[str]],
                   count: int = 4) -> list[dict[str, str]]:
    """Per target (in turn) the most confidently wrong, then the most confidently right lesion,
    until ``count`` distinct lesions are chosen (fewer when the table has fewer).

    Returns:
        ``[{"case": ..., "reason": "<target>: most confidently wrong|right"}]``.
    """
    table = _read_table(predictions)
    queues = []
    for name in targets:
        labelled = table[table[name].astype(str) != ""]
        order = labelled.assign(_c=labelled[f"confidence_{name}"].astype(float)).sort_values("_c", ascending=False, kind="stable")
        right = order[name].astype(str) == order[f"pred_{name}"].astype(str)
        queues += [(f"{name}: most confidently wrong", list(order.loc[~right, "case"])),
                   (f"{name}: most confidently right", list(order.loc[right, "case"]))]
    chosen: dict[str, str] = {}
    while len(chosen) < int(count) and any(q for _, q in queues):
        for reason, queue in queues:
            while queue and queue[0] in chosen:
                queue.pop(0)
            if queue and len(chosen) < int(count):
                chosen[queue.pop(0)] = reason
    return [{"case": c, "reason": r} for c, r in chosen.items()]


def _fold_models(model_dir: str | Path, device: Any) -> tuple[dict[int | None, nn.Module], Any]:
    """``{fold: network}`` of a cross-validation (``{None: network}`` for one trained model) and
    the first model's description."""
    from medrefine.workflows.lesion_evaluation import _load_models, find_models

    paths = find_models(model_dir)
    networks, model = _load_models(model_dir, device)
    if len(paths) == 1 and paths[0].parent == Path(model_dir):
        return {None: networks[0]}, model
    return {int(p.parent.name.split("_")[-1]): n for p, n in zip(paths, networks)}, model


def _model_of(models: Mapping[int | None, nn.Module], fold: str, where: Any) -> nn.Module:
    if None in models:
        return models[None]
    if str(fold).strip().lstrip("-").isdigit() and int(fold) in models:
        return models[int(fold)]
    raise InputError(f"{where}: expected a fold in {sorted(models)} (fold_<k> models), found fold {fold!r}")


def _pipeline(model: Any, nan_policy: str) -> Any:
    from monai.transforms import Compose

    from medrefine.workflows.lesion import lesion_preprocessing, network_input

    return Compose([*lesion_preprocessing(model.value("modalities"), model.value("targets"), model.preprocessing["pixdim"],
                                          model.preprocessing["size"], nan_policy=nan_policy), network_input()])


def _records(cohort: LesionCohort, cases: Sequence[str], where: Any) -> list[dict[str, Any]]:
    by_case = {r["case"]: r for r in cohort.records}
    missing = [c for c in cases if c not in by_case]
    if missing:
        raise InputError(f"{where}: expected every lesion in the cohort {cohort.source}, found {missing[0]!r} "
                         f"missing; evaluate with the dataset_dir the models were trained on")
    return [by_case[c] for c in cases]


def _saliency(models: Mapping[int | None, nn.Module], model: Any, cohort: LesionCohort, table: pd.DataFrame,
              where: Any, *, count: int, mask_size: int | Sequence[int] | None, nan_policy: str) -> list[dict[str, Any]]:
    """Occlusion maps of :func:`choose_lesions`' lesions, each by the model of the fold that held it out."""
    targets, modalities = model.value("targets"), list(model.value("modalities"))
    num_classes = [len(v) for v in targets.values()]
    starts = np.cumsum([0, *num_classes[:-1]])
    chosen = choose_lesions(table, targets, count)
    pipeline = _pipeline(model, nan_policy)
    out = []
    for pick, record in zip(chosen, _records(cohort, [c["case"] for c in chosen], where)):
        row = table[table["case"] == pick["case"]].iloc[0]
        predicted = [row[f"pred_{t}"] for t in targets]
        if any(p not in values for p, values in zip(predicted, targets.values())):
            raise InputError(f"{where}: expected predicted classes of the model's targets {dict(targets)}, found "
                             f"{predicted} (lesion {pick['case']!r})")
        classes = [list(v).index(p) for p, v in zip(predicted, targets.values())]
        sample = pipeline(dict(record))
        image = np.asarray(sample["image"], dtype=np.float32)
        maps, probabilities = occlusion_maps(_model_of(models, row.get("fold", ""), where), image, sample["presence"],
                                             num_classes, classes=classes, mask_size=mask_size)
        out.append({**pick, "modalities": modalities, "targets": list(targets), "image": image[:-1],
                    "mask": image[-1], "presence": np.asarray(sample["presence"], dtype=np.float32),
                    "maps": maps, "truth": [str(row[t]) for t in targets],
                    "predicted": [str(p) for p in predicted],
                    "confidence": [float(probabilities[s + c]) for s, c in zip(starts, classes)]})
        logger.info("saliency: %s (%s)", pick["case"], pick["reason"])
    return out


def mean_attention(networks: Sequence[nn.Module], record_groups: Sequence[Sequence[Mapping[str, Any]]],
                   pipeline: Any, *, device: Any = "cpu", batch_size: int = 8) -> np.ndarray | None:
    """Target-to-target attention of CRNs, averaged over layers and each network's lesions, then
    over the networks.

    Args:
        networks: :class:`~medrefine.networks.crn.CorrelationRoutingNetwork` models.
        record_groups: per network the lesion records it scores (its held-out fold).
        pipeline: record -> ``image``, ``presence`` (the pre-processing + network input).
        device: where the networks run.
        batch_size: lesions per forward pass.

    Returns:
        ``(T, T)``: row ``t`` is how target ``t`` attends to each target (rows sum to 1); None when
        the networks have no attention layer or no lesions.
    """
    from monai.data import DataLoader, Dataset

    per_network = []
    for net, records in zip(networks, record_groups):
        if not records:
            continue
        total, n = 0.0, 0
        loader = DataLoader(Dataset(list(records), pipeline), batch_size=batch_size, shuffle=False, num_workers=0)
        with torch.no_grad():
            for batch in loader:
                attention = net.eval().explain(batch["image"].to(device), batch["presence"].to(device))["attention"]
                if attention.shape[0] == 0:
                    return None
                total = total + attention.float().mean(0).sum(0).cpu().numpy()
                n += attention.shape[1]
        per_network.append(total / n)
    return np.mean(per_network, axis=0) if per_network else None


def _attention(models: Mapping[int | None, nn.Module], model: Any, cohort: LesionCohort, table: pd.DataFrame,
               where: Any, *, device: Any, nan_policy: str) -> dict[str, Any] | None:
    """The CRN attention over the table's lesions, each group by the model that held it out."""
    folds = table["fold"] if "fold" in table.columns else pd.Series([""] * len(table))
    groups: dict[int, list[str]] = {}
    for case, fold in zip(table["case"], folds):
        groups.setdefault(id(_model_of(models, fold, where)), []).append(case)
    networks = [n for n in models.values() if id(n) in groups]
    records = [_records(cohort, groups[id(n)], where) for n in networks]
    weights = mean_attention(networks, records, _pipeline(model, nan_policy), device=device)
    return None if weights is None else {"weights": weights, "targets": list(model.value("targets"))}


def explain_lesions(model_dir: str | Path, dataset: str | Path | LesionCohort, predictions: str | Path | pd.DataFrame,
                    *, count: int = 4, mask_size: int | Sequence[int] | None = None, device: Any = "cpu",
                    nan_policy: str = "refuse") -> dict[str, Any]:
    """The report's ``saliency`` and ``attention`` sections of a cross-validation.

    Args:
        model_dir: the trained models (``fold_*/model.json`` or ``model.json``).
        dataset: the cohort the models were trained on (folder, table, or a checked
            :class:`~medrefine.data.lesions.LesionCohort`); read, with the models' modalities and
            targets, only when something needs it.
        predictions: the out-of-fold predictions table (``oof_predictions.csv``; ``fold`` names
            the model that scored each lesion).
        count: lesions to explain with occlusion maps (0: none).
        mask_size: occluded box; default a quarter of the crop per axis.
        device: where the networks run.
        nan_policy: as the bundle's key.

    Returns:
        ``{"saliency": [...], "attention": {...} or None}``: per chosen lesion ``case, reason,
        modalities, targets, image (M, *size), mask (*size), presence (M,), maps (T, M, *size),
        truth, predicted, confidence``; the attention ``{"weights": (T, T), "targets": [...]}``
        for a CRN, None for other networks.

    Raises:
        InputError: a lesion of the table is not in the cohort, its fold has no model, or its
            predicted class is not one of the model's.
    """
    from medrefine.data.lesions import LesionCohort
    from medrefine.networks.crn import CorrelationRoutingNetwork
    from medrefine.workflows.lesion import load_lesion_cohort

    models, model = _fold_models(model_dir, device)
    crn = all(isinstance(n, CorrelationRoutingNetwork) for n in models.values())
    if int(count) <= 0 and not crn:
        return {"saliency": [], "attention": None}
    table = _read_table(predictions)
    where = predictions if not isinstance(predictions, pd.DataFrame) else "predictions"
    cohort = dataset if isinstance(dataset, LesionCohort) else load_lesion_cohort(
        dataset, modalities=model.value("modalities"), targets=model.value("targets"), unlabelled=True,
        nan_policy=nan_policy)
    saliency = _saliency(models, model, cohort, table, where, count=count, mask_size=mask_size,
                         nan_policy=nan_policy) if int(count) > 0 else []
    attention = _attention(models, model, cohort, table, where, device=device, nan_policy=nan_policy) if crn else None
    return {"saliency": saliency, "attention": attention}

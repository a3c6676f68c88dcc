"""Glue of the point-supervision bundle (PA-Seg): cases, batches, model files, selection metrics.

The bundle ``bundles/point_supervised_segmentation`` runs PA-Seg's two stages with MONAI's
engines; this module holds the few pieces its configs call by name:

* :func:`load_cases` reads the datalist (``image``, ``points``, optional full ``label``);
* :class:`PointBatch` is the engines' ``prepare_batch``: image + seeds (stage 1 packs the image
  behind the seeds for :class:`~medrefine.losses.point_supervision.PointSupervisionLoss`);
* :class:`~medrefine.metrics.SeedDiceMetric` (metrics layer) selects models **without full labels**: Dice between the prediction
  and the expanded seeds on the seeds' labeled voxels only (foreground seeds must be found,
  background seeds and everything outside the points' boxes must stay background). PA-Seg's
  code selects on the full labels of its validation set, which a point-annotated project does
  not have; full-label selection is used here only when the datalist supplies labels and the
  config asks for them (``val_with_labels``);
* :func:`stage1_model_file`, :func:`load_weights`, :func:`model_file` name and load the models
  (``models/stage1_<network>.pt`` per architecture, ``models/model.pt`` = stage 2's primary);
* :func:`class_values` / :func:`label_map` map the configured target classes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from medrefine.errors import InputError
from medrefine.losses.partial import UNLABELED

__all__ = [
    "PointBatch",
    "class_values",
    "cohort_intensity",
    "intensity_transform",
    "label_map",
    "load_cases",
    "load_weights",
    "model_file",
    "model_intensity",
    "stage1_model_file",
    "to_label_values",
]

logger = logging.getLogger(__name__)


def load_cases(
    dataset_dir: str | Path,
    *,
    key: str = "training",
    points_key: str | None = "points",
    label_key: str | None = "label",
    require_labels: bool = False,
    points_dir: str | Path | None = None,
    simulate_points: bool = False,
    nan_policy: str = "refuse",
) -> list[dict[str, Any]]:
    """The cases of a cohort as MONAI dictionaries with absolute paths.

    ``dataset_dir`` is anything :func:`medrefine.data.cohort.load_cohort` reads. Each case keeps
    ``case``, ``image``, ``points`` (from ``points_key``; ``None`` when the points are simulated
    from the labels) and ``label`` (from ``label_key``, e.g. ``label_clean`` of a phantom cohort,
    when present). An entry without ``points_key`` takes ``<points_dir>/<case>.json`` (or
    ``.nii.gz``) when ``points_dir`` is given, the files that ``medrefine points simulate`` writes.
    With ``simulate_points`` no points are read and every case needs its label (the points are
    made from it). Every file read (points included: each must lie inside its image) is checked
    before the first output; ``nan_policy`` as in :func:`medrefine.workflows.segmentation.load_cases`.

    Raises:
        InputError: not a dataset, an entry without image or points, or (with ``require_labels``)
            without a label, or anything ``medrefine validate`` flags as an error
            (:func:`medrefine.data.validate.require_valid`) — naming the datalist and the entries.
    """
    from medrefine.data.cohort import load_cohort
    from medrefine.data.validate import require_valid

    if simulate_points:
        points_key, require_labels, label_key = None, True, label_key or "label"
    require = ["image"] + ([points_key] if points_key else []) + (["label"] if require_labels and label_key else [])
    fill = {points_key: points_dir} if points_key and points_dir else None
    cohort = load_cohort(dataset_dir, key=key, label_key=label_key or "label", require=require, fill_from=fill,
                         strict=False)
    read = ["image", *([points_key] if points_key else []), *(["label"] if label_key else [])]
    cohort = require_valid(cohort, keys=read, nan_policy=nan_policy).materialize_labels()
    cases = []
    for c in cohort.cases:
        case = {"case": str(c["case"]), "image": c["image"]}
        if points_key:
            case["points"] = c[points_key]
        if label_key and "label" in c:
            case["label"] = c["label"]
        cases.append(case)
    return cases


def class_values(target_classes: Sequence[int] | None) -> dict[int, int] | None:
    """``{original class: output index}`` (1, 2, ...) of the target classes; ``None`` keeps the classes."""
    if not target_classes:
        return None
    values = [int(c) for c in target_classes]
    if len(set(values)) != len(values) or min(values) < 1:
        raise InputError(f"`target_classes` must be distinct label values >= 1, got {list(target_classes)}")
    return {c: i + 1 for i, c in enumerate(values)}


def label_map(target_classes: Sequence[int] | None, names: Sequence[str] | None = None, num_classes: int = 2) -> dict[int, str]:
    """Label values written to the outputs and their names: the target classes' original values.

    With no ``target_classes``, values ``1 .. num_classes - 1``.
    """
    values = [int(c) for c in target_classes] if target_classes else list(range(1, int(num_classes)))
    names = list(names) if names else [f"class_{v}" if len(values) > 1 else "target" for v in values]
    if len(names) != len(values):
        raise InputError(f"`class_names` must name each target class ({len(values)}), got {names}")
    return {0: "background", **dict(zip(values, names))}


def to_label_values(label_map: Mapping[int, str]):
    """Post-processing function: argmax over the logits' channels, then index -> label value."""
    values = torch.tensor(sorted(int(k) for k in label_map), dtype=torch.int16)

    def convert(pred: torch.Tensor) -> torch.Tensor:
        index = torch.as_tensor(pred).argmax(dim=0, keepdim=True)
        return values.to(index.device)[index]

    return convert


def index_labels(target_classes: Sequence[int] | None):
    """``Lambdad`` function: full label values -> indices (target classes 1..K, anything else 0)."""
    mapping = class_values(target_classes)

    def convert(label):
        label = torch.as_tensor(label)
        if mapping is None:
            return label
        out = torch.zeros_like(label)
        for value, index in mapping.items():
            out[label == value] = index
        return out

    return convert


class PointBatch:
    """``prepare_batch`` for the engines: ``(image, target)`` from a batch dictionary.

    Args:
        label_key: the target: ``"seeds"`` (the expanded points) or ``"label"`` (full labels, for
            validation when they exist). Default ``"seeds"``.
        image_key: the network input. Default ``"image"``.
        pack_image: return the target with the image behind it as extra channels, for
            :class:`~medrefine.losses.point_supervision.PointSupervisionLoss`. Default False.
    """

    def __init__(self, label_key: str = "seeds", image_key: str = "image", pack_image: bool = False) -> None:
        self.label_key = label_key
        self.image_key = image_key
        self.pack_image = bool(pack_image)

    def __call__(self, batchdata: Mapping[str, Any], device=None, non_blocking: bool = False, **kwargs):
        from medrefine.losses.point_supervision import pack_image_with_target

        for k in (self.image_key, self.label_key):
            if k not in batchdata:
                raise InputError(f"the batch has no {k!r}; its keys are {sorted(map(str, batchdata))}")
        image = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, **kwargs)
        target = batchdata[self.label_key].to(device=device, non_blocking=non_blocking, **kwargs)
        if self.pack_image:
            target = pack_image_with_target(target, image)
        return image, target


def stage1_model_file(model_dir: str | Path, network_name: str) -> Path:
    """``<model_dir>/stage1_<network_name>.pt``: stage 1's selected weights of one architecture."""
    return Path(model_dir) / f"stage1_{network_name.replace('.', '')}.pt"


def model_file(model_dir: str | Path, network_name: str) -> str:
    """The model to run: ``model.pt`` (stage 2's primary network) when it exists, else stage 1's."""
    final = Path(model_dir) / "model.pt"
    return str(final if final.is_file() else stage1_model_file(model_dir, network_name))


def load_weights(network: torch.nn.Module, path: str | Path, *, what: str = "model", hint: str = "") -> torch.nn.Module:
    """Load a checkpoint (a bare state dict or ``{"model": state dict}``) into ``network``; return it.

    Raises:
        InputError: the file is missing (with ``hint``, e.g. the command that makes it), needs more
            than tensors and plain values to load (refused, never executed) or does not fit the
            network (naming the file).
    """
    from medrefine.io.torchfile import load_plain

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no {what} found. {hint}".strip())
    state = load_plain(path, what=f"{what} file")
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise InputError(f"{path}: the {what} does not fit the configured network ({first}); "
                         "check `network_name` and `channels`") from None
    return network


# ---------------------------------------------------------------------------------------------
# config helpers: pieces whose choice depends on a config value


def intensity_transform(mode: str | Sequence[float] | None = "auto", window: Sequence[float] | None = None,
                        keys: str | Sequence[str] = "image"):
    """The image normalisation (:class:`~medrefine.transforms.intensity.ModalityIntensityd`).

    Args:
        mode: ``"ct"`` (clip to ``window``, scale to [0, 1]), ``"percentile"`` (0.5th..99.5th
            percentiles to [0, 1]), ``"zscore"``, or ``"auto"`` (each image by the rule of
            :mod:`medrefine.transforms.intensity`); a resolved mode comes from :func:`cohort_intensity`.
            A window or ``None`` (configs of medrefine 0.x: ``intensity_range``) means ``"ct"`` / ``"zscore"``.
        window: the CT window ``[a_min, a_max]``; ``None``: [-200, 300].
    """
    from medrefine.transforms.intensity import ModalityIntensityd

    if mode is None or not isinstance(mode, str):
        mode, window = ("zscore", None) if mode is None else ("ct", mode)
    return ModalityIntensityd(keys=keys, mode=mode, window=window)


def cohort_intensity(cases: str | Path | Sequence[Mapping[str, Any]], intensity: str = "auto",
                     intensity_range: Sequence[float] | None = None, *, key: str = "training", max_cases: int = 3) -> str:
    """Resolve the bundle's ``intensity`` key for a cohort: ``"ct"``, ``"percentile"`` or ``"zscore"``.

    ``"auto"`` with a configured ``intensity_range`` (a window) is ``"ct"``; otherwise the first
    ``max_cases`` images decide by :func:`medrefine.transforms.intensity.intensity_mode` and must
    agree. The resolved mode also picks the bundle's recipe (``recipes#<mode>``). ``cases`` is a
    list of case dictionaries or a dataset (:func:`medrefine.data.cohort.load_cohort`, list ``key``),
    read only for ``"auto"``.

    Raises:
        InputError: an unknown ``intensity``; images of the cohort that the rule puts in different
            modes (naming two of them and the key that settles it).
    """
    from monai.transforms import LoadImage

    from medrefine.transforms.intensity import check_intensity_mode, intensity_mode

    if check_intensity_mode(intensity) != "auto":
        return intensity
    if intensity_range is not None:
        return "ct"
    if isinstance(cases, (str, Path)):
        from medrefine.data.cohort import load_cohort

        cases = load_cohort(cases, key=key, require=["image"], strict=False).cases
    found: dict[str, str] = {}
    for case in list(cases)[: max(1, int(max_cases))]:
        image = LoadImage(image_only=True)(case["image"])
        found.setdefault(intensity_mode(image, "auto"), str(case["image"]))
    if len(found) > 1:
        files = "; ".join(f"{path} -> {mode}" for mode, path in found.items())
        raise InputError(f"`intensity: auto` found images of different kinds in one cohort ({files}); "
                         "set `intensity` to ct, percentile or zscore")
    mode = next(iter(found), "percentile")
    logger.info("intensity: %s (chosen from the images; set `intensity` to override)", mode)
    return mode


def model_intensity(model: Any) -> str:
    """The ``intensity`` mode a trained model records (models without one: window -> ct, else zscore)."""
    recorded = model.value("intensity", default=None)
    if recorded:
        return str(recorded)
    return "ct" if model.value("intensity_range", default=None) else "zscore"


def points_transform(simulate: bool, target_classes: Sequence[int] | None = None, seed: int = 0, jitter_mm: float = 0.0):
    """Read the points of each case (:class:`~medrefine.transforms.LoadPointsd`) or, with
    ``simulate``, make them from its full label (:class:`~medrefine.transforms.SimulatePointsd`)."""
    from medrefine.transforms.point_supervision import LoadPointsd, SimulatePointsd

    if simulate:
        return SimulatePointsd(keys="label", output_keys="points", classes=target_classes, seed=seed, jitter_mm=jitter_mm)
    return LoadPointsd(keys="points", image_key="image")


def labelled_cases(cases: Sequence[Mapping], what: str = "evaluate") -> list[dict]:
    """The cases with a full ``label``; raise when there is none."""
    chosen = [dict(c) for c in cases if c.get("label")]
    if not chosen:
        raise InputError(f"{what} needs full labels: no case of the datalist has a 'label' entry")
    return chosen


def validation_postprocessing(num_classes: int, *, with_labels: bool, pred_keys: Sequence[str] = ("pred",)):
    """One-hot predictions (and full labels when they are the target; seeds stay as they are)."""
    from monai.transforms import AsDiscreted, Compose

    transforms = [AsDiscreted(keys=list(pred_keys), argmax=True, to_onehot=int(num_classes))]
    if with_labels:
        transforms.append(AsDiscreted(keys="label", to_onehot=int(num_classes)))
    return Compose(transforms)


def selection_metric(*, with_labels: bool, agreement: bool = False) -> dict[str, Any]:
    """The validation key metric ``val_dice`` that selects the saved model.

    ``with_labels``: mean foreground Dice against full labels. Otherwise, stage 1 (``agreement``
    False): :class:`~medrefine.metrics.SeedDiceMetric` against the seeds; stage 2 (``agreement`` True): mean
    foreground Dice between the two networks' predictions (``pred`` vs ``pred2``).
    """
    from monai.handlers import IgniteMetricHandler, MeanDice, from_engine

    from medrefine.metrics.seed_dice import SeedDiceMetric

    if with_labels:
        return {"val_dice": MeanDice(include_background=False, output_transform=from_engine(["pred", "label"]))}
    if agreement:
        return {"val_dice": MeanDice(include_background=False, output_transform=from_engine(["pred", "pred2"]))}
    return {"val_dice": IgniteMetricHandler(metric_fn=SeedDiceMetric(), output_transform=from_engine(["pred", "label"]))}

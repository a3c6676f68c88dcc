"""Multi-organ segmentation: the glue the ``multiorgan_ct_segmentation`` bundle's configs call.

MONAI provides the parts (networks, transforms, SupervisedTrainer/SupervisedEvaluator, handlers,
inferers); what it lacks, and what lives here, is the small amount of choosing and bookkeeping a
config cannot express in one line:

- :func:`class_table` / :func:`select_structures`: the class table of a cohort (``classes.json``,
  a datalist's ``"labels"`` or TotalSegmentator's ``{"total": ...}``), optionally restricted to
  structures chosen by name;
- :func:`load_cases`: the cases of a cohort (:func:`medrefine.data.cohort.load_cohort`: a
  datalist, image/label folders, TotalSegmentator cases merged once into multi-label maps, ...),
  split into training and validation;
- :func:`build_inferer` / :func:`patch_size`: one config key (``network_name``, a name of
  :func:`medrefine.networks.segmentation.build_segmentation_network`) picks the network and its
  inference: Gaussian sliding windows for the volumetric networks (``"unet"``,
  ``"attention_unet"``, ``"unet2.5d"``), slice by slice (:class:`monai.inferers.SliceInferer`)
  for ``"unet2d"``;
- :func:`label_to_index` / :func:`label_target` / :func:`build_loss` /
  :func:`validation_postprocessing` / :func:`to_label_map`: label values to channel indices and
  back, and the multi-class (softmax, DiceCE) and multi-label (sigmoid per structure, BCE + Dice)
  formulations;
- :class:`TrainingHistory`: per-epoch CSV history and a training-curve PNG;
- :func:`resume_from_latest`, :func:`write_label_map`, :func:`split_structures`,
  :func:`case_name_formatter`, :func:`evaluate_predictions` (per-structure metrics and report).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medrefine.errors import InputError
from medrefine.networks.segmentation import (
    DEPRECATED_NETWORK_NAMES,
    SEGMENTATION_NETWORKS,
    build_segmentation_network,
    network_spatial_dims,
    resolve_network_name,
)

__all__ = [
    "FORMULATIONS",
    "NETWORKS",
    "build_inferer",
    "build_loss",
    "build_network",
    "case_name_formatter",
    "class_table",
    "evaluate_predictions",
    "inference_cases",
    "label_target",
    "label_to_index",
    "load_cases",
    "out_channels",
    "patch_size",
    "select_structures",
    "spatial_dims",
    "split_cases",
    "split_structures",
    "split_structures_folder",
    "squeeze_slice",
    "to_label_map",
    "validation_postprocessing",
    "write_label_map",
]

logger = logging.getLogger(__name__)

NETWORKS = SEGMENTATION_NETWORKS  # the names of medrefine.networks.segmentation.build_segmentation_network
FORMULATIONS = ("multiclass", "multilabel")


def _check_option(value: str, options: Sequence[str], name: str) -> str:
    if value not in options:
        import difflib

        close = difflib.get_close_matches(str(value), options, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"`{name}` must be one of {list(options)}, got {value!r}{hint}")
    return value


# ---------------------------------------------------------------------------------------------
# classes and cases


def class_table(
    dataset_dir: str | Path,
    *,
    num_classes: int | None = None,
    task: str | None = None,
    structures: Sequence[str] | None = None,
) -> dict[int, str]:
    """The class table of a cohort: ``{value: name}`` with ``0: "background"``.

    :func:`medrefine.data.cohort.cohort_classes`: the datalist's ``"labels"``, a ``classes.json``
    (``task`` picks e.g. TotalSegmentator's ``"total"``), or TotalSegmentator's structure names;
    without any, ``num_classes`` classes named ``class_<i>``.

    Raises:
        InputError: no table found and no ``num_classes`` given.
    """
    from medrefine.data.cohort import cohort_classes

    table = cohort_classes(dataset_dir, default=num_classes, task=task, structures=structures)
    if num_classes is not None and len(table) != int(num_classes):
        logger.warning("num_classes=%s but the class table of %s has %d classes; using the table",
                       num_classes, dataset_dir, len(table))
    return table


def select_structures(classes: Mapping[int, str], structures: Sequence[str] | None) -> dict[int, str]:
    """Restrict a class table to structures chosen by name (keeps their label values).

    Raises:
        InputError: a name is not in the table (with a did-you-mean).
    """
    classes = {int(k): v for k, v in classes.items()}
    if not structures:
        return dict(sorted(classes.items()))
    by_name = {v: k for k, v in classes.items()}
    unknown = [s for s in structures if s not in by_name]
    if unknown:
        import difflib

        hints = [f"{u!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, list(by_name), n=1)) else "")
                 for u in unknown]
        raise InputError(f"`structures`: unknown structure(s) {', '.join(hints)}")
    chosen = {0: classes.get(0, "background")}
    chosen.update({by_name[s]: s for s in structures})
    return dict(sorted(chosen.items()))


def load_cases(
    dataset_dir: str | Path,
    *,
    key: str = "training",
    structures: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    label_key: str = "label",
    nan_policy: str = "refuse",
    task: str | None = None,
) -> list[dict[str, Any]]:
    """The cases of a cohort as MONAI dictionaries (``image``, ``label``, ``case``; absolute paths).

    ``dataset_dir`` is anything :func:`medrefine.data.cohort.load_cohort` reads (a datalist, a
    folder with ``datalist.json``, ``images/`` + ``labels/``, TotalSegmentator cases, ...).
    TotalSegmentator masks are merged once into multi-label maps under ``cache_dir`` (default
    ``dataset_dir/.multilabel``, with a ``classes.json``) with the ``structures`` chosen.
    ``label_key`` names the datalist key used as the label (e.g. ``"label_clean"``); entries
    keep only ``case``, ``image`` and ``label``. ``nan_policy`` ``"zero"`` accepts NaN/Inf image
    voxels (the config's ``nonfinite_transform`` sets them to 0); ``"refuse"`` (default) refuses them.
    ``task`` picks the table of a ``classes.json`` holding several (TotalSegmentator's
    ``{"total": ..., "total_mr": ...}``).

    Raises:
        InputError: not a dataset, or anything ``medrefine validate`` flags as an error
            (:func:`medrefine.data.validate.require_valid`), in one line naming the file.
    """
    from medrefine.data.cohort import load_cohort
    from medrefine.data.validate import require_valid

    cohort = load_cohort(dataset_dir, key=key, label_key=label_key, structures=structures, cache_dir=cache_dir,
                         task=task, strict=False)
    cohort = require_valid(cohort, keys=("image", "label"), nan_policy=nan_policy).materialize_labels()
    # only image/label/case: MONAI's Spacingd takes any other key starting with "label_" for metadata
    return [{"case": str(c["case"]), "image": c["image"], "label": c["label"]} for c in cohort.cases]


def split_cases(cases: Sequence[Mapping], part: str, *, num_val: int = 1) -> list[dict]:
    """Training or validation part of ``cases``: the last ``num_val`` cases validate.

    With a single case (fit-to-one-case), training and validation share it.
    """
    _check_option(part, ("train", "val"), "part")
    cases = [dict(c) for c in cases]
    if len(cases) <= 1 or num_val <= 0:
        return cases
    num_val = min(int(num_val), len(cases) - 1)
    return cases[:-num_val] if part == "train" else cases[-num_val:]


# ---------------------------------------------------------------------------------------------
# networks, inferers, formulations


def out_channels(num_classes: int, formulation: str) -> int:
    """Network output channels: one per class (softmax) or one per structure (sigmoid)."""
    _check_option(formulation, FORMULATIONS, "formulation")
    return int(num_classes) if formulation == "multiclass" else int(num_classes) - 1


def build_network(name: str, **kwargs: Any) -> torch.nn.Module:
    """Deprecated: :func:`medrefine.networks.segmentation.build_segmentation_network` under the config key's name.

    Kept for configs that still name ``medrefine.workflows.segmentation.build_network``; the
    bundles call the factory directly. ``name`` is checked as the config key ``network_name``.
    """
    import warnings

    warnings.warn("medrefine.workflows.segmentation.build_network is deprecated; use "
                  "medrefine.networks.segmentation.build_segmentation_network", DeprecationWarning, stacklevel=2)
    _check_option(name, NETWORKS + tuple(DEPRECATED_NETWORK_NAMES), "network_name")
    return build_segmentation_network(resolve_network_name(name, "network_name"), **kwargs)


def spatial_dims(name: str) -> int:
    """2 for the slice-wise network (``"unet2d"``), 3 otherwise."""
    _check_option(name, NETWORKS + tuple(DEPRECATED_NETWORK_NAMES), "network_name")
    return network_spatial_dims(resolve_network_name(name, "network_name"))


def patch_size(name: str, roi_size: Sequence[int]) -> list[int]:
    """Training crop of the 3D volume: ``roi_size``, or one axial slice ``(X, Y, 1)`` for 2D."""
    roi = [int(r) for r in roi_size]
    return roi[:2] + [1] if spatial_dims(name) == 2 else roi


def build_inferer(name: str, *, roi_size: Sequence[int], sw_batch_size: int = 4, overlap: float = 0.25,
                  mode: str = "gaussian", progress: bool = False, low_memory: bool = False):
    """Gaussian sliding-window inference for the volumetric networks, slice by slice for ``"unet2d"``.

    With ``low_memory`` (3D networks), :class:`medrefine.inferers.slab.SlabSlidingWindowInferer`:
    the same windows and weights, but the argmax is written slab by slab and the inferer returns
    class indices ``(B, 1, *spatial)`` instead of logits (multi-class only).
    """
    from monai.inferers import SliceInferer, SlidingWindowInferer

    if low_memory:
        if spatial_dims(name) == 2:
            raise ValueError("`low_memory` inference is for the 3D networks; the 2D network already runs slice by slice")
        from medrefine.inferers.slab import SlabSlidingWindowInferer

        return SlabSlidingWindowInferer(roi_size=roi_size, sw_batch_size=sw_batch_size, overlap=overlap, mode=mode,
                                        progress=progress)
    if spatial_dims(name) == 2:
        return SliceInferer(roi_size=tuple(int(r) for r in roi_size[:2]), spatial_dim=2, sw_batch_size=sw_batch_size,
                            overlap=overlap, mode=mode, progress=progress)
    return SlidingWindowInferer(roi_size=tuple(int(r) for r in roi_size), sw_batch_size=sw_batch_size,
                                overlap=overlap, mode=mode, progress=progress)


def squeeze_slice(name: str, keys: Sequence[str] = ("image", "label")):
    """Drop the singleton axial axis of 2D training crops (identity for the 3D networks)."""
    from monai.transforms import Identityd, SqueezeDimd

    return SqueezeDimd(keys=list(keys), dim=3) if spatial_dims(name) == 2 else Identityd(keys=list(keys))


def _structure_channels(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    from monai.networks.utils import one_hot

    return one_hot(label.long(), num_classes, dim=0)[1:].float()


def label_target(formulation: str, num_classes: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Label transform of the formulation: the label map (multi-class) or one channel per structure."""
    _check_option(formulation, FORMULATIONS, "formulation")
    if formulation == "multiclass":
        return lambda label: label
    return lambda label: _structure_channels(label, int(num_classes))


def build_loss(formulation: str, *, lambda_dice: float = 1.0, lambda_ce: float = 1.0) -> torch.nn.Module:
    """:class:`monai.losses.DiceCELoss`: softmax + cross-entropy, or sigmoid + BCE per structure."""
    from monai.losses import DiceCELoss

    multiclass = _check_option(formulation, FORMULATIONS, "formulation") == "multiclass"
    return DiceCELoss(to_onehot_y=multiclass, softmax=multiclass, sigmoid=not multiclass,
                      lambda_dice=lambda_dice, lambda_ce=lambda_ce)


def validation_postprocessing(formulation: str, num_classes: int):
    """Post-transforms making ``pred`` and ``label`` one-hot channels for :class:`~monai.handlers.MeanDice`."""
    from monai.transforms import Activationsd, AsDiscreted, Compose

    if _check_option(formulation, FORMULATIONS, "formulation") == "multiclass":
        return Compose([Activationsd(keys="pred", softmax=True),
                        AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=int(num_classes))])
    return Compose([Activationsd(keys="pred", sigmoid=True), AsDiscreted(keys="pred", threshold=0.5)])


def _label_from_logits(pred: torch.Tensor, formulation: str, values: torch.Tensor, threshold: float) -> torch.Tensor:
    if pred.shape[0] == 1 and not pred.is_floating_point():  # class indices from the low-memory inferer
        if formulation != "multiclass":
            raise ValueError("class indices (low-memory inference) need `formulation='multiclass'`")
        index = pred.long()
    elif formulation == "multiclass":
        index = pred.argmax(dim=0, keepdim=True)
    else:
        prob = torch.sigmoid(pred.float())
        best, index = prob.max(dim=0, keepdim=True)
        index = torch.where(best > threshold, index + 1, torch.zeros_like(index))
    return values.to(index.device)[index]


def to_label_map(formulation: str, label_map: Mapping[int, str], threshold: float = 0.5) -> Callable:
    """Logits ``(C, *spatial)`` -> one label map ``(1, *spatial)`` with the classes' own values.

    Multi-class: argmax (or, for integer ``(1, *spatial)`` input, class indices already). Multi-label: each voxel takes the most probable structure whose
    probability exceeds ``threshold`` (0 elsewhere). Channel ``i`` of the network is the
    ``i``-th class of ``label_map`` (sorted by value), so a subset of structures is written with
    its original label values. The result keeps ``pred``'s metadata (for :class:`~monai.transforms.Invertd`).
    """
    _check_option(formulation, FORMULATIONS, "formulation")
    values = torch.tensor(sorted(int(k) for k in label_map), dtype=torch.int16)

    def convert(pred: torch.Tensor) -> torch.Tensor:
        out = _label_from_logits(pred, formulation, values, threshold)
        if hasattr(pred, "copy_meta_from"):
            from monai.data import MetaTensor

            out = MetaTensor(out, meta=pred.meta, applied_operations=pred.applied_operations)
        return out

    return convert


def label_to_index(label_map: Mapping[int, str]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Label values -> channel indices ``0..N-1`` of the classes of ``label_map``; other values -> 0.

    (MONAI's :class:`~monai.transforms.MapLabelValue` leaves unlisted values unchanged, so a
    subset of structures would keep the others' values.)
    """
    values = sorted(int(k) for k in label_map)

    def convert(label: torch.Tensor) -> torch.Tensor:
        top = max(int(label.max()) if label.numel() else 0, values[-1]) + 1
        lut = torch.zeros(top, dtype=torch.int16, device=label.device)
        lut[torch.tensor(values, device=label.device)] = torch.arange(len(values), dtype=torch.int16, device=label.device)
        out = lut[label.long()]
        if hasattr(label, "copy_meta_from"):
            from monai.data import MetaTensor

            out = MetaTensor(out.as_subclass(torch.Tensor), meta=label.meta, applied_operations=label.applied_operations)
        return out

    return convert


# ---------------------------------------------------------------------------------------------
# files


def write_label_map(label_map: Mapping[int, str], output_dir: str | Path) -> Path:
    """Write ``output_dir/label_map.json`` (``{"0": "background", "5": "liver", ...}``)."""
    from medrefine.data.classes import save_classes

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return save_classes(label_map, out / "label_map.json")


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def split_structures(label_path: str | Path, label_map: Mapping[int, str], out_dir: str | Path | None = None) -> list[Path]:
    """Write one 0/1 NIfTI per structure of a multi-label file (TotalSegmentator-style).

    Files go to ``out_dir`` (default ``<label file without suffix>_structures/``) as ``<name>.nii.gz``,
    with the label's affine.
    """
    import nibabel as nib

    from medrefine.io import save_nifti

    label_path = Path(label_path)
    img = nib.load(str(label_path))
    data = np.asarray(img.dataobj)
    out = Path(out_dir) if out_dir else label_path.with_name(label_path.name.split(".")[0] + "_structures")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for value, name in sorted(label_map.items()):
        if int(value) == 0:
            continue
        path = out / f"{_safe_name(name)}.nii.gz"
        save_nifti((data == int(value)).astype(np.uint8), path, affine=img.affine)
        written.append(path)
    return written


def inference_cases(dataset_dir: str | Path, *, key: str = "training", nan_policy: str = "refuse") -> list[dict[str, Any]]:
    """Images to segment: the ``image`` of every case of a cohort (any layout
    :func:`medrefine.data.cohort.load_cohort` reads, including a folder of images or one DICOM
    series), labels not needed. Every image is checked as ``medrefine validate`` checks it
    (``nan_policy`` as in :func:`load_cases`) before the first output is written.

    Raises:
        InputError: not a dataset, or a listed image is missing or flagged by
            :func:`medrefine.data.validate.require_valid` (one line naming the file).
    """
    from medrefine.data.cohort import load_cohort
    from medrefine.data.validate import require_valid

    cohort = load_cohort(dataset_dir, key=key, require=("image",), strict=False)
    cohort = require_valid(cohort, keys=("image",), nan_policy=nan_policy)
    return [{"case": str(c["case"]), "image": c["image"]} for c in cohort.cases]


def case_name_formatter(cases: Sequence[Mapping]) -> Callable[[Mapping, Any], dict[str, Any]]:
    """``output_name_formatter`` for :class:`~monai.transforms.SaveImaged`: files named by case id.

    MONAI names outputs after the input file, which collides for TotalSegmentator's
    ``<case>/ct.nii.gz``; this maps each image path back to its case.
    """
    by_image = {str(Path(c["image"]).resolve()): str(c["case"]) for c in cases}

    def formatter(metadict: Mapping, saver: Any) -> dict[str, Any]:
        source = str(metadict.get("filename_or_obj", ""))
        try:
            case = by_image.get(str(Path(source).resolve()))
        except OSError:
            case = None
        return {"subject": case or Path(source).name.split(".")[0], "idx": metadict.get("patch_index")}

    return formatter


def split_structures_folder(output_dir: str | Path, label_map: Mapping[int, str], postfix: str = "seg",
                            cases: Sequence[Mapping] | None = None) -> list[Path]:
    """:func:`split_structures` for every ``*_<postfix>.nii.gz`` in ``output_dir``, or for those of
    ``cases`` only (a shard: each rank splits the files it wrote)."""
    if cases is None:
        paths = sorted(Path(output_dir).glob(f"*_{postfix}.nii.gz"))
    else:
        paths = [_find_prediction(Path(output_dir), str(c["case"]), postfix) for c in cases]
    written = []
    for path in paths:
        written += split_structures(path, label_map)
    return written


def _find_prediction(output_dir: Path, case: str, postfix: str = "seg") -> Path:
    path = output_dir / f"{case}_{postfix}.nii.gz"
    if not path.is_file():
        raise InputError(f"{output_dir}: no prediction for case {case!r} (expected {path.name})")
    return path


def evaluate_predictions(
    cases: Sequence[Mapping],
    output_dir: str | Path,
    label_map: Mapping[int, str],
    *,
    metrics: Sequence[str] = ("dice", "iou", "hd95", "assd", "nsd"),
    nsd_tolerance_mm: float = 1.0,
    report: bool = True,
    title: str = "multi-organ segmentation",
    postfix: str = "seg",
):
    """Score the written predictions against the cases' labels, per structure.

    Predictions are ``output_dir/<case>_<postfix>.nii.gz`` in the labels' geometry and values.
    Writes ``output_dir/metrics.csv`` (:func:`medrefine.metrics.write_metrics_csv`) and, with
    ``report``, ``output_dir/report/`` (:func:`medrefine.reports.write_report`).

    Returns:
        The tidy metrics table.
    """
    from medrefine.metrics import evaluate_pairs, summarize, write_metrics_csv
    from medrefine.metrics.evaluate import build_sources, write_sources

    out = Path(output_dir)
    pairs = [(str(c["case"]), _find_prediction(out, str(c["case"]), postfix), Path(c["label"])) for c in cases]
    classes = {int(k): v for k, v in label_map.items() if int(k) != 0}
    df = evaluate_pairs(pairs, classes=classes, metrics=metrics, nsd_tolerance_mm=nsd_tolerance_mm)
    csv = write_metrics_csv(df, out / "metrics.csv")
    images = {str(c["case"]): c["image"] for c in cases if isinstance(c.get("image"), (str, Path))}
    write_sources(build_sources(pairs, classes, images=images or None), csv.with_suffix(".sources.json"))
    if report:
        from medrefine.reports import write_report

        write_report(csv, out / "report", title=title, name="segmentation")  # the sources give overlays and the 3D view
    dice = summarize(df)
    dice = dice[dice["metric"] == "dice"]
    for _, row in dice.iterrows():
        logger.info("dice %-24s %.4f (n=%d)", row["class_name"], row["mean"], row["n"])
    return df

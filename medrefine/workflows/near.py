"""Annotation refinement end to end: cases in, refined labels in the original geometry out.

The glue the refinement bundle's configs call, around the NeAR building blocks
(:class:`~medrefine.networks.ImplicitRefiner`, :class:`~medrefine.engines.AutoDecoderTrainer`,
:func:`~medrefine.engines.fit_latent`, :func:`~medrefine.inferers.decode_volume`):

1. :func:`load_refinement_cases` reads a cohort (any layout
   :func:`medrefine.data.cohort.load_cohort` reads), crops each case to its label's bounding box plus a margin and resamples
   it to a cube (128^3 by default, as NeAR), keeping what maps results back;
2. training runs in the engine; :func:`export_model` writes ``model.pt`` and ``model.json``
   (architecture, which latent belongs to which case, class table, training loss, pre-processing;
   see :mod:`medrefine.workflows.models`), :func:`load_model` builds the network back from them;
3. :func:`refine_cases` decodes every case (transductive: its own latent; inductive: a latent
   fitted to the case with the decoder frozen), maps the refined label and the per-voxel
   uncertainty back onto the original grid and writes them with a change map;
4. :func:`evaluate_refinement` scores refined and input labels against a clean reference (when
   there is one) and against each other, and writes the before/after report.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medrefine.errors import InputError, did_you_mean

__all__ = [
    "load_refinement_cases",
    "export_model",
    "load_model",
    "refine_cases",
    "evaluate_refinement",
    "before_after_table",
    "format_evaluation",
    "near_loss_spec",
    "planned_cube_size",
    "cube_edge",
]

logger = logging.getLogger(__name__)

_MODES = ("transductive", "inductive")


# ----------------------------------------------------------------------------------- reading


def load_refinement_cases(
    source: str | Path,
    *,
    key: str = "training",
    size: int | None = None,
    max_size: int = 128,
    margin_mm: float = 10.0,
    window: Sequence[float] | None = (-1000.0, 1000.0),
    num_classes: int | None = None,
    label_key: str = "label",
    clean_key: str = "label_clean",
    progress: bool = False,
    nan_policy: str = "refuse",
) -> list[dict[str, Any]]:
    """Read a cohort and bring every case onto a cube, ready for the auto-decoder.

    Args:
        source: a dataset :func:`medrefine.data.cohort.load_cohort` reads: a datalist JSON
            (entries with ``image``, ``label`` and optionally ``label_clean``), a folder holding
            ``datalist.json``, ``images/`` + ``labels/``, TotalSegmentator cases, or MultiNeAR
            (``appearance/*.npy``, ``shape/*.npy``, ``info.csv``; already cubes, no original
            geometry).
        key: the datalist list to read. Defaults to ``"training"``.
        size: cube edge in voxels (NeAR: 128); None sizes it to the data
            (:func:`planned_cube_size`: the native resolution, at most ``max_size``). Defaults to None.
        max_size: the largest cube edge ``size=None`` chooses. Defaults to 128.
        margin_mm: margin around the label's bounding box (mm). Defaults to 10.
        window: intensity window scaled to ``[0, 1]`` (CT: -1000..1000 HU); None scales each case
            by its 0.5-99.5th percentiles (MR).
        num_classes: classes the model is built for (background included); a label holding a
            value ``>= num_classes`` is refused.
        label_key: key of the label to refine. Defaults to ``"label"``.
        clean_key: key of an optional clean reference. Defaults to ``"label_clean"``.
        progress: show a progress bar.
        nan_policy: ``"refuse"`` (default) refuses an image with NaN/Inf voxels; ``"zero"`` sets them to 0.

    Returns:
        One dict per case: ``case``, ``image`` ``(1, S, S, S)`` float32 in [0, 1], ``label``
        ``(S, S, S)`` uint8, ``label_clean`` (or None), ``info`` (the prepare info mapping the cube
        back; None for MultiNeAR input) and the source paths ``image_path``, ``label_path``,
        ``clean_path``.

    Raises:
        InputError: naming the case and file, for anything ``medrefine validate`` flags as an error
            (:func:`medrefine.data.validate.require_valid`: missing or unreadable files, image and
            label on different grids, ...), or a label with more classes than ``num_classes``.
    """
    from tqdm.auto import tqdm

    from medrefine.data.cohort import load_cohort
    from medrefine.data.validate import require_valid

    cohort = load_cohort(source, key=key, label_key=label_key, strict=False)
    cohort = require_valid(cohort, nan_policy=nan_policy).materialize_labels()
    path = cohort.source
    cases: list[dict[str, Any]] = []
    if cohort.layout == "multinear":
        from medrefine.data.layouts import read_multinear

        for item in tqdm(read_multinear(cohort.root), desc="cases", disable=not progress):
            shape = np.asarray(item["shape"])
            _check_classes(shape, num_classes, f"case {item['case']} ({cohort.root / 'shape'})")
            appearance = np.asarray(item["appearance"], dtype=np.float32)
            cases.append({
                "case": str(item["case"]), "image": appearance[None], "label": shape.astype(np.uint8),
                "label_clean": None, "info": None, "image_path": None, "label_path": None, "clean_path": None,
            })
    else:
        from medrefine.data.prepare import apply_prepare, normalize_appearance, prepare_case
        from medrefine.io import Volume, check_same_grid, load_image, load_label
        from medrefine.workflows.preflight import zero_nonfinite

        if size is None:
            size = planned_cube_size([entry["label"] for entry in cohort.cases], margin_mm=margin_mm,
                                     max_size=max_size)
            logger.info("cube edge %d voxels (the cohort's native resolution, at most %d)", size, max_size)
        for entry in tqdm(cohort.cases, desc="cases", disable=not progress):
            case = str(entry["case"])
            try:
                image = load_image(entry["image"], finite=nan_policy == "refuse")
                image = Volume(zero_nonfinite(image.array), image.affine, path=image.path)
                label = load_label(entry["label"], num_classes=num_classes)
                clean = load_label(entry[clean_key], num_classes=num_classes) if entry.get(clean_key) else None
                # the crop box comes from the label being refined alone: a reference, when given,
                # is only carried along for reporting and must not shape what the model sees
                image_cube, label_cube, info = prepare_case(image, label, size=size, margin_mm=margin_mm, case=case)
                if clean is not None:
                    check_same_grid(label, clean, names=(str(entry["label"]), str(entry[clean_key])))
                clean_cube = apply_prepare(clean, info, is_label=True).array if clean is not None else None
            except InputError as err:
                raise type(err)(f"{err} (case {case!r})") from None
            cases.append({
                "case": case,
                "image": normalize_appearance(image_cube.array, window=window)[None],
                "label": np.asarray(label_cube.array, dtype=np.uint8),
                "label_clean": None if clean_cube is None else np.asarray(clean_cube, dtype=np.uint8),
                "info": info,
                "image_path": str(entry["image"]),
                "label_path": str(entry["label"]),
                "clean_path": str(entry[clean_key]) if entry.get(clean_key) else None,
            })
    if not cases:
        raise InputError(f"{path}: no cases under {key!r}")
    return cases


def planned_cube_size(labels: Sequence[str | Path], *, margin_mm: float = 10.0, max_size: int = 128,
                      multiple: int = 8) -> int:
    """The cube edge that keeps a cohort at its native resolution.

    The longest edge, in voxels, of any case's crop box (the label's bounding box plus
    ``margin_mm``), rounded up to a multiple of ``multiple`` and capped at ``max_size``: a 64^3
    cohort is refined on 64^3 cubes rather than upsampled to 128^3 (8 times the voxels to decode
    for no new information), a full-size CT is brought down to ``max_size``.

    Args:
        labels: the label files of the cohort.
        margin_mm: the crop margin (mm), as given to :func:`load_refinement_cases`.
        max_size: the largest edge returned. Defaults to 128.
        multiple: the edge is a multiple of this. Defaults to 8.

    Returns:
        The cube edge in voxels.

    Raises:
        InputError: an empty list, a label without foreground, or ``max_size < multiple``.
    """
    from medrefine.data.prepare import crop_box
    from medrefine.io import load_label

    if int(max_size) < int(multiple) or int(multiple) < 1:
        raise InputError(f"`max_size` ({max_size}) must be >= `multiple` ({multiple}) >= 1")
    if not labels:
        raise InputError("no labels to size the cubes from")
    longest = 0
    for path in labels:
        label = load_label(path)
        try:
            box = crop_box(np.asarray(label.array), label.spacing, margin_mm=margin_mm)
        except InputError as err:
            raise InputError(f"{path}: {err}") from None
        longest = max(longest, *(stop - start for start, stop in box))
    rounded = -(-longest // int(multiple)) * int(multiple)
    return int(min(rounded, int(max_size) // int(multiple) * int(multiple)))


def cube_edge(cases: Sequence[Mapping[str, Any]]) -> int:
    """The cube edge (voxels) of cases from :func:`load_refinement_cases` (all share it)."""
    if not cases:
        raise InputError("no cases: cannot tell their cube edge")
    return int(np.asarray(cases[0]["image"]).shape[-1])


def _check_classes(label: np.ndarray, num_classes: int | None, where: str) -> None:
    if num_classes is not None and label.size and int(label.max()) >= num_classes:
        raise InputError(
            f"{where}: label holds class {int(label.max())} but the model is configured for {num_classes} classes "
            f"(0..{num_classes - 1})"
        )


# ------------------------------------------------------------------------------ model files


def near_loss_spec(loss: Any) -> dict[str, Any]:
    """``{"_target_": ..., **arguments}`` of a :class:`~medrefine.losses.NeARLoss`, its class
    weights included, so that a new case's latent is fitted to the training objective."""
    from medrefine.losses.near import NeARLoss

    if not isinstance(loss, NeARLoss):
        from medrefine.workflows.models import component_spec

        return component_spec(loss)
    weights = loss.weight_mode if loss.weight_mode else loss.class_weights
    return {
        "_target_": "medrefine.losses.NeARLoss", "num_classes": loss.num_classes,
        "class_weights": weights.tolist() if hasattr(weights, "tolist") else weights,
        "lambda_dice": loss.lambda_dice, "lambda_latent": loss.lambda_latent,
        "include_background": loss.include_background, "smooth_nr": loss.smooth_nr, "smooth_dr": loss.smooth_dr,
        "class_weight_cap": loss.class_weight_cap,
    }  # fmt: skip


def export_model(
    trainer_or_network: Any,
    cases: Sequence[Mapping[str, Any]],
    model_dir: str | Path,
    *,
    classes: Mapping[int, str] | int | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    loss: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the trained model: ``model.pt`` (weights) and ``model.json`` (its description).

    The last weights are exported. No reference label chooses them: a clean label given with the
    cases is for reporting only (choosing on it is an oracle a user does not have), and the Dice
    against the noisy labels favours the model that memorised the noise most.

    ``model.json`` records the network's constructor arguments, the case order (latent ``n``
    belongs to ``cases[n]``), the class table, the training loss with its class weights (so that
    inductive refinement fits a new case's latent to the training objective) and the
    pre-processing (``resolution``, ``margin_mm``, ``window``) that inference must repeat.

    Args:
        trainer_or_network: an :class:`~medrefine.engines.AutoDecoderTrainer` or the network itself.
        cases: the training cases in latent order (``case`` keys).
        model_dir: folder of the two files (the bundle's ``models/``).
        classes: class table or count (background included); defaults to numbered classes.
        preprocessing: the case preparation, keyed by the bundle's config names.
        loss: the training loss; defaults to the trainer's ``loss_function``.
        extra: more of the training recipe to record (``train_resolution``, ``num_points``, ...:
            inductive refinement fits new latents with the same query sampling).

    Returns:
        Path of ``model.pt``.
    """
    from medrefine.workflows.models import save_model

    network = getattr(trainer_or_network, "network", trainer_or_network)
    if classes is None or isinstance(classes, int):
        from medrefine.data.classes import default_classes

        classes = default_classes(int(classes or network.out_channels))
    loss = loss if loss is not None else getattr(trainer_or_network, "loss_function", None)
    return save_model(
        network, model_dir, classes=classes, cases=[str(c["case"]) for c in cases],
        loss=None if loss is None else near_loss_spec(loss), preprocessing=preprocessing, extra=extra,
    )  # fmt: skip


def load_model(model_dir: str | Path, *, device: Any = None) -> tuple[Any, Any]:
    """The trained refiner of ``model_dir`` built from its ``model.json``, and that description.

    Returns:
        ``(network, description)``; ``description.cases`` is the latent order.

    Raises:
        InputError: naming the file, when ``model.json`` or ``model.pt`` is missing, unreadable
            or does not fit.
    """
    from medrefine.workflows.models import read_model

    model = read_model(model_dir)
    if not model.cases:
        raise InputError(f"{model.where}: a NeAR model must list its training cases (latent order), found none")
    return model.load_network(device=device), model


# -------------------------------------------------------------------------------- refining


def refine_cases(
    network: Any,
    cases: Sequence[Mapping[str, Any]],
    output_dir: str | Path,
    *,
    refine_mode: str = "transductive",
    trained_cases: Sequence[str] | None = None,
    model: Any = None,
    fit_steps: int = 60,
    fit_lr: float = 3e-2,
    fit_resolution: int = 64,
    fit_num_points: int | None = None,
    chunk_size: int = 2**16,
    device: Any = None,
    progress: bool = False,
    mode: str | None = None,
    guard: bool = True,
    min_volume_ratio: float = 0.5,
    max_volume_ratio: float = 2.0,
    max_components_lost: int = 0,
    min_component_voxels: int = 27,
    min_component_overlap: float = 0.2,
    max_uncertainty: float = 0.5,
    restore_components: bool = True,
    min_component_fraction: float = 0.1,
    max_drop_distance_mm: float = 5.0,
    changes_csv: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Refine every case, guard it, and write the refined label, the uncertainty and the change map.

    The guard (:func:`medrefine.transforms.guard_refinement`, on by default) compares each
    structure of the decoded label with the input label on the case's original grid and keeps the
    input for the structures the refinement erased, collapsed, exploded, split or is unsure of
    (a structure absent from the input is never created); the fallbacks are logged in one line per
    case and listed in ``changes.csv``.

    For each case, in ``output_dir``: ``refined/<case>.nii.gz`` (class labels after the guard, on
    the case's original grid: same shape, spacing and affine as the input label),
    ``uncertainty/<case>.nii.gz`` (entropy of the decoded class probabilities divided by log K, in
    [0, 1]), ``changes/<case>.nii.gz`` (0 where the refined label keeps the input's class, else the
    new class) and one row per case and class in ``changes.csv``: voxels in the input, in the
    refined label, added to / removed from the class, then the guard's ``action`` (``refined`` /
    ``kept_input`` / ``restored_parts``; empty for a class in neither label and with ``guard=False``), ``reason`` (``"volume 0.02x input"``),
    ``rule`` (``"volume < 0.5x input"``) and what it measured: ``decoded_voxels`` (the decoder's
    label, before the guard), ``volume_ratio``, ``components``, ``components_lost``,
    ``mean_uncertainty``.

    Args:
        network: a trained :class:`~medrefine.networks.ImplicitRefiner`.
        cases: from :func:`load_refinement_cases`.
        output_dir: where the folders above go.
        refine_mode: ``"transductive"`` (decode a trained case with its own latent; NeAR) or
            ``"inductive"`` (fit a new latent to each case with the decoder frozen, then decode).
            The config key of the same name. Default ``"transductive"``.
        trained_cases: case ids in latent order; transductive mode looks each case up there.
            Defaults to ``model.cases``, else to the order of ``cases``.
        model: the model's description (from :func:`load_model`): its case order, and its
            training loss, which inductive mode fits each new latent to (the objective the
            decoder was trained on; without it, :func:`~medrefine.engines.fit_latent`'s default).
        fit_steps, fit_lr, fit_resolution, fit_num_points: latent fitting (inductive mode).
        chunk_size: query points per forward pass while decoding (bounds memory).
        device: decoding device; defaults to the network's.
        progress: show a progress bar.
        mode: deprecated name of ``refine_mode``.
        guard: keep the input for the structures the refinement is not trusted with. The config
            key ``guard``. Default True; False writes the decoder's label unchecked.
        min_volume_ratio, max_volume_ratio, max_components_lost, min_component_voxels,
            min_component_overlap, max_uncertainty, restore_components, min_component_fraction,
            max_drop_distance_mm: the guard's thresholds and whether dropped parts are mended in
            place (config keys ``guard_<name>``; defaults 0.5, 2.0, 0, 27, 0.2, 0.5, True, 0.1, 5), see
            :func:`~medrefine.transforms.guard_refinement`.
        changes_csv: where the table goes; default ``output_dir/changes.csv`` (a sharded run
            writes a part per rank, :func:`medrefine.engines.sharding.part_path`).

    Returns:
        One dict per case with the written paths (``refined``, ``uncertainty``, ``changes``) and
        ``guard``: the guard's decisions, one dict per structure (``case`` and the fields of
        :class:`~medrefine.transforms.refinement_guard.GuardDecision`; None with ``guard=False``).

    Raises:
        InputError: an unknown ``refine_mode``, or (transductive) a case the model was not trained on.
        ValueError: a guard threshold out of range (before anything is decoded).
    """
    import torch
    from tqdm.auto import tqdm

    from medrefine.data.prepare import restore_image_to_original, restore_to_original
    from medrefine.engines import fit_latent
    from medrefine.inferers import decode_volume
    from medrefine.io import atomic_write, load_label, save_nifti
    from medrefine.transforms.refinement_guard import check_guard_args, guard_refinement

    thresholds = {"min_volume_ratio": min_volume_ratio, "max_volume_ratio": max_volume_ratio,
                  "max_components_lost": max_components_lost, "min_component_voxels": min_component_voxels,
                  "min_component_overlap": min_component_overlap, "max_uncertainty": max_uncertainty,
                  "restore_components": restore_components, "min_component_fraction": min_component_fraction,
                  "max_drop_distance_mm": max_drop_distance_mm}
    if guard:
        check_guard_args(**thresholds)
    if mode is not None:
        import warnings

        warnings.warn("`mode` is deprecated; use `refine_mode` (the same setting)", DeprecationWarning, stacklevel=2)
        refine_mode = mode
    mode = refine_mode
    if mode not in _MODES:
        raise InputError(f"`refine_mode` must be one of {list(_MODES)}, got {mode!r}." + did_you_mean(str(mode), _MODES))
    output_dir = Path(output_dir)
    if trained_cases is None and model is not None:
        trained_cases = model.cases
    names = list(trained_cases) if trained_cases is not None else [str(c["case"]) for c in cases]
    device = torch.device(device) if device is not None else next(network.parameters()).device
    network.to(device)
    fit_loss = model.build_loss(device) if (model is not None and mode == "inductive") else None
    k = int(network.out_channels)
    class_names = dict(model.classes) if model is not None and getattr(model, "classes", None) else {}
    rows, written = [], []
    for item in tqdm(cases, desc=f"refining ({mode})", disable=not progress):
        case = str(item["case"])
        appearance = torch.as_tensor(item["image"], dtype=torch.float32, device=device)
        if mode == "transductive":
            if case not in names:
                raise InputError(
                    f"case {case}: the model was not trained on it (trained: {len(names)} cases); "
                    "use refine_mode='inductive' for new cases"
                )
            code: Any = names.index(case)
        else:
            code = fit_latent(network, appearance, torch.as_tensor(item["label"]), steps=fit_steps, lr=fit_lr,
                              resolution=fit_resolution, num_points=fit_num_points, loss_function=fit_loss,
                              device=device)
        label_cube, entropy_cube = decode_volume(network, code, appearance, chunk_size=chunk_size,
                                                 return_probabilities=False, normalize_entropy=True)
        label_cube = label_cube[0].cpu().numpy().astype(np.uint8)
        entropy_cube = entropy_cube[0].cpu().numpy()
        info = item.get("info")
        if info is not None:
            refined = restore_to_original(label_cube, info)
            uncertainty = restore_image_to_original(entropy_cube, info, order=1)
            affine = np.asarray(info["original_affine"])
            noisy_volume = load_label(item["label_path"])
            noisy, spacing = noisy_volume.array, tuple(float(v) for v in noisy_volume.spacing)
        else:
            refined, uncertainty, affine, noisy = label_cube, entropy_cube, np.eye(4), np.asarray(item["label"])
            spacing = None
        decisions = []
        if guard:
            refined, decisions = guard_refinement(noisy, refined, uncertainty, classes=class_names or None,
                                                  spacing=spacing, **thresholds)
            kept = [f"{d.class_name} ({d.reason})" for d in decisions if d.action == "kept_input"]
            mended = [d.class_name for d in decisions if d.action == "restored_parts"]
            if kept or mended:
                logger.warning("%s: %s", case, "; ".join(
                    ([f"kept the input for {', '.join(kept)}"] if kept else [])
                    + ([f"put back dropped parts of {', '.join(mended)}"] if mended else [])))
        changed = np.where(refined != noisy, refined, 0).astype(np.uint8)
        protect = [p for p in (item.get("image_path"), item.get("label_path"), item.get("clean_path")) if p]
        paths = {
            "case": case,
            "refined": str(save_nifti(refined.astype(np.uint8), output_dir / "refined" / f"{case}.nii.gz",
                                      affine=affine, protect=protect)),
            "uncertainty": str(save_nifti(uncertainty.astype(np.float32), output_dir / "uncertainty" / f"{case}.nii.gz",
                                          affine=affine, protect=protect)),
            "changes": str(save_nifti(changed, output_dir / "changes" / f"{case}.nii.gz", affine=affine,
                                      protect=protect)),
        }
        paths["guard"] = [{"case": case, **d.as_dict()} for d in decisions] if guard else None
        written.append(paths)
        by_class = {d.class_id: d for d in decisions}
        for c in range(1, k):
            was, now = noisy == c, refined == c
            d = by_class.get(c)
            rows.append({"case": case, "class_id": c, "input_voxels": int(was.sum()), "refined_voxels": int(now.sum()),
                         "added": int((now & ~was).sum()), "removed": int((was & ~now).sum()),
                         "action": d.action if d else "",
                         "reason": d.reason if d else "", "rule": d.rule if d else "",
                         "decoded_voxels": d.refined_voxels if d else None, "volume_ratio": d.volume_ratio if d else None,
                         "components": d.components if d else None, "components_lost": d.components_lost if d else None,
                         "mean_uncertainty": d.mean_uncertainty if d else None})
    import pandas as pd

    with atomic_write(Path(changes_csv) if changes_csv is not None else output_dir / "changes.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return written


# the scoring half lives in near_evaluation; configs and users keep calling it from here
from medrefine.workflows.near_evaluation import before_after_table, evaluate_refinement, format_evaluation  # noqa: E402

"""``medrefine refine`` end to end: inputs in any form, a plan, training, refinement, scores, report.

The steps are the annotation_refinement bundle's (:mod:`medrefine.workflows.near`), run in one
process with the bundle's recipe (:func:`medrefine.workflows.near_plan.bundle_recipe`):

1. :func:`refinement_entries` turns image and label folders, single files or a dataset (a
   datalist, ``images/`` + ``labels/``, ...) into cases, paired by case name, with a clean
   reference when one is given; :func:`check_output_dir` refuses an output folder inside an
   input folder before anything is written;
2. :func:`~medrefine.workflows.near.load_refinement_cases` brings the cases onto cubes sized to
   the data; :func:`~medrefine.workflows.near_plan.make_plan` times the run on this machine;
3. training on all cases (transductive), :func:`~medrefine.workflows.near.export_model` into
   ``OUT/model``, :func:`~medrefine.workflows.near.refine_cases` into ``OUT`` (or, with a trained
   model, inductive refinement of the new cases);
4. :func:`~medrefine.workflows.near.evaluate_refinement` scores and writes the report;
   ``OUT/metrics.csv`` holds one row per case: mean foreground Dice of the refined label against
   the input label and, with a reference, of input and refined labels against it.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrefine.errors import InputError

__all__ = ["RefineResult", "refinement_entries", "check_output_dir", "input_folders", "per_case_dice", "run_refine",
           "drastic_change_warning", "DRASTIC_DICE_VS_INPUT", "DRASTIC_KEPT_FRACTION"]

DRASTIC_DICE_VS_INPUT = 0.6
"""Mean Dice of the refined labels against the input below which :func:`run_refine` warns."""
DRASTIC_KEPT_FRACTION = 0.5
"""Fraction of (case, structure) pairs the guard kept as input above which :func:`run_refine` warns."""

logger = logging.getLogger(__name__)


@dataclass
class RefineResult:
    """What :func:`run_refine` did: its plan, and (unless a dry run) its outputs and scores."""

    plan: Any
    out_dir: Path
    seconds: float
    metrics: Path | None = None
    report: Path | None = None
    dice_vs_input: float | None = None
    dice_before: float | None = None
    dice_after: float | None = None
    guard_lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: mean Dice against the input (and the reference) and the time against the estimate."""
        if self.dice_vs_input is None:
            return f"dry run: nothing written; estimated {self.plan.estimated_seconds / 60:.1f} min"
        parts = [f"refined {self.plan.num_cases} cases: mean Dice vs input {self.dice_vs_input:.3f}"]
        if self.dice_before is not None and self.dice_after is not None:
            parts.append(f"vs ref {self.dice_before:.3f} -> {self.dice_after:.3f} "
                         f"({self.dice_after - self.dice_before:+.3f})")
        parts.append(f"time {self.seconds / 60:.1f} min (estimated {self.plan.estimated_seconds / 60:.1f} min)")
        return "; ".join(parts)


def drastic_change_warning(dice_vs_input: float, guard: Any, *, model_dir: str | Path,
                           report: str | Path | None = None) -> str | None:
    """One warning line when a refinement changed the labels drastically or the guard undid most of it.

    A model that is under-trained, or trained on other data, either rewrites the labels (an
    under-trained model once took a cohort's mean Dice from 0.757 to 0.474 against the clean
    labels, and the per-structure guard let it through) or produces nothing the guard trusts.
    Both show without a reference: the mean Dice of the refined labels against the input, and the
    share of (case, structure) pairs for which the guard kept the input.

    Args:
        dice_vs_input: mean over cases of the refined-vs-input Dice.
        guard: the guard's decisions (DataFrame with an ``action`` column, one row per case and
            structure), or None when the guard was off.
        model_dir: the model that refined, named in the line.
        report: the report to look at, named in the line when given.

    Returns:
        ``"warning: ..."`` or None when neither figure crosses its threshold
        (:data:`DRASTIC_DICE_VS_INPUT`, :data:`DRASTIC_KEPT_FRACTION`).
    """
    reasons = []
    if dice_vs_input < DRASTIC_DICE_VS_INPUT:
        reasons.append(f"the refined labels differ drastically from the input (mean Dice refined vs input "
                       f"{dice_vs_input:.3f} < {DRASTIC_DICE_VS_INPUT})")
    if guard is not None and len(guard):
        kept = int((guard["action"] == "kept_input").sum())
        if kept > DRASTIC_KEPT_FRACTION * len(guard):
            reasons.append(f"the guard kept the input for {kept} of {len(guard)} structure(s) over "
                           f"{guard['case'].nunique()} case(s)")
    if not reasons:
        return None
    where = f"; check {report} before using the refined labels" if report is not None else ""
    return f"warning: {' and '.join(reasons)}: the model {model_dir} may be under-trained or made for other data{where}"


# ----------------------------------------------------------------------------------- inputs


def _is_dataset(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(".json") or (path.is_dir() and any(
        (path / name).exists() for name in ("datalist.json", "images", "imagesTr", "appearance")))


def refinement_entries(
    images: str | Path,
    labels: str | Path | None = None,
    *,
    ref: str | Path | None = None,
    key: str = "training",
) -> tuple[list[dict[str, Any]], dict[int, str] | None]:
    """The cases to refine, paired by case name, and the class table found with them.

    Args:
        images: a folder of images, one image file, or (with ``labels`` None) a dataset
            :func:`~medrefine.data.cohort.load_cohort` reads (a datalist JSON, a folder with
            ``datalist.json`` or ``images/`` + ``labels/``, ...), whose ``label`` is refined and
            whose ``label_clean`` (if any) is the reference.
        labels: the labels to refine: a folder paired with ``images`` by case name (nnU-Net's
            ``<case>_0000`` images pair with ``<case>``), or one file with one image file.
        ref: clean reference labels, a folder paired by case name or one file (one case).
        key: the datalist list of a dataset ``images``. Defaults to ``"training"``.

    Returns:
        ``(entries, classes)``: ``{"case", "image", "label"[, "label_clean"]}`` with absolute
        paths, sorted by case; the class table of the datalist or of a ``classes.json`` /
        ``datalist.json`` beside the labels (:func:`~medrefine.data.classes.find_classes`), or None.

    Raises:
        InputError: one line naming the unpaired files, a missing reference, or inputs of mixed kinds.
    """
    from medrefine.data.classes import find_classes
    from medrefine.data.datalist import case_id, list_cases, match_cases

    images = Path(images).expanduser()
    classes = None
    if labels is None:
        if not _is_dataset(images):
            raise InputError(f"{images}: expected a dataset (a datalist JSON or a folder with datalist.json or "
                             "images/ + labels/) when no labels are given; pass the labels with -l")
        from medrefine.data.cohort import load_cohort

        cohort = load_cohort(images, key=key).materialize_labels()
        entries = [{k: c[k] for k in ("case", "image", "label", "label_clean") if c.get(k)} for c in cohort.cases]
        classes = cohort.classes
    else:
        labels = Path(labels).expanduser()
        if images.is_dir() and labels.is_dir():
            entries = match_cases({"image": images, "label": labels})
        elif images.is_file() and labels.is_file():
            entries = [{"case": case_id(labels), "image": str(images.resolve()), "label": str(labels.resolve())}]
        else:
            raise InputError(f"images {images} and labels {labels}: expected two folders or two files, "
                             "found one of each")
    if ref is not None:
        ref = Path(ref).expanduser()
        found = list_cases(ref, what="reference label") if ref.is_dir() else (
            {str(entries[0]["case"]): ref.resolve()} if len(entries) == 1 else {})
        if ref.is_file() and len(entries) != 1:
            raise InputError(f"{ref}: expected a folder of references for {len(entries)} cases, found one file")
        missing = [str(e["case"]) for e in entries if str(e["case"]) not in found]
        if missing:
            raise InputError(f"{ref}: no reference label for {len(missing)} case(s) (files are paired by case name): "
                             + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
        for entry in entries:
            entry["label_clean"] = str(found[str(entry["case"])])
    if classes is None and labels is not None:
        hit = find_classes(*(p for p in (labels, ref, images) if p is not None))
        if hit is not None:
            classes, where = hit
            logger.info("class names from %s", where)
    return entries, classes


def input_folders(entries: Sequence[Mapping[str, Any]], *extra: str | Path | None) -> set[Path]:
    """The folders holding any file of ``entries``, plus the ``extra`` folders (a file's own folder), resolved."""
    folders = {Path(v).resolve().parent for e in entries for k, v in e.items() if k != "case" and isinstance(v, str)}
    for path in extra:
        if path is not None:
            p = Path(path).expanduser().resolve()
            folders.add(p if p.is_dir() else p.parent)
    return folders


def check_output_dir(out_dir: str | Path, folders: set[Path]) -> Path:
    """Refuse an output folder that is, or lies inside, an input folder; return it resolved.

    Raises:
        InputError: one line naming the output folder and the input folder it lies in.
    """
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: expected an output folder, found a file")
    for folder in sorted(folders):
        if out == folder or folder in out.parents:
            raise InputError(f"{out}: expected an output folder outside the inputs, found it inside the input folder "
                             f"{folder}; choose another -o")
    return out


# ----------------------------------------------------------------------------------- scores


def per_case_dice(metrics: Mapping[str, Any]) -> Any:
    """One row per case: mean foreground Dice of each comparison :func:`evaluate_refinement` scored.

    Args:
        metrics: ``{"change" | "input" | "refined": tidy metrics CSV path}``.

    Returns:
        DataFrame ``case, dice_refined_vs_input`` and, with a reference,
        ``dice_input_vs_ref, dice_refined_vs_ref, dice_gain``.
    """
    import pandas as pd

    names = {"change": "dice_refined_vs_input", "input": "dice_input_vs_ref", "refined": "dice_refined_vs_ref"}
    columns = {}
    for name, column in names.items():
        if name in metrics:
            df = pd.read_csv(metrics[name])
            columns[column] = df[df["metric"] == "dice"].groupby("case")["value"].mean()
    table = pd.DataFrame(columns)
    if "dice_refined_vs_ref" in table:
        table["dice_gain"] = table["dice_refined_vs_ref"] - table["dice_input_vs_ref"]
    return table.rename_axis("case").reset_index()


# -------------------------------------------------------------------------------------- run


def run_refine(
    images: str | Path,
    labels: str | Path | None,
    out_dir: str | Path,
    *,
    ref: str | Path | None = None,
    model_dir: str | Path | None = None,
    preset: str = "default",
    epochs: int | None = None,
    device: str | None = None,
    dry_run: bool = False,
    key: str = "training",
    echo: Callable[[str], None] = print,
) -> RefineResult:
    """Refine the labels of a cohort in one call (``medrefine refine``): plan, train, refine, score, report.

    Args:
        images, labels, ref, key: the inputs, see :func:`refinement_entries`.
        out_dir: the output folder (refused inside an input folder); receives ``refined/``,
            ``uncertainty/``, ``changes/``, ``changes.csv``, ``model/`` (when trained here),
            ``metrics.csv``, the tidy ``metrics_*.csv``, ``report/`` and ``run.json`` (plan and times).
        model_dir: a trained model (``model.pt`` + ``model.json``, e.g. an earlier run's
            ``OUT/model``) refining the cases inductively instead of training.
        preset: ``"fast"`` (half the default epochs), ``"default"`` or ``"quality"`` (1.5 times).
        epochs: training epochs, instead of the preset's.
        device: ``"cpu"`` or ``"cuda"``; default CUDA when present.
        dry_run: plan and time the run, print the plan, write nothing.
        echo: where the plan and progress lines go.

    Returns:
        The :class:`RefineResult`.

    Raises:
        InputError: for any input the bundle would refuse (one line naming the file), or an
            output folder inside an input folder.
    """
    import torch

    from medrefine.workflows import near
    from medrefine.workflows.near_plan import _quiet, available_threads, build_trainer, bundle_recipe, make_plan

    start = time.perf_counter()
    torch.set_num_threads(available_threads())
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: expected a CUDA device, found none; use --device cpu")
    recipe = bundle_recipe()
    entries, classes = refinement_entries(images, labels, ref=ref, key=key)
    out = check_output_dir(out_dir, input_folders(entries, images, labels, ref))
    network = model = None
    if model_dir is not None:
        network, model = near.load_model(model_dir, device=device)
        classes = dict(model.classes) if model.classes else classes
        size, margin, window = model.value("resolution"), model.value("margin_mm"), model.value("window")
        num_classes: int | None = int(model.num_classes)
    else:
        size, margin, window = None, recipe.get("margin_mm", 10.0), recipe.get("window")
        num_classes = max(classes) + 1 if classes else None
    echo(f"reading {len(entries)} case(s) ...")
    with tempfile.TemporaryDirectory(prefix="medrefine-refine-") as tmp:
        from medrefine.data.datalist import write_datalist

        source = write_datalist({"training": entries}, Path(tmp) / "datalist.json")
        cases = near.load_refinement_cases(source, size=size, max_size=int(recipe.get("max_resolution", 128)),
                                           margin_mm=margin, window=window, num_classes=num_classes)
    if num_classes is None:
        num_classes = max(2, max(int(c["label"].max()) for c in cases) + 1)
    if not classes:
        from medrefine.data.classes import default_classes

        classes = default_classes(num_classes)
    plan = make_plan(cases, recipe, num_classes=num_classes, epochs=epochs, preset=preset, device=device,
                     network=network, model=model, classes=classes, seconds_so_far=time.perf_counter() - start)
    for line in plan.lines():
        echo(line)
    if dry_run:
        return RefineResult(plan=plan, out_dir=out, seconds=time.perf_counter() - start)

    import monai

    from medrefine.handlers import EpochProgress

    out.mkdir(parents=True, exist_ok=True)
    fit: dict[str, Any] = {}
    phases = {"planned": time.perf_counter() - start}
    if network is None:
        monai.utils.set_determinism(seed=int(recipe.get("seed", 0)))
        trainer = build_trainer(cases, recipe, num_classes=num_classes, epochs=plan.epochs, device=device,
                                handlers=[EpochProgress(desc="training")])
        trainer.run()
        near.export_model(trainer, cases, out / "model", classes=classes,
                          preprocessing={"resolution": plan.cube_edge, "margin_mm": margin, "window": window},
                          extra={"train_resolution": plan.query_resolution, "num_points": plan.num_points,
                                 "jitter": recipe.get("jitter", 0.5), "epochs": plan.epochs})
        network, model = near.load_model(out / "model", device=device)
        mode = "transductive"
        phases["trained"] = time.perf_counter() - start
    else:
        mode = "inductive"
        fit = {"fit_steps": int(recipe.get("fit_steps", 60)), "fit_lr": float(recipe.get("fit_lr", 0.03)),
               "fit_resolution": int(model.value("train_resolution", 64)), "fit_num_points": model.value("num_points")}
    echo(f"refining {len(cases)} case(s) ({mode}) and scoring them ...")
    with _quiet():
        written = near.refine_cases(network, cases, out, refine_mode=mode, model=model, device=device,
                                    chunk_size=int(recipe.get("chunk_size", 2**16)), **fit)
    phases["refined"] = time.perf_counter() - start
    evaluation = near.evaluate_refinement(cases, out, classes=classes, refined=written,
                                          title="medrefine refine: annotation refinement")
    phases["scored"] = time.perf_counter() - start
    logger.info("seconds since the start: %s", ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
    table = per_case_dice(evaluation["metrics"])
    from medrefine.io import atomic_write

    with atomic_write(out / "metrics.csv") as tmp_csv:
        table.to_csv(tmp_csv, index=False)
    result = RefineResult(plan=plan, out_dir=out, seconds=time.perf_counter() - start, metrics=out / "metrics.csv",
                          report=evaluation.get("report"), dice_vs_input=float(table["dice_refined_vs_input"].mean()))
    before_after = evaluation.get("before_after")
    if before_after is not None:
        overall = before_after[before_after["class_id"] == -1].iloc[0]
        result.dice_before, result.dice_after = float(overall["before"]), float(overall["after"])
    result.guard_lines = [line for line in near.format_evaluation(evaluation).splitlines()
                          if line.startswith(("kept the input", "put back", "guard:"))]
    warning = drastic_change_warning(result.dice_vs_input, evaluation.get("guard"),
                                     model_dir=Path(model_dir) if model_dir is not None else out / "model",
                                     report=result.report)
    if warning is not None:  # returned, not logged: the caller shows it (the CLI on stderr) once
        result.warnings.append(warning)
    with atomic_write(out / "run.json") as tmp_json:
        Path(tmp_json).write_text(json.dumps({
            "cases": plan.num_cases, "cube_edge": plan.cube_edge, "refine_mode": mode, "epochs": plan.epochs,
            "preset": plan.preset, "threads": plan.threads, "device": plan.device,
            "seconds_per_step": plan.seconds_per_step, "seconds_per_case": plan.seconds_per_case,
            "seconds_report": plan.seconds_fixed, "estimated_seconds": plan.estimated_seconds, "seconds": result.seconds,
            "seconds_since_start": {k: round(v, 2) for k, v in phases.items()},
            "dice_refined_vs_input": result.dice_vs_input, "dice_input_vs_ref": result.dice_before,
            "dice_refined_vs_ref": result.dice_after, "warnings": result.warnings,
        }, indent=1) + "\n")
    return result

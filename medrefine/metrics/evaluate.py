"""Evaluate prediction files against reference files: pair them by case, load, check grids, score.

Cases are matched by case id = file name without its image suffix (``case_000.nii.gz`` ->
``case_000``). Every pair must share one voxel grid (shape and affine); otherwise the evaluation
stops with an error naming both files, unless ``resample=True`` puts the prediction onto the
reference grid (nearest neighbour, in world coordinates) first. Distances are in mm from the
reference grid's spacing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from medrefine.metrics.binary import METRICS, check_metrics
from medrefine.metrics.case import COLUMNS, compute_case_metrics

if TYPE_CHECKING:
    import pandas as pd

from medrefine.data.datalist import IMAGE_SUFFIXES as LABEL_SUFFIXES
from medrefine.data.datalist import case_id

__all__ = [
    "LABEL_SUFFIXES",
    "case_id",
    "list_cases",
    "match_folders",
    "match_references",
    "unmatched_references",
    "evaluate_pair",
    "evaluate_pairs",
    "build_sources",
    "write_sources",
]

logger = logging.getLogger(__name__)

Pair = tuple[str, Path, Path]


def list_cases(path: str | PathLike, *, role: str = "folder", folders: bool = False) -> dict[str, Path]:
    """Case id -> absolute path of the volumes in a folder (or of one file).

    Args:
        path: a folder of volumes, or a single volume file.
        role: what the folder is, for error messages (``"prediction folder"``, ``"reference folder"``).
        folders: also take DICOM series sub-folders as cases (images).

    Raises:
        InputError: the path does not exist, holds no volume, or two files share a case id.
    """
    from medrefine.data.datalist import list_cases as list_folder

    path = Path(path).expanduser().resolve()
    if path.is_file():
        return {case_id(path): path}
    return list_folder(path, what=role.removesuffix(" folder"), series=folders)


def match_folders(pred_dir: str | PathLike, ref_dir: str | PathLike, *, subset: bool = False) -> list[Pair]:
    """Pair prediction and reference volumes by case id.

    Args:
        pred_dir: folder of predicted label maps (or one file).
        ref_dir: folder of reference label maps (or one file). Two single files always pair, under
            the prediction's case id.
        subset: pair only the references that have a prediction (see :func:`match_references`).

    Returns:
        ``[(case, pred_path, ref_path), ...]`` sorted by case id, absolute paths.

    Raises:
        InputError: a folder is missing or empty, or some cases have no partner; the message lists
            them (up to 20 per side).

    Example:
        >>> match_folders("cohort/labels_noisy", "cohort/labels")[0]  # doctest: +SKIP
        ('case_000', PosixPath('/.../labels_noisy/case_000.nii.gz'), PosixPath('/.../labels/case_000.nii.gz'))
    """
    preds = list_cases(pred_dir, role="prediction folder")
    refs = list_cases(ref_dir, role="reference folder")
    pred_is_file, ref_is_file = Path(pred_dir).is_file(), Path(ref_dir).is_file()
    if pred_is_file and ref_is_file:
        (pred_case, pred_path), (_, ref_path) = next(iter(preds.items())), next(iter(refs.items()))
        return [(pred_case, pred_path, ref_path)]
    if pred_is_file:  # one prediction: find its reference in the folder
        refs = {c: p for c, p in refs.items() if c in preds}
    elif ref_is_file:
        preds = {c: p for c, p in preds.items() if c in refs}
    return match_references(preds, refs, pred_name=str(Path(pred_dir).resolve()), ref_name=str(Path(ref_dir).resolve()),
                            subset=subset)


def unmatched_references(preds: Mapping[str, object], refs: Mapping[str, object]) -> list[str]:
    """The reference cases without a prediction, sorted: what ``subset=True`` leaves out."""
    return sorted(set(refs) - set(preds))


def match_references(
    preds: Mapping[str, str | PathLike], refs: Mapping[str, str | PathLike], *, pred_name: str = "the predictions",
    ref_name: str = "the references", subset: bool = False,
) -> list[Pair]:
    """Pair two ``{case: path}`` tables (e.g. a prediction folder and a cohort's labels) by case.

    Args:
        preds, refs: case id -> file.
        pred_name, ref_name: what the tables are, for the error message.
        subset: score a subset: references without a prediction are left out (the caller reports
            them, :func:`unmatched_references`) instead of refused. A prediction without a
            reference is refused either way.

    Raises:
        InputError: some cases have no partner; the message names the predictions' files and the
            references' case ids (up to 20 per side).
    """
    from medrefine.errors import InputError

    only_pred = sorted(set(preds) - set(refs))
    only_ref = [] if subset else unmatched_references(preds, refs)
    if only_pred or only_ref:

        def _list(names: list[str]) -> str:
            return ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")

        lines = [f"prediction and reference cases do not match ({len(set(preds) & set(refs))} matched):"]
        if only_pred:
            files = [str(preds[c]) for c in only_pred]
            lines.append(f"  expected a reference in {ref_name} for every prediction, found none for: {_list(files)}")
        if only_ref:
            lines.append(f"  no prediction in {pred_name} for: {_list(only_ref)}")
            if set(preds) & set(refs):
                lines.append(f"  to score only the {len(set(preds) & set(refs))} case(s) that have a prediction, "
                             "pass --subset (match_references(..., subset=True))")
        lines.append("Cases are matched by file name without the suffix (case_000.nii.gz -> case_000).")
        raise InputError("\n".join(lines))
    return [(c, Path(preds[c]), Path(refs[c])) for c in sorted(preds)]


def evaluate_pair(
    case: str,
    pred_path: str | PathLike,
    ref_path: str | PathLike,
    *,
    classes: Mapping[int, str] | int | None = None,
    resample: bool = False,
    metrics: Sequence[str] = METRICS,
    nsd_tolerance_mm: float = 1.0,
    missing_distance_mm: float | None = None,
) -> pd.DataFrame:
    """Load one prediction/reference pair and compute its metrics table.

    Args:
        case: case id for the ``case`` column.
        pred_path: predicted label map (any format :func:`medrefine.io.load_label` reads).
        ref_path: reference label map; its grid and spacing are the ones measured on.
        classes, metrics, nsd_tolerance_mm, missing_distance_mm: see
            :func:`medrefine.metrics.compute_case_metrics`.
        resample: put the prediction onto the reference grid (nearest neighbour, world
            coordinates) when the grids differ, instead of raising.

    Raises:
        GeometryError: the grids differ and ``resample`` is False; names both files.
        InputError: a file is missing or unreadable, not 3D, or holds non-label values.
    """
    from medrefine.errors import GeometryError
    from medrefine.io import check_same_grid, load_label, resample_to

    from medrefine.io.checks import check_ndim

    ref = load_label(ref_path)
    pred = load_label(pred_path)
    check_ndim(ref.array, ref_path, what="label map")
    check_ndim(pred.array, pred_path, what="label map")
    try:
        check_same_grid(pred, ref, names=(str(pred_path), str(ref_path)))
    except GeometryError as err:
        if not resample:
            raise GeometryError(
                f"{err}\nTo evaluate anyway, resample the prediction onto the reference grid "
                "(`resample=True`; on the command line `--resample`)."
            ) from None
        logger.info("case %s: resampling %s onto the grid of %s", case, pred_path, ref_path)
        pred = resample_to(pred, ref, order=0)
    return compute_case_metrics(
        pred.array,
        ref.array,
        spacing=ref.spacing[: ref.array.ndim],
        classes=classes,
        metrics=metrics,
        nsd_tolerance_mm=nsd_tolerance_mm,
        missing_distance_mm=missing_distance_mm,
        case=case,
    )


def _evaluate_job(job: tuple[str, Path, Path, dict]) -> pd.DataFrame:
    case, pred_path, ref_path, kwargs = job
    return evaluate_pair(case, pred_path, ref_path, **kwargs)


def _fill_absent(df: pd.DataFrame, cases: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Add ``absent_both`` NaN rows for every (case, class) pair a case did not report."""
    import pandas as pd

    classes = df[["class_id", "class_name"]].drop_duplicates().sort_values("class_id")
    have = set(zip(df["case"], df["class_id"]))
    rows = [
        (case, cid, name, metric, float("nan"), "absent_both")
        for case in cases
        for cid, name in classes.itertuples(index=False)
        if (case, cid) not in have
        for metric in metrics
    ]
    if not rows:
        return df
    return pd.concat([df, pd.DataFrame(rows, columns=list(COLUMNS))], ignore_index=True)


def evaluate_pairs(
    pairs: Iterable[tuple[str, str | PathLike, str | PathLike]],
    *,
    classes: Mapping[int, str] | int | None = None,
    resample: bool = False,
    metrics: Sequence[str] = METRICS,
    nsd_tolerance_mm: float = 1.0,
    missing_distance_mm: float | None = None,
    workers: int = 1,
    progress: bool = False,
) -> pd.DataFrame:
    """Metrics of many cases as one tidy table.

    Args:
        pairs: ``[(case, pred_path, ref_path), ...]``, e.g. from :func:`match_folders`.
        classes: class table ``{id: name}``, a class count, or ``None`` for every value found in
            any case (each case then gets a row for each of them, NaN where absent from both).
        resample: resample predictions whose grid differs from the reference's (else error).
        metrics: names among ``("dice", "iou", "hd95", "assd", "nsd")``.
        nsd_tolerance_mm: tolerance of the normalised surface Dice, mm.
        missing_distance_mm: HD95/ASSD of a structure present on one side only (``None``: the
            volume diagonal in mm).
        workers: processes to evaluate cases in parallel (1 = in this process).
        progress: show a tqdm progress bar over cases.

    Returns:
        Tidy DataFrame (``case, class_id, class_name, metric, value, status``) ordered as
        ``pairs``, then by class id and metric.

    Raises:
        ValueError: duplicate case ids, ``workers < 1``, unknown metric.
        GeometryError: a pair's grids differ and ``resample`` is False (names both files).
        InputError: unreadable files.

    Example:
        >>> df = evaluate_pairs(match_folders("pred", "ref"), classes=load_classes("classes.json"))  # doctest: +SKIP
    """
    import pandas as pd
    from tqdm.auto import tqdm

    pairs = [(str(c), Path(p), Path(r)) for c, p, r in pairs]
    names = check_metrics(metrics)
    cases = [c for c, _, _ in pairs]
    duplicates = sorted({c for c in cases if cases.count(c) > 1})
    if duplicates:
        raise ValueError(f"`pairs` must have unique case ids, got duplicates {duplicates}")
    if int(workers) < 1:
        raise ValueError(f"`workers` must be >= 1, got {workers}")
    if not pairs:
        return pd.DataFrame(columns=list(COLUMNS))
    kwargs = dict(
        classes=classes,
        resample=resample,
        metrics=names,
        nsd_tolerance_mm=nsd_tolerance_mm,
        missing_distance_mm=missing_distance_mm,
    )
    jobs = [(c, p, r, kwargs) for c, p, r in pairs]
    results: dict[str, pd.DataFrame] = {}
    with tqdm(total=len(jobs), desc="evaluate", unit="case", disable=not progress) as bar:
        if int(workers) == 1 or len(jobs) == 1:
            for job in jobs:
                bar.set_postfix_str(job[0])
                results[job[0]] = _evaluate_job(job)
                bar.update()
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(int(workers), len(jobs)), mp_context=context) as pool:
                futures = {pool.submit(_evaluate_job, job): job[0] for job in jobs}
                try:
                    for future in as_completed(futures):
                        results[futures[future]] = future.result()
                        bar.update()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    df = pd.concat([results[c] for c in cases], ignore_index=True)
    if classes is None:
        df = _fill_absent(df, cases, names)
    order = {c: i for i, c in enumerate(cases)}
    metric_order = {m: i for i, m in enumerate(METRICS)}
    df = df.sort_values(
        ["case", "class_id", "metric"],
        key=lambda s: s.map(order) if s.name == "case" else (s.map(metric_order) if s.name == "metric" else s),
        kind="stable",
    )
    return df.reset_index(drop=True)


def build_sources(
    pairs: Iterable[tuple[str, str | PathLike, str | PathLike]],
    classes: Mapping[int, str],
    *,
    images: Mapping[str, str | PathLike] | None = None,
) -> dict:
    """The ``<metrics stem>.sources.json`` content the report reads to find volumes for overlays.

    Args:
        pairs: ``[(case, pred_path, ref_path), ...]``.
        classes: the scored classes ``{id: name}`` (background left out).
        images: case id -> image path, for the cases that have one.

    Returns:
        ``{"classes": {"1": name, ...}, "cases": {case: {"pred": abs, "ref": abs, "image": abs or
        None}}}``.
    """
    images = dict(images or {})
    return {
        "classes": {str(int(k)): str(v) for k, v in sorted(classes.items()) if int(k) != 0},
        "cases": {
            str(c): {
                "pred": str(Path(p).resolve()),
                "ref": str(Path(r).resolve()),
                "image": str(Path(images[c]).resolve()) if c in images else None,
            }
            for c, p, r in pairs
        },
    }


def write_sources(sources: Mapping, path: str | PathLike) -> Path:
    """Write a sources dict (:func:`build_sources`) as JSON, atomically."""
    from medrefine.io import atomic_write

    path = Path(path)
    with atomic_write(path) as tmp:
        Path(tmp).write_text(json.dumps(sources, indent=1) + "\n")
    return path

"""The full report of a metrics run: ``report.md`` + a self-contained ``report.html`` in one folder.

The folder is built in a temporary sibling folder and renamed into place at the end, so a failed
run never leaves a half-written report behind (and an earlier report stays as it was).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medrefine.errors import InputError, did_you_mean
from medrefine.io.volume import Volume
from medrefine.reports.changes import DICE_TOLERANCE, worse_table, worst_case
from medrefine.reports.document import Document
from medrefine.reports.sources import Sources, load_sources, sources_path_for
from medrefine.reports.tables import (
    compare_table,
    drop_absent_classes,
    format_table,
    load_metrics,
    ordered_metrics,
    per_case_table,
    per_class_table,
    read_compare,
    select_cases,
)

__all__ = ["write_report", "DEFAULT_OVERLAY_CASES"]

logger = logging.getLogger(__name__)

DEFAULT_OVERLAY_CASES = 3
_MARKER = "report.html"
# metrics file stems that say nothing about the run: the run is then named after its folder
_GENERIC_STEMS = ("metrics", "metric", "results", "scores", "evaluation")
_WORSE_ROWS_SHOWN = 50


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "case"


def _write_text(path: Path, text: str) -> Path:
    from medrefine.io import atomic_write

    with atomic_write(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path


def _write_csv(table: pd.DataFrame, path: Path) -> Path:
    from medrefine.io import atomic_write

    with atomic_write(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return path


def run_identity(metrics_path: Path | None, name: str | None) -> tuple[str, str]:
    """``(run id, run name)`` of a metrics table: what the report calls the run and its labels.

    The run id names the run in the title: the CSV's stem, or its folder's name when the stem is
    generic (``metrics.csv``, ``metrics_refined.csv``). The run name labels this run's
    column, overlay panel and 3D layer: ``name``, else the stem without a ``metrics_`` prefix,
    else the run id. A DataFrame is ``name`` or ``"prediction"``.

    Example:
        >>> run_identity(Path("runs/2024-05-01_near/metrics_refined.csv"), None)
        ('2024-05-01_near', 'refined')
    """
    if metrics_path is None:
        return name or "prediction", name or "prediction"
    stem = metrics_path.stem
    lowered = stem.lower()
    prefix = next((g for g in _GENERIC_STEMS if lowered == g or lowered.startswith((g + "_", g + "-"))), None)
    folder = metrics_path.resolve().parent.name or stem
    run_id = folder if prefix is not None else stem
    own = stem[len(prefix) + 1:] if prefix is not None and len(stem) > len(prefix) else ""
    return run_id, name or own or run_id


def _load_case_volumes(src: Sources, case: str, extra: Mapping[str, Sources], run_name: str, *, reference_name: str = "reference",
                       with_image: bool = True) -> tuple[Volume | None, list[Volume], list[str]]:
    """Load one case's image, reference, compared predictions and prediction, all on the reference grid."""
    from medrefine.errors import GeometryError
    from medrefine.io import check_same_grid, load_image, load_label, resample_to

    entry = src.cases[case]
    ref_path, pred_path = entry.get("ref"), entry.get("pred")
    if ref_path is None and pred_path is None:
        raise InputError(f"case {case!r}: the sources give neither a pred nor a ref file")
    grid = load_label(ref_path if ref_path is not None else pred_path)

    def on_grid(vol, order: int):
        try:
            check_same_grid(grid, vol)
            return vol
        except GeometryError:
            logger.info("%s: resampling %s onto the reference grid for the overlay", case, vol.path)
            return resample_to(vol, grid, order=order)

    volumes, titles = [], []
    if ref_path is not None:
        volumes.append(grid)
        titles.append(reference_name)
    for other_name, other in extra.items():
        other_pred = other.cases.get(case, {}).get("pred")
        if other_pred is not None:
            volumes.append(on_grid(load_label(other_pred), 0))
            titles.append(other_name)
    if pred_path is not None:
        volumes.append(on_grid(load_label(pred_path), 0) if ref_path is not None else grid)
        titles.append(run_name)
    image = on_grid(load_image(entry["image"]), 1) if with_image and entry.get("image") is not None else None
    return image, volumes, titles


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InputError(f"{out_dir}: the report folder is an existing file; choose another --out")
        if any(out_dir.iterdir()) and not (out_dir / _MARKER).is_file():
            raise InputError(f"{out_dir}: folder exists and is not a medrefine report (no {_MARKER}); "
                             "refusing to replace it, choose another --out")
    out_dir.parent.mkdir(parents=True, exist_ok=True)


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename ``tmp`` onto ``out_dir``; an earlier report is moved aside first and removed after."""
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        old.rmdir()
        out_dir.rename(old)
        try:
            tmp.rename(out_dir)
        except OSError:
            old.rename(out_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)


def write_report(metrics: pd.DataFrame | str | Path, out_dir: str | Path, *, title: str | None = None,
                 sources: Mapping | str | Path | None = None, overlay_cases: int | Sequence[str] | None = None,
                 mesh_case: str | None = None, compare: Mapping[str, pd.DataFrame | str | Path] | pd.DataFrame | str | Path | None = None,
                 name: str | None = None, kept_input: pd.DataFrame | Sequence[Mapping] | None = None,
                 reference_name: str = "reference") -> Path:
    """Write ``report.md`` and a self-contained ``report.html`` for a metrics table.

    The report holds: a summary that opens with what got worse (structures that vanished from
    the result or whose Dice dropped by more than 0.01 against a compared run, per case, or an
    explicit "nothing got worse"); the structures where the input label was kept (``kept_input``);
    an interactive 3D view of one case in scanner coordinates (reference, compared runs and this
    run as toggleable surfaces);
    the per-structure table (mean ± std and median of every metric,
    Dice success rates at 0.5/0.7/0.9, sorted by mean Dice); a ranking chart of mean Dice per
    structure; histograms of every metric; box plots of Dice and HD95 per structure; for each
    run in ``compare`` a before/after table and a paired chart; the per-case table; overlay
    PNGs (image + label contours on three orthogonal slices, reference | compared runs |
    prediction side by side) of chosen cases. Tables show at most 9 columns; the others open
    below them, so the page never scrolls sideways.

    Files in ``out_dir``: ``report.md``, ``report.html`` (self-contained: PNGs and plotly.js
    inline, opens offline), ``per_class.csv``, ``per_case.csv``, ``worse.csv`` (when something
    got worse), ``ranking.png``, ``distributions.png``, ``boxplots.png``, ``compare_<name>.png``
    and ``compare_<name>.csv``, ``overlay_<case>.png``.

    Args:
        metrics: tidy metrics table (DataFrame or CSV path) with columns case, class_id,
            class_name, metric, value.
        out_dir: report folder. Built in a temporary sibling folder and renamed into place; an
            existing folder is replaced only when it is empty or an earlier report.
        title: report title; default ``"<run id> — medrefine report"`` (see :func:`run_identity`).
        sources: mapping or JSON path giving per case the ``pred``, ``ref`` and ``image`` files
            (see :mod:`medrefine.reports.sources`). Default: ``<csv stem>.sources.json`` next to
            a metrics CSV when it exists. Needed for overlays and the 3D view.
        overlay_cases: number of cases to draw (best, median, worst by mean Dice for 3; evenly
            spaced ranks otherwise) or a list of case names; default 3 when sources are known,
            0 for none.
        mesh_case: case shown in 3D; default the case whose mean Dice fell most against the
            first compared run, else the case of lowest mean Dice (among cases with volumes).
        compare: runs to compare against, as a mapping ``name -> DataFrame or CSV path`` (e.g.
            ``{"noisy": "noisy_metrics.csv"}``), or a single DataFrame / CSV path (named after the
            file stem, or ``"other"``). ``metrics`` is the "after" and each compared run a
            "before"; a compared CSV's own ``<stem>.sources.json`` adds its prediction to the
            overlays (reference | noisy | refined).
        name: name of ``metrics`` in comparisons, overlays and the 3D view (default: see
            :func:`run_identity`; never the bare word "metrics").
        kept_input: the structures where a refinement guard kept the input label
            (:func:`medrefine.transforms.guard_refinement`), as rows with ``case``,
            ``class_name`` and ``reason``; listed right after the summary. An empty table says
            the refinement was kept everywhere; None (default) leaves the section out.
        reference_name: what the sources' ``ref`` volumes are, in the overlays and the 3D view
            (default ``"reference"``; ``"input"`` when a refinement is scored against its input).

    Returns:
        Path of ``report.html``.

    Raises:
        InputError: the metrics or a compared table is missing, unreadable or lacks columns;
            the sources are malformed; a named case is unknown; ``mesh_case`` without sources;
            ``out_dir`` exists and is not a report folder.
        TypeError: an argument of the wrong type.

    Example:
        >>> write_report("refined.csv", "report", title="Refinement", compare={"noisy": "noisy.csv"},
        ...              mesh_case="case_000", name="refined")  # doctest: +SKIP
    """
    metrics_path = Path(metrics) if isinstance(metrics, (str, Path)) else None
    df, absent = drop_absent_classes(load_metrics(metrics))
    if df.empty:
        raise InputError(f"{metrics_path or 'metrics'}: no structure has a finite Dice in any case; nothing to report")
    run_id, run_name = run_identity(metrics_path, name)
    title = title or f"{run_id} — medrefine report"
    runs = read_compare(compare)
    kept = _kept_input_rows(kept_input)
    for other_name in runs:
        if other_name == run_name:
            raise InputError(f"compared run name {other_name!r} equals the report's own name; give them different names (e.g. --compare-name)")
    if sources is None and metrics_path is not None and sources_path_for(metrics_path).is_file():
        sources = sources_path_for(metrics_path)
    src = load_sources(sources) if sources is not None else None
    run_sources: dict[str, Sources] = {}
    for other_name, (_, other_path) in runs.items():
        if other_path is not None and sources_path_for(other_path).is_file():
            run_sources[other_name] = load_sources(sources_path_for(other_path))
    if overlay_cases is None:
        overlay_cases = DEFAULT_OVERLAY_CASES if src is not None else 0
    wants_overlays = (overlay_cases if isinstance(overlay_cases, int) else len(overlay_cases)) > 0
    if (wants_overlays or mesh_case is not None) and src is None:
        raise InputError("overlays and the 3D mesh need the volumes: pass `sources` (--sources metrics.sources.json)")
    if mesh_case is not None and str(mesh_case) not in src.cases:  # type: ignore[union-attr]
        raise InputError(f"mesh case {mesh_case!r} is not in the sources{' ' + str(src.path) if src.path else ''}."  # type: ignore[union-attr]
                         f"{did_you_mean(str(mesh_case), src.cases)}")  # type: ignore[union-attr]
    chosen = select_cases(df, overlay_cases, available=list(src.cases) if src is not None else None) if wants_overlays else []
    mesh_reason = "chosen with --mesh-case" if mesh_case is not None else None
    if mesh_case is None and src is not None:
        first_before = next(iter(runs.values()))[0] if runs else None
        mesh_case = worst_case(df, first_before, available=list(src.cases))
    if wants_overlays and not chosen:
        logger.warning("no case of the metrics table is in the sources %s; no overlays", src.path if src else "")  # type: ignore[union-attr]

    out_dir = Path(out_dir).expanduser().resolve()
    _prepare_out_dir(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a report folder is an ordinary folder
    try:
        _build(df, tmp, absent=absent, title=title, run_id=run_id, run_name=run_name, metrics_path=metrics_path, runs=runs,
               src=src, run_sources=run_sources, chosen=chosen, mesh_case=mesh_case, mesh_reason=mesh_reason, kept=kept,
               reference_name=reference_name)
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("report written to %s", out_dir / "report.html")
    return out_dir / "report.html"


def _kept_input_rows(kept_input: pd.DataFrame | Sequence[Mapping] | None) -> list[list[str]] | None:
    """``[[case, structure, reason], ...]`` of the ``kept_input`` argument of :func:`write_report`."""
    if kept_input is None:
        return None
    records = kept_input.to_dict("records") if isinstance(kept_input, pd.DataFrame) else list(kept_input)
    rows = []
    for record in records:
        missing = [key for key in ("case", "class_name", "reason") if key not in record]
        if missing:
            raise InputError(f"`kept_input` rows need case, class_name and reason; a row lacks {', '.join(missing)}: {dict(record)!r}")
        rows.append([str(record["case"]), str(record["class_name"]), str(record["reason"])])
    return rows


def _build(df: pd.DataFrame, folder: Path, *, absent: list[str], title: str, run_id: str, run_name: str,
           metrics_path: Path | None, runs: dict[str, tuple[pd.DataFrame, Path | None]], src: Sources | None,
           run_sources: dict[str, Sources], chosen: list[str], mesh_case: str | None, mesh_reason: str | None = None,
           kept: list[list[str]] | None = None, reference_name: str = "reference") -> None:
    from medrefine import __version__
    from medrefine.reports.overlay import overlay_png
    from medrefine.reports.plots import box_plots, compare_plot, distribution_plots, ranking_chart

    classes = dict(zip(df["class_id"], df["class_name"]))
    if src is not None:
        classes = {**{k: v for k, v in src.classes.items() if k}, **classes}
    per_class = per_class_table(df)
    per_case = per_case_table(df)
    names = ordered_metrics(df)
    doc = Document(title)

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    dice = df[df["metric"] == "dice"]["value"]
    doc.paragraph(f"Run {run_id}: generated by medrefine {__version__} on {stamp} from "
                  f"{metrics_path if metrics_path else 'a metrics table'} ({run_name}).")
    doc.heading("Summary")
    worse = worse_table(df, {n: other for n, (other, _) in runs.items()})
    warning = _worse_box(doc, worse, df, runs, run_name=run_name, reference_name=reference_name)
    if len(worse):
        _write_csv(worse, folder / "worse.csv")
    best = per_class.dropna(subset=["dice_mean"])
    summary = [
        f"{df['case'].nunique()} cases, {df['class_id'].nunique()} structures, metrics: {', '.join(names)}.",
        f"Mean Dice over all (case, structure) pairs: {dice.mean():.3f} (median {dice.median():.3f}); "
        f"mean of the per-structure means: {per_class['dice_mean'].mean():.3f}.",
    ]
    if len(best):
        summary.append("Best structures: " + ", ".join(f"{r.class_name} ({r.dice_mean:.3f})" for r in best.head(3).itertuples()) + ".")
        summary.append("Worst structures: " + ", ".join(f"{r.class_name} ({r.dice_mean:.3f})" for r in best.tail(3)[::-1].itertuples()) + ".")
    if len(per_case):
        top, low = per_case.iloc[0], per_case.iloc[-1]
        summary.append(f"Best case: {top['case']} (mean Dice {top['dice_mean']:.3f}); worst case: {low['case']} (mean Dice {low['dice_mean']:.3f}).")
    for other_name, (other, _) in runs.items():
        delta = df[df["metric"] == "dice"]["value"].mean() - other[other["metric"] == "dice"]["value"].mean()
        summary.append(f"Mean Dice {run_name} vs {other_name}: {delta:+.3f}" + (f" — but {warning} (see the box above)." if warning else "."))
    doc.bullets(summary)
    if absent:
        doc.paragraph(f"{len(absent)} structure(s) of the class table are in neither the prediction nor the reference of any case "
                      f"and are not shown: {', '.join(absent[:20])}{', ...' if len(absent) > 20 else ''}.", note=True)
    nonfinite = int(per_class["n_nonfinite"].sum())
    if nonfinite:
        doc.paragraph(f"{nonfinite} metric values of the structures shown are missing (NaN: the structure is in neither the "
                      "prediction nor the reference of that case, nothing to measure) or infinite; they are left out of "
                      "means, medians and success rates.", note=True)

    if kept is not None:
        doc.heading("Structures where the input was kept")
        if kept:
            doc.paragraph(f"The refinement guard kept the input label for {len(kept)} structure(s): the refinement erased, "
                          "shrank, grew, split or was unsure of them (or created them), so their input voxels were written "
                          "instead. Every other structure is the refinement's.", note=True)
            doc.table(["case", "structure", "reason"], kept, caption="One row per case and structure; the measured numbers "
                                                                      "are in changes.csv.")
        else:
            doc.paragraph("The refinement guard kept the refinement for every structure of every case.")

    if mesh_case is not None:
        _mesh_section(doc, src, mesh_case, per_case, runs, run_sources, run_id=run_id, run_name=run_name,  # type: ignore[arg-type]
                      reference_name=reference_name, classes=classes,
                      chosen_because=mesh_reason or _why_this_case(df, runs, worse, mesh_case, reference_name))
    elif src is None:
        doc.paragraph("No 3D view: the report was built from a metrics table without its sources (pass --sources "
                      "metrics.sources.json, written by medrefine evaluate).", note=True)

    doc.heading("Per-structure metrics")
    header, rows = format_table(per_class, kind="per_class")
    doc.table(header, rows, caption="Mean ± std and median over cases; success rate = share of cases with Dice at or above "
                                    "the threshold. Sorted by mean Dice. Also in per_class.csv.", key=_key_columns(header))
    _write_csv(per_class, folder / "per_class.csv")

    doc.heading("Structure ranking")
    doc.image(ranking_chart(df, folder / "ranking.png"), "Mean Dice per structure, error bars ±1 std over cases; dotted lines at 0.5, 0.7, 0.9.")

    doc.heading("Distributions")
    doc.image(distribution_plots(df, folder / "distributions.png"), "Histograms of each metric over all (case, structure) pairs and of the mean Dice per case.")
    doc.image(box_plots(df, folder / "boxplots.png"), "Dice and HD95 per structure over cases (box: quartiles, line: median).")

    for other_name, (other, _) in runs.items():
        doc.heading(f"Comparison: {other_name} → {run_name}")
        table = compare_table(df, other, name=run_name, other_name=other_name)
        header, rows = format_table(table, kind="compare")
        doc.table(header, rows, key=_key_columns(header), caption=f"Per-structure means of {other_name} (before) and {run_name} (after), difference after − before; "
                                        f"improved cases = paired cases whose Dice rose. Sorted by the Dice difference. Also in compare_{_safe(other_name)}.csv.")
        _write_csv(table, folder / f"compare_{_safe(other_name)}.csv")
        doc.image(compare_plot(df, other, folder / f"compare_{_safe(other_name)}.png", name=run_name, other_name=other_name),
                  f"Left: mean Dice per structure, {other_name} (grey) → {run_name}. Right: Dice per case and structure; above the diagonal = improved.")

    doc.heading("Per-case metrics")
    header, rows = format_table(per_case, kind="per_case")
    doc.table(header, rows, caption="Mean over structures per case, sorted by mean Dice. Also in per_case.csv.")
    _write_csv(per_case, folder / "per_case.csv")

    if chosen:
        doc.heading("Overlays")
        doc.paragraph("Image in grey (percentile window) with label contours on three orthogonal slices through the centre of the "
                      "reference's foreground; columns compare the reference with each labelling.")
        ranked = per_case["case"].tolist()
        dice_of = dict(zip(per_case["case"], per_case["dice_mean"]))
        for case in chosen:
            position = ranked.index(case)
            rank = ("best" if position == 0 else "worst" if position == len(ranked) - 1
                    else "median" if position == (len(ranked) - 1) // 2 else f"rank {position + 1}/{len(ranked)}")
            caption = f"{case}: mean Dice {dice_of.get(case, float('nan')):.3f} ({rank})"
            try:
                image, labels, titles = _load_case_volumes(src, case, run_sources, run_name)  # type: ignore[arg-type]
            except (InputError, OSError, ValueError) as err:
                logger.warning("overlay of %s skipped: %s", case, err)
                doc.paragraph(f"Overlay of {case} skipped: {err}", note=True)
                continue
            png = overlay_png(image, labels, folder / f"overlay_{_safe(case)}.png", titles=titles, classes=classes, title=caption)
            doc.image(png, caption)

    doc.heading("Inputs")
    inputs = [f"metrics: {metrics_path if metrics_path else 'DataFrame'} ({len(df)} rows)"]
    if src is not None:
        inputs.append(f"sources: {src.path if src.path else 'mapping'} ({len(src.cases)} cases)")
    for other_name, (other, other_path) in runs.items():
        inputs.append(f"compared run {other_name}: {other_path if other_path else 'DataFrame'} ({len(other)} rows)")
    doc.bullets(inputs)

    _write_text(folder / "report.md", doc.markdown())
    _write_text(folder / "report.html", doc.html(generator=f"medrefine {__version__}"))


def _key_columns(header: list[str]) -> list[int]:
    """Columns a wide per-structure table shows first: ids, Dice, HD95, success rates, improved cases."""
    key = [n for n, h in enumerate(header) if n < 3 and h in ("#", "structure", "n")]
    key += [n for n, h in enumerate(header) if n not in key and not h.startswith("hd95 median")
            and (h.lower().startswith(("dice", "hd95", "δ dice", "δ hd95")) or h.startswith("improved"))]
    return key


def _worse_box(doc: Document, worse: pd.DataFrame, df: pd.DataFrame, runs: Mapping, *, run_name: str, reference_name: str) -> str:
    """The first block of the summary: what got worse (red) or that nothing did (green); returns a short warning or ""."""
    vanished, dropped = int((worse["change"] == "vanished").sum()), int((worse["change"] == "dropped").sum())
    if worse.empty:
        against = " and ".join([f"the {reference_name}"] * ("status" in df.columns) + [f"{n}" for n in runs])
        if not against:
            doc.alert("What got worse: cannot tell", "There is no compared run and no status column, so drops and vanished "
                      "structures cannot be measured.", good=True, anchor="what-got-worse")
        else:
            doc.alert("Nothing got worse", f"No structure vanished from {run_name} and no Dice dropped by more than "
                      f"{DICE_TOLERANCE:g} against {against}, in any case.", good=True, anchor="what-got-worse")
        return ""
    parts = [f"{vanished} structure(s) vanished"] * bool(vanished) + [f"{dropped} dropped by more than {DICE_TOLERANCE:g} Dice"] * bool(dropped)
    warning = " and ".join(parts) + f" in {worse['case'].nunique()} case(s)"
    rows, marked = [], []
    for n, r in enumerate(worse.head(_WORSE_ROWS_SHOWN).itertuples()):
        before = f"{r.dice_before:.3f} ({r.compared_to})" if np.isfinite(r.dice_before) else f"present in {reference_name}"
        what = (f"VANISHED: in the {reference_name}, absent from {run_name}" if r.change == "vanished" else "Dice dropped")
        rows.append([str(r.case), f"{r.class_id} {r.class_name}", what, f"{before} → {r.dice_after:.3f}"])
        if r.change == "vanished":
            marked.append(n)
    more = f" The first {_WORSE_ROWS_SHOWN} are shown; all {len(worse)} are in worse.csv." if len(worse) > _WORSE_ROWS_SHOWN else " Also in worse.csv."
    doc.alert(f"What got worse: {warning}", "These count in every mean below; a positive mean change can hide them." + more,
              header=["case", "structure", "change", "Dice before → after"], rows=rows, marked=marked, anchor="what-got-worse")
    return warning


def _mesh_section(doc: Document, src: Sources, case: str, per_case: pd.DataFrame, runs: Mapping, run_sources: dict[str, Sources], *,
                  run_id: str, run_name: str, reference_name: str, classes: Mapping[int, str], chosen_because: str) -> None:
    """The 3D view of ``case``: reference, compared runs and this run as layers in scanner coordinates."""
    from medrefine.reports.mesh import mesh_figure

    doc.heading(f"3D surfaces: {case}")
    dice_of = dict(zip(per_case["case"], per_case["dice_mean"]))
    try:
        _, volumes, titles = _load_case_volumes(src, case, run_sources, run_name, reference_name=reference_name, with_image=False)
        layers = dict(zip(titles, volumes))
        hidden = titles[1:-1] if len(titles) >= 3 else []
        fig = mesh_figure(layers, classes=classes, hidden=hidden, title=f"{case} — {run_id}: {' vs '.join(titles[::-1])}")
    except (InputError, OSError, ValueError) as err:
        logger.warning("3D view of %s skipped: %s", case, err)
        doc.paragraph(f"3D view of {case} skipped: {err}", note=True)
        return
    fig.update_layout(height=640)
    figure = fig.to_html(full_html=False, include_plotlyjs=False, div_id="mesh3d", default_height="640px",
                         config={"responsive": True, "displaylogo": False})
    doc.paragraph(f"{case} (mean Dice {dice_of.get(case, float('nan')):.3f}; {chosen_because}). "
                  f"Scanner coordinates in mm (RAS+: x to the patient's right, y anterior, z superior). "
                  f"{titles[-1]} is opaque, {', '.join(titles[:-1]) or 'nothing else'} translucent; click a legend entry "
                  "to hide a surface, use the buttons to switch layers, drag to rotate.")
    doc.plotly(f'<div class="plot3d">{figure}</div>',
               f"[Interactive 3D surfaces of {case}: {', '.join(titles)}](report.html#mesh3d) (in report.html).")


def _why_this_case(df: pd.DataFrame, runs: Mapping, worse: pd.DataFrame, case: str, reference_name: str) -> str:
    """Why :func:`~medrefine.reports.changes.worst_case` chose ``case``, with its numbers."""
    gone = worse[(worse["case"] == case) & (worse["change"] == "vanished")]["class_name"].tolist()
    if gone:
        return f"chosen because {', '.join(gone)} vanished here (in the {reference_name}, absent from the result)"
    dice = df[(df["metric"] == "dice") & (df["case"] == case)]
    if runs:
        other_name, (other, _) = next(iter(runs.items()))
        paired = dice.merge(other[(other["metric"] == "dice") & (other["case"] == case)], on=["case", "class_id"]).dropna(subset=["value_x", "value_y"])
        change = float((paired["value_x"] - paired["value_y"]).mean())
        return f"chosen as the lowest mean Dice change against {other_name}: {change:+.3f}"
    return "chosen as the case of lowest mean Dice"

"""``medrefine evaluate``: per-case, per-class metrics of predicted labels against references."""

from __future__ import annotations

from pathlib import Path

import click

METRIC_NAMES = ("dice", "iou", "hd95", "assd", "nsd")


def _parse_metrics(value: str) -> tuple[str, ...]:
    from medrefine.errors import InputError, did_you_mean

    names = tuple(m.strip().lower() for m in value.split(",") if m.strip())
    for name in names:
        if name not in METRIC_NAMES:
            raise InputError(f"--metrics: unknown metric {name!r}; choose from {', '.join(METRIC_NAMES)}.{did_you_mean(name, METRIC_NAMES)}")
    if not names:
        raise InputError(f"--metrics: name at least one of {', '.join(METRIC_NAMES)}")
    return names


def _reference_cohort(ref: Path, key: str, task: str | None):
    """The cohort when --ref is a labelled dataset (datalist, images/ + labels/, ...), else None."""
    from medrefine.data.cohort import load_cohort
    from medrefine.errors import InputError

    try:
        found = load_cohort(ref, key=key, require=(), task=task, strict=False)
    except InputError:
        if ref.is_file() and ref.name.lower().endswith(".json"):
            raise
        return None  # a label file, or a folder of label files
    if found.layout in ("image_folder", "dicom_series"):
        return None
    return load_cohort(ref, key=key, require=("label",), task=task).materialize_labels()


def _resolve_classes(classes: str | None, task: str | None, ref: Path) -> dict[int, str] | None:
    """--classes, else the class table of the cohort --ref lies in (its folder or the parent)."""
    from medrefine.data.classes import load_classes
    from medrefine.data.cohort import load_cohort
    from medrefine.errors import InputError

    if classes is not None:
        return load_classes(classes, task=task)
    folder = ref if ref.is_dir() else ref.parent
    for candidate in (folder, folder.parent):
        try:
            table = load_cohort(candidate, key=None, require=(), task=task, strict=False).classes
        except InputError as err:
            if "class table" in str(err) or "classes.json" in str(err):
                click.echo(f"not using {candidate} for class names ({err}); pass --classes/--task to choose", err=True)
            continue
        if table is not None:
            click.echo(f"class names from {candidate}", err=True)
            return table
    if task is not None:
        raise InputError("--task chooses a table inside --classes; pass --classes too")
    return None


def _match_images(images: str, cases: list[str]) -> dict[str, Path]:
    from medrefine.metrics import list_cases

    found = list_cases(images, role="image folder", folders=True)
    out = {}
    for case in cases:
        path = found.get(case) or found.get(f"{case}_0000")  # nnU-Net names images <case>_0000
        if path is not None:
            out[case] = path
    missing = [c for c in cases if c not in out]
    if missing:
        click.echo(f"no image in {images} for {len(missing)} case(s): {', '.join(missing[:10])}", err=True)
    return out


def _abbreviate(names: list[str], head: int = 3, tail: int = 1) -> str:
    """``"a, b, c, ..., z"``: the first ``head`` and the last ``tail`` names when there are more."""
    if len(names) <= head + tail + 1:
        return ", ".join(names)
    return ", ".join([*names[:head], "...", *names[-tail:]])


def _summary_table(df) -> str:
    """Mean Dice per class (best first) with the success rates, as fixed-width text."""
    from medrefine.metrics import success_rates, summarize

    if "dice" not in set(df["metric"]):
        stats = summarize(df)
        lines = [f"{'class':<28} {'metric':<6} {'mean':>9} {'median':>9} {'n':>4}"]
        for row in stats.itertuples(index=False):
            lines.append(f"{row.class_id:>3} {str(row.class_name)[:24]:<24} {row.metric:<6} {row.mean:>9.4g} {row.median:>9.4g} {row.n:>4}")
        return "\n".join(lines)
    stats = summarize(df[df["metric"] == "dice"])
    rates = success_rates(df)
    table = stats.merge(rates, on=["class_id", "class_name"], suffixes=("", "_rates"))
    table = table.sort_values(["mean", "class_id"], ascending=[False, True], na_position="last")
    hidden = table[table["n"] == 0]
    table = table[table["n"] > 0]
    overall = success_rates(df, by=())
    head = f"{'class':<28} {'dice mean':>9} {'std':>7} {'median':>7} {'>=0.5':>6} {'>=0.7':>6} {'>=0.9':>6} {'n':>4} {'n_nan':>5}"
    lines = [head, "-" * len(head)]

    def fmt(v: float, width: int, spec: str = ".3f") -> str:
        return f"{'-':>{width}}" if v != v else f"{v:>{width}{spec}}"

    for r in table.to_dict("records"):
        lines.append(
            f"{r['class_id']:>3} {str(r['class_name'])[:24]:<24} {fmt(r['mean'], 9)} {fmt(r['std'], 7)} {fmt(r['median'], 7)} "
            f"{fmt(r['dice>=0.5'], 6, '.2f')} {fmt(r['dice>=0.7'], 6, '.2f')} {fmt(r['dice>=0.9'], 6, '.2f')} {r['n']:>4} {r['n_nan']:>5}"
        )
    all_dice = df.loc[df["metric"] == "dice", "value"].dropna()
    o = overall.iloc[0]
    lines.append("-" * len(head))
    lines.append(
        f"{'all':<28} {fmt(all_dice.mean() if len(all_dice) else float('nan'), 9)} {fmt(all_dice.std() if len(all_dice) > 1 else float('nan'), 7)} "
        f"{fmt(all_dice.median() if len(all_dice) else float('nan'), 7)} {fmt(o['dice>=0.5'], 6, '.2f')} {fmt(o['dice>=0.7'], 6, '.2f')} "
        f"{fmt(o['dice>=0.9'], 6, '.2f')} {int(o['n']):>4} {int(o['n_nan']):>5}"
    )
    if len(hidden):
        lines.append(f"({len(hidden)} class(es) in neither prediction nor reference of any case not shown; NaN in the CSV)")
    return "\n".join(lines)


@click.command()
@click.option("--pred", required=True, type=click.Path(exists=True),
              help="Folder of predicted label maps (NIfTI, NRRD, MHA, .npy), or one file.")
@click.option("--ref", required=True, type=click.Path(exists=True),
              help="Folder of reference label maps, or one file, matched to --pred by file name without suffix; "
                   "or a dataset (datalist JSON, images/ + labels/, ...) whose cases' labels are the references.")
@click.option("--key", default="training", show_default=True, help="Datalist list of a dataset --ref.")
@click.option("--classes", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Class table JSON ({\"1\": \"liver\"}, TotalSegmentator's, a datalist's \"labels\"). "
                   "Default: the class table of the dataset --ref is or lies in, else the values found.")
@click.option("--task", default=None, help="Table inside --classes holding several (TotalSegmentator: total, total_mr).")
@click.option("--images", type=click.Path(exists=True), default=None,
              help="Folder of the images (files or DICOM series folders, by case id), recorded for report overlays.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Metrics CSV to write (tidy: case, class_id, class_name, metric, value, status).")
@click.option("--subset", is_flag=True,
              help="Score only the reference cases that have a prediction (the others are named in one line); "
                   "without it, a reference case without a prediction is refused. A prediction without a reference "
                   "is refused either way.")
@click.option("--resample", is_flag=True,
              help="Resample predictions onto the reference grid (nearest neighbour) when the grids differ, instead of failing.")
@click.option("--metrics", "metric_list", default=",".join(METRIC_NAMES), show_default=True,
              help="Comma-separated metrics to compute.")
@click.option("--nsd-tolerance", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Tolerance of the normalised surface Dice, mm.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes evaluating cases in parallel.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar over cases (stderr).")
def evaluate(
    pred: str,
    ref: str,
    key: str,
    classes: str | None,
    task: str | None,
    images: str | None,
    out: str,
    subset: bool,
    resample: bool,
    metric_list: str,
    nsd_tolerance: float,
    workers: int,
    progress: bool,
) -> None:
    """Score predicted labels against references: Dice, IoU, HD95, ASSD, surface Dice (mm).

    Pairs files by case id, refuses pairs whose voxel grids differ (naming both files) unless
    --resample is given, writes the tidy metrics CSV plus OUT_STEM.sources.json (the files of each
    case, for `medrefine report`), and prints mean Dice per class with success rates.
    A class in neither prediction nor reference gets NaN values (left out of means); a class in
    only one of them gets Dice 0 and HD95/ASSD equal to the image diagonal in mm.

    \b
    Examples:
      medrefine evaluate --pred cohort/labels_noisy --ref cohort/labels --out metrics.csv
      medrefine evaluate --pred refined --ref cohort/labels --subset --out metrics.csv
      medrefine evaluate --pred seg.nii.gz --ref ct_seg.nii.gz --classes classes.json --task total --out m.csv
    """
    from medrefine.metrics import build_sources, evaluate_pairs, match_folders, write_metrics_csv, write_sources
    from medrefine.metrics.evaluate import list_cases, match_references, unmatched_references

    names = _parse_metrics(metric_list)
    cohort = _reference_cohort(Path(ref), key, task)
    if cohort is not None:
        table = _resolve_classes(classes, task, Path(ref)) if classes is not None else cohort.classes
        references = {str(c["case"]): c["label"] for c in cohort.cases}
        predictions = list_cases(pred, role="prediction folder")
        if Path(pred).is_file():  # one prediction: its case of the cohort
            references = {c: p for c, p in references.items() if c in predictions}
        pairs = match_references(predictions, references, subset=subset,
                                 pred_name=str(Path(pred).resolve()), ref_name=str(cohort.source))
        skipped = unmatched_references(predictions, references)
    else:
        table = _resolve_classes(classes, task, Path(ref))
        pairs = match_folders(pred, ref, subset=subset)
        both_folders = Path(pred).is_dir() and Path(ref).is_dir()
        skipped = unmatched_references(dict.fromkeys(c for c, _, _ in pairs), list_cases(ref)) if both_folders else []
    if skipped:
        click.echo(f"--subset: scoring {len(pairs)} of {len(pairs) + len(skipped)} reference case(s); "
                   f"skipped {len(skipped)} without a prediction: {_abbreviate(skipped)}", err=True)
    df = evaluate_pairs(
        pairs,
        classes=table,
        resample=resample,
        metrics=names,
        nsd_tolerance_mm=nsd_tolerance,
        workers=workers,
        progress=progress,
    )
    out_path = write_metrics_csv(df, out)
    scored = dict(df[["class_id", "class_name"]].drop_duplicates().itertuples(index=False))
    image_paths = _match_images(images, [c for c, _, _ in pairs]) if images else None
    if image_paths is None and cohort is not None:
        image_paths = {str(c["case"]): Path(c["image"]) for c in cohort.cases if "image" in c}
    sources_path = write_sources(build_sources(pairs, scored, images=image_paths), out_path.with_name(f"{out_path.stem}.sources.json"))
    click.echo(_summary_table(df))
    click.echo(f"{len(pairs)} case(s), {len(scored)} class(es): wrote {out_path} ({len(df)} rows) and {sources_path}")

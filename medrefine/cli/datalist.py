"""``medrefine datalist``: a datalist JSON from image + label folders, TotalSegmentator cases or DICOM series."""

from __future__ import annotations

import click


@click.command()
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("labels_dir", type=click.Path(exists=True, file_okay=False), required=False)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="Datalist JSON to write (paths in it are relative to its folder).")
@click.option("--ref", "ref_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of clean reference labels, paired by case name, stored as 'label_clean'.")
@click.option("--key", default="training", show_default=True, help="Datalist list the cases go into.")
@click.option("--merged-labels", "merged_dir", type=click.Path(file_okay=False), default=None,
              help="TotalSegmentator cases: folder for the merged multi-label maps (labels/<case>.nii.gz and "
                   "classes.json; default <out without .json>_labels beside the datalist).")
@click.option("--structures", multiple=True, metavar="NAME",
              help="TotalSegmentator cases: structures to keep (repeatable; default all masks of the first case).")
@click.option("--task", default=None, help="TotalSegmentator cases: the table of a classes.json holding several "
                                           "(e.g. 'total').")
def datalist(images_dir: str, labels_dir: str | None, out_path: str, ref_dir: str | None, key: str,
             merged_dir: str | None, structures: tuple[str, ...], task: str | None) -> None:
    """Write a datalist pairing IMAGES_DIR and LABELS_DIR by case name, or of a dataset folder.

    With LABELS_DIR: the case name is the file name without .nii.gz/.nii/.nrrd/.mha/...; images
    named the nnU-Net way (<case>_0000.nii.gz) pair with <case>; an image may be a DICOM series
    folder (case name = folder name). A file without a partner is refused (exit code 3). The class
    table of a classes.json or datalist.json beside the labels (or one folder up) is copied in.

    Without LABELS_DIR, IMAGES_DIR is TotalSegmentator case folders (<case>/ct.nii.gz +
    <case>/segmentations/<structure>.nii.gz: the masks are merged into one label map per case,
    written under --merged-labels, never into the cases) or a folder of images / DICOM series
    folders, or one DICOM series (images only, for inference).

    `medrefine validate`, `medrefine refine`, `medrefine plan` and the bundles read the result.

    \b
    Examples:
      medrefine datalist cohort/images cohort/labels_noisy --ref cohort/labels --out cohort_noisy.json
      medrefine datalist imagesTr labelsTr --out datalist.json
      medrefine datalist totalseg/ --out totalseg.json --structures liver --structures spleen
      medrefine datalist dicom_series/ labels/ --out ct.json
    """
    from pathlib import Path

    from medrefine.data.classes import find_classes
    from medrefine.data.datalist import datalist_from_dataset, datalist_from_folders, write_datalist
    from medrefine.errors import InputError

    if key in ("case", "labels", "name", "description", "numTraining"):
        raise InputError(f"--key {key!r}: expected a list name such as 'training', 'validation' or 'test'")
    hit = None
    if labels_dir is None:
        if ref_dir is not None:
            raise InputError("--ref pairs clean labels with a LABELS_DIR; give the label folder too")
        out = Path(out_path).expanduser().resolve()
        merged = Path(merged_dir).expanduser().resolve() if merged_dir else out.with_name(
            out.name[:-5] + "_labels" if out.name.lower().endswith(".json") else out.name + "_labels")
        source = Path(images_dir).resolve()
        if merged == source or source in merged.parents and merged.parent != source:
            raise InputError(f"{merged}: expected a folder for the merged labels outside the case folders of {source}; "
                             "choose another --merged-labels")
        table = datalist_from_dataset(images_dir, labels_dir=merged, structures=list(structures) or None, task=task)
        classes = f", {len(table.get('labels', {})) - 1} structures merged into {merged}" if "labels" in table else ""
    else:
        hit = find_classes(labels_dir, *([ref_dir] if ref_dir else []), images_dir)
        table = datalist_from_folders(images_dir, labels_dir, extra={"label_clean": ref_dir} if ref_dir else None,
                                      name=Path(labels_dir).resolve().name, labels=hit[0] if hit else None)
        classes = f", class names from {hit[1]}" if hit else ""
    if key != "training":
        table[key] = table.pop("training")
        table.pop("numTraining")
    path = write_datalist(table, out_path)
    click.echo(f"wrote {path}: {len(table[key])} case(s) under {key!r}{classes}")

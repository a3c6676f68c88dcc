"""``medrefine datalist``: pair image and label files by case name into a datalist JSON."""

from __future__ import annotations

import click


@click.command()
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("labels_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="Datalist JSON to write (paths in it are relative to its folder).")
@click.option("--ref", "ref_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of clean reference labels, paired by case name, stored as 'label_clean'.")
@click.option("--key", default="training", show_default=True, help="Datalist list the cases go into.")
def datalist(images_dir: str, labels_dir: str, out_path: str, ref_dir: str | None, key: str) -> None:
    """Write a datalist pairing IMAGES_DIR and LABELS_DIR by case name.

    The case name is the file name without .nii.gz/.nii/.nrrd/.mha/...; images named the nnU-Net
    way (<case>_0000.nii.gz) pair with <case>. A file without a partner is refused (exit code 3).
    The class table of a classes.json or datalist.json beside the labels (or one folder up) is
    copied in. `medrefine validate`, `medrefine refine` and the bundles read the result.

    \b
    Examples:
      medrefine datalist cohort/images cohort/labels_noisy --ref cohort/labels --out cohort_noisy.json
      medrefine datalist imagesTr labelsTr --out datalist.json
    """
    from pathlib import Path

    from medrefine.data.classes import find_classes
    from medrefine.data.datalist import datalist_from_folders, write_datalist
    from medrefine.errors import InputError

    if key in ("case", "labels", "name", "description", "numTraining"):
        raise InputError(f"--key {key!r}: expected a list name such as 'training', 'validation' or 'test'")
    hit = find_classes(labels_dir, *([ref_dir] if ref_dir else []), images_dir)
    table = datalist_from_folders(images_dir, labels_dir, extra={"label_clean": ref_dir} if ref_dir else None,
                                  name=Path(labels_dir).resolve().name, labels=hit[0] if hit else None)
    if key != "training":
        table[key] = table.pop("training")
        table.pop("numTraining")
    path = write_datalist(table, out_path)
    classes = f", class names from {hit[1]}" if hit else ""
    click.echo(f"wrote {path}: {len(table[key])} case(s) under {key!r}{classes}")

"""``medrefine prepare``: crop cases to their labels and resample them to a cube."""

from __future__ import annotations

import click


@click.command()
@click.option("--datalist", type=click.Path(exists=True), default=None,
              help="Datalist JSON listing the cases (entries with 'image' and 'label'), or a dataset folder "
                   "(datalist.json, images/ + labels/, TotalSegmentator cases, ...).")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of images (<case>.nii.gz, .nrrd, ...); use with --labels instead of --datalist.")
@click.option("--labels", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of labels paired with --images by case id (file name).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder (created; must not be an input folder).")
@click.option("--size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Cube edge in voxels (the output is SIZE^3).")
@click.option("--margin", "margin_mm", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Margin around the labels' bounding box, in millimetres.")
@click.option("--layout", type=click.Choice(["nifti", "multinear"]), default="nifti", show_default=True,
              help="nifti: cube NIfTIs + datalist; multinear: also appearance/*.npy, shape/*.npy, info.csv.")
@click.option("--key", default="training", show_default=True, help="Datalist list to prepare.")
@click.option("--label-interpolation", type=click.Choice(["linear", "nearest"]), default="linear", show_default=True,
              help="linear: one-hot partial-volume vote; nearest: nearest neighbour.")
@click.option("--window", type=float, nargs=2, default=(-1000.0, 1000.0), show_default=True,
              help="Intensity window scaled to [0, 1] for MultiNeAR's appearance arrays (CT HU).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
def prepare(datalist: str | None, images: str | None, labels: str | None, out_dir: str, size: int,
            margin_mm: float, layout: str, key: str, label_interpolation: str, window: tuple[float, float],
            overwrite: bool) -> None:
    """Crop every case to its labels' bounding box + margin and resample it to a SIZE^3 cube.

    Writes OUT/images, OUT/labels (cube NIfTIs placed in world coordinates), OUT/datalist.json
    and OUT/prepare_info.json (what restore_to_original needs to map results back onto the
    original grid). The output appears complete or not at all.

    \b
    Examples:
      medrefine prepare --datalist cohort/datalist.json --out prepared --size 128 --margin 10
      medrefine prepare --images imgs --labels labs --out prepared --size 64 --layout multinear
    """
    if datalist is not None and (images is not None or labels is not None):
        raise click.UsageError("use either --datalist or --images/--labels, not both")
    if datalist is None and (images is None or labels is None):
        raise click.UsageError("give --datalist, or both --images and --labels")

    from medrefine.data.datalist import datalist_from_folders
    from medrefine.data.prepare_dataset import prepare_dataset

    source = datalist if datalist is not None else datalist_from_folders(images, labels)
    result = prepare_dataset(source, out_dir, size=size, margin_mm=margin_mm, layout=layout, key=key,
                             label_interpolation=label_interpolation, window=window, overwrite=overwrite,
                             progress=True)
    click.echo(f"prepared cases written to {out_dir} (datalist: {result})")

"""``medrefine validate``: check a dataset and print its problems."""

from __future__ import annotations

import click


@click.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--num-classes", type=click.IntRange(min=1), default=None,
              help="Classes including background; label values must be below it (default: from the datalist).")
@click.option("--key", default=None, help="Check only this datalist list (default: training, validation and test).")
def validate(path: str, num_classes: int | None, key: str | None) -> None:
    """Check the dataset at PATH and print one row per problem.

    PATH is a datalist JSON or a dataset folder (datalist.json, images/ + labels/, imagesTr/ +
    labelsTr/, MultiNeAR, TotalSegmentator cases), a lesion cohort (lesion folders with
    annotations.json, or a lesion table), or a cine cohort (BIDS-like sub-*/anat/*short_axis*
    folders, or a datalist of 4D images and labels: checked as 4D, labels with the image's
    frames, .tfm transforms readable). The bundles accept PATH exactly when no problem is an
    error. Exits with code 1 when any problem is an error (warnings alone exit 0).

    \b
    Example:
      medrefine validate cohort --num-classes 11
    """
    from medrefine.data.validate import format_problems, has_errors, validate_dataset

    problems = validate_dataset(path, num_classes=num_classes, key=key)
    click.echo(format_problems(problems))
    if has_errors(problems):
        raise click.exceptions.Exit(1)

"""``medrefine points``: simulate and expand PA-Seg point annotations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Turn medrefine's input errors into one-line click errors (exit code 1), also outside the group."""
    from medrefine.errors import MedrefineError

    try:
        yield
    except MedrefineError as err:
        raise click.ClickException(str(err)) from err


@click.group()
def points() -> None:
    """Point annotations (PA-Seg): simulate them from full labels, expand them into partial labels."""


@points.command()
@click.option("--labels", "labels", type=click.Path(exists=True), required=True,
              help="A label file or a folder of label files (NIfTI, NRRD, MHA, ...).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder (created); one file per label, named after it.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the jitter draws (same seed, same points).")
@click.option("--jitter-mm", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Standard deviation (mm) of the per-axis jitter of each point; 0 = exact protocol.")
@click.option("--margin-mm", type=click.FloatRange(min=0.0), default=None,
              help="Distance of background points beyond the bounding-box faces (mm, >= 1 voxel). [default: 2 voxels]")
@click.option("--format", "output_format", type=click.Choice(["nifti", "json"]), default="nifti", show_default=True,
              help="nifti: point map on the label grid (0 none, 1 background, 1+c foreground of class c); "
                   "json: points in world mm (RAS) with their class.")
def simulate(labels: str, out_dir: str, seed: int, jitter_mm: float, margin_mm: float | None, output_format: str) -> None:
    """Simulate PA-Seg's seven points per class from full label maps.

    Per class: one foreground point inside the object (the voxel farthest from its boundary) and
    six background points just beyond the faces of its bounding box, inside the image.

    \b
    Example:
      medrefine points simulate --labels cohort/labels --out cohort/points --seed 0 --format json
    """
    from medrefine.points.simulate import simulate_point_files

    with _clean_errors():
        written = simulate_point_files(
            labels, out_dir, seed=seed, jitter_mm=jitter_mm, margin_mm=margin_mm, output_format=output_format,
            echo=click.echo,
        )
    click.echo(f"Wrote {len(written)} point file(s) ({output_format}) to {out_dir}")


@points.command()
@click.option("--image", "image_path", type=click.Path(exists=True), required=True, help="The image.")
@click.option("--points", "points_path", type=click.Path(exists=True), required=True,
              help="Its points: a point map (NIfTI, same grid) or a JSON point list.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="Output partial label (.nii.gz): 0 background, c foreground, 255 unlabeled.")
@click.option("--threshold", type=click.FloatRange(min=0.0, max=1.0, min_open=True), default=0.2, show_default=True,
              help="Foreground where the normalised geodesic distance is below this.")
@click.option("--margin-mm", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Grow the points' bounding box by this much per side (mm).")
@click.option("--lambda-geodesic", type=click.FloatRange(min=0.0, max=1.0), default=0.5, show_default=True,
              help="Weight of the intensity term of the geodesic distance.")
@click.option("--num-passes", type=click.IntRange(min=1), default=4, show_default=True, help="Raster-scan passes.")
@click.option("--background-threshold", type=click.FloatRange(min=0.0, max=1.0, min_open=True), default=None,
              help="Background inside the box where the normalised distance is at least this "
                   "(default: the rest of the box unlabeled, PA-Seg). CT: 0.3, with --threshold 0.12 "
                   "--lambda-geodesic 0.995 --smooth-mm 2.")
@click.option("--smooth-mm", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Gaussian smoothing (mm) of the image before the distance (CT: 2).")
def expand(image_path: str, points_path: str, out_path: str, threshold: float, margin_mm: float,
           lambda_geodesic: float, num_passes: int, background_threshold: float | None, smooth_mm: float) -> None:
    """Expand one image's points into a partial label by geodesic distance (PA-Seg stage 1).

    Each class is expanded inside the box of its own points (JSON lists tag background points
    with their class; a point map's background points count for every class).

    \b
    Example:
      medrefine points expand --image images/case.nii.gz --points points/case.json --out seeds/case.nii.gz
    """
    from medrefine.io import load_image, save_nifti
    from medrefine.points.files import load_points
    from medrefine.transforms.seed_expansion import expand_point_set

    if background_threshold is not None and background_threshold <= threshold:
        raise click.BadParameter(f"must be above --threshold ({threshold:g}), got {background_threshold:g}",
                                 param_hint="--background-threshold")
    with _clean_errors():
        image = load_image(image_path, dtype="float32")
        point_set = load_points(points_path, image=image)
        array = image.array if image.array.ndim == 3 else image.array.transpose(3, 0, 1, 2)
        label = expand_point_set(
            array, point_set, image.affine, threshold=threshold, margin_mm=margin_mm,
            lambda_geodesic=lambda_geodesic, num_passes=num_passes, background_threshold=background_threshold,
            smooth_mm=smooth_mm, image_name=str(image.path),
        )
        target = save_nifti(label, out_path, affine=image.affine, protect=[image_path, points_path])
    counts = {name: int((label == value).sum()) for name, value in (("background", 0), ("unlabeled", 255))}
    click.echo(
        f"Wrote {target}: {int(((label > 0) & (label < 255)).sum())} foreground, {counts['unlabeled']} unlabeled, "
        f"{counts['background']} background voxels"
    )

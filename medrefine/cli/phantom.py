"""``medrefine phantom``: write synthetic cohorts (images, clean and noisy labels, datalist)."""

from __future__ import annotations

import click

NOISE_CHOICES = ("none", "mild", "moderate", "severe")


@click.group()
def phantom() -> None:
    """Write synthetic phantom cohorts (labels with annotation noise, multi-modal lesions, cine MR)."""


@phantom.command()
@click.option("--cases", type=click.IntRange(min=1), default=8, show_default=True, help="Number of cases.")
@click.option("--size", type=click.IntRange(min=16, max=512), default=64, show_default=True,
              help="Voxels per axis (cube); the grid always covers 144 mm, so spacing = 144 / size mm.")
@click.option("--noise", type=click.Choice(NOISE_CHOICES), default="moderate", show_default=True,
              help="Annotation-noise severity of labels_noisy/ (mean foreground Dice ~0.85 / 0.75 / 0.6).")
@click.option("--seed", type=int, default=0, show_default=True, help="Cohort seed (same seed, same files).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder to create (must not exist or be empty).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def cardiac(cases: int, size: int, noise: str, seed: int, out_dir: str, overwrite: bool, progress: bool) -> None:
    """Write 11-class cardiac CT phantoms (MultiNeAR classes) with clean and noisy labels.

    Creates OUT/images, OUT/labels (clean), OUT/labels_noisy, OUT/classes.json and
    OUT/datalist.json ("label" = noisy, "label_clean" = clean), built in a temporary folder
    and moved into place when complete.

    \b
    Example:
      medrefine phantom cardiac --cases 8 --size 64 --noise moderate --seed 0 --out cohort
    """
    from medrefine.data.phantoms import make_cardiac_cohort

    datalist = make_cardiac_cohort(
        out_dir, cases=cases, size=size, noise=noise, seed=seed, overwrite=overwrite, progress=progress
    )
    click.echo(f"Wrote {cases} cardiac phantom cases ({size}^3, noise {noise}) to {out_dir}; datalist: {datalist}")


@phantom.command("heart-sdf")
@click.option("--cases", type=click.IntRange(min=1), default=8, show_default=True, help="Number of cases.")
@click.option("--size", type=click.IntRange(min=8, max=512), default=64, show_default=True,
              help="Voxels per axis (cube).")
@click.option("--spacing", "spacing_mm", type=click.FloatRange(min=0.0, min_open=True), default=1.5,
              show_default=True, help="Voxel size in mm; the heart is in mm, so this sets the field of view.")
@click.option("--noise", type=click.Choice(NOISE_CHOICES), default="moderate", show_default=True,
              help="Annotation-noise severity of labels_noisy/ (mean foreground Dice ~0.89 / 0.78 / 0.64).")
@click.option("--noise-model", type=click.Choice(("slicewise", "model", "mixed")), default="mixed",
              show_default=True,
              help="slicewise: contours every k-th axial slice with a boundary bias, interpolated between; "
                   "model: leaks, missed distal branches, islands, label swaps; mixed: both.")
@click.option("--seed", type=int, default=0, show_default=True, help="Cohort seed (same seed, same files).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder to create (must not exist or be empty).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def heart_sdf(cases: int, size: int, spacing_mm: float, noise: str, noise_model: str, seed: int, out_dir: str,
              overwrite: bool, progress: bool) -> None:
    """Write SDF-built cardiac phantoms, a second family (tune on one, report on the other).

    Same 11 classes and the same layout as `phantom cardiac` (OUT/images, OUT/labels,
    OUT/labels_noisy, OUT/classes.json, OUT/datalist.json); anatomy, image model and
    annotator noise are built differently. The heart is in mm: 64 voxels at 1.5 mm cover 96 mm.

    \b
    Example:
      medrefine phantom heart-sdf --cases 8 --noise moderate --noise-model slicewise --out sdf
    """
    from medrefine.data.heart_sdf_cohort import make_heart_sdf_cohort

    datalist = make_heart_sdf_cohort(out_dir, cases=cases, size=size, spacing_mm=spacing_mm, noise=noise,
                                     noise_model=noise_model, seed=seed, overwrite=overwrite, progress=progress)
    click.echo(f"Wrote {cases} SDF heart phantom cases ({size}^3 at {spacing_mm} mm, noise {noise}, "
               f"{noise_model}) to {out_dir}; datalist: {datalist}")


@phantom.command()
@click.option("--patients", type=click.IntRange(min=1), default=80, show_default=True, help="Number of patients.")
@click.option("--lesions-per-patient", type=(click.IntRange(min=1), click.IntRange(min=1)), default=(1, 4),
              show_default=True, help="Inclusive range of lesions per patient.")
@click.option("--misregistration-mm", type=click.FloatRange(min=0.0), default=3.0, show_default=True,
              help="Largest shift of one modality against another, per axis.")
@click.option("--missing-rate", type=click.FloatRange(min=0.0, max=1.0, max_open=True), default=0.08,
              show_default=True, help="Probability that a patient lacks a modality.")
@click.option("--seed", type=int, default=0, show_default=True, help="Cohort seed (same seed, same files).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder to create (must not exist or be empty).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def lesions(patients: int, lesions_per_patient: tuple[int, int], misregistration_mm: float, missing_rate: float,
            seed: int, out_dir: str, overwrite: bool, progress: bool) -> None:
    """Write multi-modal lesion phantoms (T1, ART, DWI, ADC) in the RRMediCa folder layout.

    Creates OUT/<patient>_lesion<i>_<diameter>mm/ with one NIfTI per modality and an
    annotations.json, and OUT/cohort.json. Targets: enhancement (readable from ART
    alone), diffusion (only from DWI and ADC together), malignant (both).

    \b
    Example:
      medrefine phantom lesions --patients 80 --seed 0 --out lesions
    """
    from medrefine.data.lesion_phantoms import make_lesion_cohort

    make_lesion_cohort(out_dir, patients=patients, lesions_per_patient=lesions_per_patient,
                       misregistration_mm=misregistration_mm, missing_rate=missing_rate, seed=seed,
                       overwrite=overwrite, progress=progress)
    click.echo(f"Wrote lesion phantoms of {patients} patients to {out_dir}")


@phantom.command()
@click.option("--subjects", type=click.IntRange(min=1), default=16, show_default=True, help="Number of subjects.")
@click.option("--size", type=(click.IntRange(min=8), click.IntRange(min=8)), default=(96, 96), show_default=True,
              help="In-plane voxels (X Y).")
@click.option("--slices", type=click.IntRange(min=2), default=10, show_default=True, help="Short-axis slices.")
@click.option("--frames", type=click.IntRange(min=2), default=20, show_default=True,
              help="Frames over one cardiac cycle (frame 0 = end-diastole).")
@click.option("--spacing", type=(float, float, float), default=(1.5, 1.5, 8.0), show_default=True,
              help="Voxel size in mm (x y z); z is the slice spacing and thickness.")
@click.option("--misalignment-mm", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Standard deviation of a per-slice in-plane shift (breath-hold misalignment).")
@click.option("--seed", type=int, default=0, show_default=True, help="Cohort seed (same seed, same files).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder to create (must not exist or be empty).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def cine(subjects: int, size: tuple[int, int], slices: int, frames: int, spacing: tuple[float, float, float],
         misalignment_mm: float, seed: int, out_dir: str, overwrite: bool, progress: bool) -> None:
    """Write 4D short-axis cine MR phantoms with known motion and ejection fractions.

    LV cavity, myocardium and RV crescent contract and twist over one periodic cycle;
    the displacement field and the volumes are known exactly. BIDS-like layout:
    OUT/sub-*/anat/*_short_axis.nii.gz, OUT/derivatives/sa_segmentation/,
    OUT/derivatives/sa_coordinates/ (.tfm) and OUT/derivatives/phantom_truth/
    (EF, volume curves, ED boundary points and their displacement).

    \b
    Example:
      medrefine phantom cine --subjects 16 --frames 20 --misalignment-mm 1 --out cine
    """
    from medrefine.data.cine_phantoms import make_cine_cohort

    make_cine_cohort(out_dir, subjects=subjects, size=size, slices=slices, frames=frames, spacing=spacing,
                     misalignment_mm=misalignment_mm, seed=seed, overwrite=overwrite, progress=progress)
    click.echo(f"Wrote {subjects} cine phantom subjects ({size[0]}x{size[1]}x{slices}, {frames} frames) to {out_dir}")

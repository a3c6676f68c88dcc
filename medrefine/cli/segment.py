"""``medrefine segment``: segment CT with a trained multi-organ model (TotalSegmentator-style outputs)."""

from __future__ import annotations

import click

@click.command()
@click.option("-i", "--input", "source", required=True, type=click.Path(exists=True),
              help="A CT image file (NIfTI, NRRD, MHA), a folder of them, a DICOM series folder, or a folder of "
                   "DICOM series folders.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder (not an input folder).")
@click.option("--model", default=None,
              help="A trained model folder (model.pt + model.json, as the multiorgan_ct_segmentation bundle's "
                   "train writes it) or the name of an installed bundle with trained weights.")
@click.option("--roi-subset", multiple=True, metavar="NAME",
              help="Keep only these structures (repeatable; several names after one flag also work).")
@click.option("--one-file-per-structure", is_flag=True,
              help="Write OUT/<case>/<structure>.nii.gz (0/1) instead of one label map per case.")
@click.option("--low-memory/--no-low-memory", default=None,
              help="Slab-wise inference for large volumes (default: chosen per case from its size and the free memory).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present).")
@click.option("--nan-policy", type=click.Choice(["refuse", "zero"]), default="refuse", show_default=True,
              help="Refuse images with NaN/Inf voxels, or set those voxels to 0.")
@click.argument("more_rois", nargs=-1)
def segment(source: str, out_dir: str, model: str | None, roi_subset: tuple[str, ...], one_file_per_structure: bool,
            low_memory: bool | None, device: str | None, nan_policy: str, more_rois: tuple[str, ...]) -> None:
    """Segment every CT of -i with a trained model; label maps in each input's own geometry.

    Writes OUT/<case>.nii.gz (one multi-label map with the model's label values) and
    OUT/classes.json (label value -> structure name); with --one-file-per-structure one 0/1 mask
    per structure in OUT/<case>/. Every input is checked before the first output is written;
    inputs are never written to.

    \b
    Examples:
      medrefine segment -i ct.nii.gz -o seg --model work/models
      medrefine segment -i cts/ -o seg --model work/models --roi-subset liver spleen
      medrefine segment -i dicom_series/ -o seg --model work/models --one-file-per-structure
    """
    if more_rois and not roi_subset:
        raise click.UsageError(f"unexpected argument(s) {' '.join(more_rois)}; structure names follow --roi-subset")

    from medrefine.bundle.verbosity import run_verbosity
    from medrefine.workflows.segment_pipeline import run_segment

    with run_verbosity():  # MONAI's notices only with -v
        result = run_segment(source, out_dir, model=model, roi_subset=list(roi_subset) + list(more_rois),
                             one_file_per_structure=one_file_per_structure, low_memory=low_memory, device=device,
                             nan_policy=nan_policy, echo=click.echo, progress=True)
    click.echo(result.summary())

"""``medrefine refine``: refine noisy labels in one command (NeAR, the annotation_refinement recipe)."""

from __future__ import annotations

import click


@click.command()
@click.option("-i", "--images", required=True, type=click.Path(exists=True),
              help="Folder of images, one image file, or a dataset (datalist JSON, folder with datalist.json or "
                   "images/ + labels/) when -l is left out.")
@click.option("-l", "--labels", type=click.Path(exists=True), default=None,
              help="The labels to refine: a folder paired with the images by case name, or one file.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder (refused inside an input folder).")
@click.option("--ref", type=click.Path(exists=True), default=None,
              help="Clean reference labels (folder paired by case name, or one file): also score against them.")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A trained model folder (model.pt + model.json, e.g. an earlier OUT/model): refine the cases "
                   "inductively with it instead of training.")
@click.option("--fast", "preset", flag_value="fast", help="Preset: half the default epochs.")
@click.option("--quality", "preset", flag_value="quality", help="Preset: 1.5 times the default epochs.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Training epochs (default: 200, more for fewer than 8 cases).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Device (default: CUDA when present).")
@click.option("--key", default="training", show_default=True, help="Datalist list of a dataset -i.")
@click.option("--dry-run", is_flag=True, help="Print the plan and its time estimate, write nothing.")
@click.option("-y", "--yes", is_flag=True, help="Run without asking (the default; kept for scripts).")
def refine(images: str, labels: str | None, out_dir: str, ref: str | None, model_dir: str | None,
           preset: str | None, epochs: int | None, device: str | None, key: str, dry_run: bool, yes: bool) -> None:
    """Refine noisy labels: plan, train NeAR on all cases, refine each, score, report.

    Pairs images and labels by case name, sizes the cubes to the data, times a few training
    steps on this machine and prints the plan with its time estimate, then trains the
    annotation_refinement bundle's recipe on all cases (transductive) and writes into OUT:
    refined/<case>.nii.gz (on each input's grid), uncertainty/, changes/, changes.csv, model/
    (reuse with --model), metrics.csv (one row per case: Dice vs the input, and vs --ref),
    metrics_*.csv, report/report.html and run.json. Inputs are never written to.

    \b
    Presets: default = medrefine.engines.default_epochs(cases) (200 for 8+ cases),
    --fast = half of it, --quality = 1.5 times it; --epochs N sets it exactly.

    \b
    Examples:
      medrefine refine -i cohort/images -l cohort/labels_noisy --ref cohort/labels -o refined
      medrefine refine -i new/images -l new/labels -o new_refined --model refined/model
      medrefine refine -i cohort/images -l cohort/labels_noisy -o refined --dry-run
    """
    if model_dir is not None and (epochs is not None or preset is not None):
        raise click.UsageError("--model reuses a trained model: --epochs/--fast/--quality do not apply")
    if epochs is not None and preset is not None:
        raise click.UsageError(f"use --epochs or --{preset}, not both")
    from medrefine.workflows.near_pipeline import run_refine

    result = run_refine(images, labels, out_dir, ref=ref, model_dir=model_dir, preset=preset or "default",
                        epochs=epochs, device=device, dry_run=dry_run, key=key, echo=click.echo)
    for line in result.guard_lines:
        click.echo(line)
    for line in result.warnings:
        click.echo(line, err=True)
    if result.report is not None:
        click.echo(f"report: {result.report.resolve()}")
    click.echo(result.summary())

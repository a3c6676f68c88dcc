"""``medrefine bundle pack | verify | install``: share a trained bundle with sha256 manifests."""

from __future__ import annotations

import click

from medrefine.bundle.archive import DEFAULT_MAX_MEMBER_MB

_MAX_MEMBER = click.option("--max-member-mb", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_MAX_MEMBER_MB,
                           show_default=True, help="Refuse an archive holding a file larger than this (MiB, decompressed).")


@click.group()
def bundle() -> None:
    """Share a trained bundle: pack it with a manifest, verify it, install it.

    \b
    Examples:
      medrefine bundle pack multiorgan_ct_segmentation --out multiorgan_ct_segmentation_0.1.0.zip
      medrefine bundle pack multiorgan_ct_segmentation --work-dir runs/ct --out shared/
      medrefine bundle verify multiorgan_ct_segmentation_0.1.0.zip
      medrefine bundle install multiorgan_ct_segmentation_0.1.0.zip --to ~/bundles
    """


@bundle.command()
@click.argument("bundle_dir")
@click.option("--out", type=click.Path(dir_okay=True), default=None,
              help="The .zip to write, or a folder (existing, or ending in /) for NAME_VERSION.zip (default: here).")
@click.option("--no-weights", is_flag=True, help="Pack configs, docs and LICENSE only (no trained model needed).")
@click.option("--work-dir", "work_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="The run whose models/ to pack (as given to medrefine run --work-dir).")
@click.option("--run", "run_name", default=None, metavar="NAME",
              help="The run under ./medrefine_runs/BUNDLE/ whose models/ to pack (default: 'default', or the "
                   "bundle folder's own models/ when it has them).")
def pack(bundle_dir: str, out: str | None, no_weights: bool, work_dir: str | None, run_name: str | None) -> None:
    """Pack BUNDLE_DIR (a folder, or a shipped bundle's name) into a zip for sharing.

    The archive holds one folder named after the bundle: configs/, docs/, LICENSE, the trained
    models of a run (each models/NAME.pt with its models/NAME.json, from the run's work
    directory: --work-dir DIR, --run NAME, or ./medrefine_runs/BUNDLE/default) and manifest.json with the sha256 and
    size of every file. The version is metadata's, which must be the newest changelog entry.
    Checkpoints, logs and outputs stay out. The same files give the same archive, byte for byte.
    """
    from pathlib import Path

    from medrefine.bundle import default_work_dir, find_bundle
    from medrefine.bundle.archive import pack_bundle
    from medrefine.bundle.manifest import model_files

    if work_dir is not None and run_name is not None:
        raise click.UsageError("give --work-dir or --run, not both")
    info = find_bundle(bundle_dir)
    models = None
    if work_dir is not None:
        models = Path(work_dir) / "models"
    elif run_name is not None or not model_files(info.path):
        models = Path(default_work_dir(info.name, run_name or "default")) / "models"
    path = pack_bundle(info.path, out, weights=not no_weights, models_dir=models)
    click.echo(f"packed {path}")


@bundle.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--no-export", is_flag=True, help="Skip the TorchScript / torch.export round trip.")
@_MAX_MEMBER
def verify(path: str, no_export: bool, max_member_mb: float) -> None:
    """Check a packed bundle (.zip) or a bundle folder; refuse it in one line at the first problem.

    \b
    Checks, in order:
      files     sha256 and size of every file against manifest.json, nothing unlisted
      metadata  the bundle schema (kept in the package, no download); version in the changelog
      network   each trained model built from its model.json, run on a tensor shaped from
                network_data_format; output channels, spatial shape and dtype checked (networks
                that need more than one tensor, like the NeAR auto-decoder, are named instead)
      export    TorchScript (else torch.export) save, load and the same output
      code      every '$' expression of the configs, listed: MONAI runs them as Python
    An archive is checked member by member and extracted into a temporary folder first.
    """
    from medrefine.bundle.verify import verify_bundle

    report = verify_bundle(path, export=not no_export, max_member_mb=max_member_mb)
    click.echo(f"{report.name} {report.version}: verified")
    for line in report.checks:
        click.echo(f"  ok  {line}")
    current = None
    for rel, key, expression in report.expressions:
        if rel != current:
            click.echo(f"{rel}:")
            current = rel
        click.echo(f"  {key}: {expression}")


@bundle.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.option("--to", "to", required=True, type=click.Path(file_okay=False),
              help="Folder to install into: the bundle becomes DIR/NAME (monai.bundle.load's bundle_dir).")
@click.option("--force", is_flag=True, help="Replace a bundle of the same name already in DIR.")
@_MAX_MEMBER
def install(archive: str, to: str, force: bool, max_member_mb: float) -> None:
    """Install a packed bundle ARCHIVE into DIR/NAME, checked before anything is put in place.

    Every member is checked first (absolute paths, '..', links and oversized files are refused),
    the files are extracted into a temporary folder inside DIR, compared with the manifest
    (sha256 and size) and the metadata with the schema; only then is the folder renamed to
    DIR/NAME. A refused archive leaves DIR as it was.
    """
    from medrefine.bundle.archive import install_bundle

    root = install_bundle(archive, to, force=force, max_member_mb=max_member_mb)
    click.echo(f"installed {root}")
    click.echo(f"run it:  medrefine run {root} inference --set dataset_dir=DATA")

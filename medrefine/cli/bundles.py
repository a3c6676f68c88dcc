"""``medrefine bundles`` and ``medrefine run``: list the shipped bundles and run one."""

from __future__ import annotations

import click

MODE_CHOICES = ("train", "evaluate", "inference", "multi_gpu_train")


@click.command()
@click.option("--root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder holding bundles (default: the repository's bundles/ or $MEDREFINE_BUNDLES).")
def bundles(root: str | None) -> None:
    """List the shipped bundles with their version, modes and description."""
    from medrefine.bundle import bundles_root, list_bundles

    found = list_bundles(root)
    if not found:
        click.echo(f"no bundles found in {root or bundles_root()}")
        return
    width = max(len(b.name) for b in found)
    for b in found:
        click.echo(f"{b.name:<{width}}  v{b.version}  [{', '.join(b.modes)}]")
        click.echo(f"{'':<{width}}  {b.description}")


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("bundle")
@click.argument("mode", default="train")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config value (repeatable); nested keys with '#', values parsed as JSON when possible.")
@click.option("--config", "extra", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Extra config file layered on top (repeatable).")
@click.option("--root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder holding bundles (default: the repository's bundles/).")
def run(bundle: str, mode: str, sets: tuple[str, ...], extra: tuple[str, ...], root: str | None) -> None:
    """Run MODE (train, evaluate, inference, multi_gpu_train, stage2) of BUNDLE.

    A thin wrapper over `python -m monai.bundle run`: it picks the bundle's config layers for the
    mode (evaluate = train + evaluate, as in the MONAI model zoo; stage2 = train + stage2 for
    point_supervised_segmentation) and passes the overrides on.

    \b
    Examples:
      medrefine run annotation_refinement train --set epochs=2 --set dataset_dir=cohort
      medrefine run annotation_refinement inference --set device=cpu
    """
    from medrefine.bundle import find_bundle, parse_overrides, run_bundle

    info = find_bundle(bundle, root)
    run_bundle(info, mode, parse_overrides(sets), extra_configs=list(extra))

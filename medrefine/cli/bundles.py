"""``medrefine bundles`` and ``medrefine run``: list the shipped bundles and run one."""

from __future__ import annotations

import click

MODE_CHOICES = ("train", "evaluate", "inference", "multi_gpu_train", "stage2", "cross_validation", "multi_gpu_stage2")


@click.command()
@click.option("--root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder holding bundles (default: $MEDREFINE_BUNDLES, else the installed package's, else the repository's bundles/).")
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
              help="Override a config value (repeatable): the key must exist in the bundle's merged config "
                   "(nested keys with '#'; a new key on purpose: +KEY=VALUE); the value is read as JSON, "
                   "else as a Python literal (\"['liver','spleen']\"), else as plain text.")
@click.option("--config", "extra", multiple=True, metavar="FILE|NAME",
              help="Extra config layered on top (repeatable): a file, or the name of one of the bundle's "
                   "configs, e.g. smoke (configs/smoke.json: a tiny network and a few epochs).")
@click.option("--work-dir", "work_dir", type=click.Path(file_okay=False), default=None,
              help="Folder the run writes into: models/, logs/, eval/, inference/ "
                   "(default: ./medrefine_runs/BUNDLE/RUN). Evaluate and inference read the model there.")
@click.option("--run", "run_name", default=None, metavar="NAME",
              help="Name of the run under ./medrefine_runs/BUNDLE/ (default: 'default'); a new name starts afresh.")
@click.option("--root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder holding bundles (default: $MEDREFINE_BUNDLES, else the installed package's, else the repository's bundles/).")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error instead of one line.")
def run(bundle: str, mode: str, sets: tuple[str, ...], extra: tuple[str, ...], work_dir: str | None,
        run_name: str | None, root: str | None, debug: bool) -> None:
    """Run MODE (train, evaluate, inference, multi_gpu_train, stage2, cross_validation) of BUNDLE.

    A thin wrapper over `python -m monai.bundle run`: it picks the bundle's config layers for the
    mode (evaluate = train + evaluate, as in the MONAI model zoo; stage2 = train + stage2 for
    point_supervised_segmentation; cross_validation = train + cross_validation for
    lesion_classification) and passes the overrides on. Every case is checked before the
    first output; a refused input is one line `Error: <file>: expected ..., found ...` with exit
    code 3 (other failures: exit 1; --debug shows the traceback). Config values and --set values
    starting with '$' are Python expressions: run only bundles and values you trust.

    Everything a run writes goes under its work directory, ./medrefine_runs/BUNDLE/default unless
    --run NAME or --work-dir DIR names another; the bundle's folder is only read. Train resumes
    from the checkpoint in the work directory when it holds the same model, and stops with one
    line when it holds another (start afresh with --run NEW, or --set resume=false).

    \b
    Examples:
      medrefine run annotation_refinement train --set epochs=2 --set dataset_dir=cohort
      medrefine run annotation_refinement inference --set dataset_dir=cohort
      medrefine run multiorgan_ct_segmentation train --config smoke --run smoke --set dataset_dir=cohort
      medrefine run multiorgan_ct_segmentation train --set "structures=['liver','spleen']" --set +my_key=1
    """
    import os
    import traceback

    from medrefine.bundle import find_bundle, parse_overrides, run_bundle
    from medrefine.errors import MedrefineError

    overrides = parse_overrides(sets)
    if work_dir is not None and run_name is not None:
        raise click.UsageError("give --work-dir or --run, not both (--run NAME means --work-dir ./medrefine_runs/BUNDLE/NAME)")
    if work_dir is not None:
        overrides["work_dir"] = os.path.abspath(work_dir)
    if run_name is not None:
        overrides["run_name"] = run_name
    code = sorted(k for k, v in overrides.items() if isinstance(v, str) and v.lstrip().startswith("$"))
    if code:
        click.echo(f"Warning: --set {', '.join(code)}: values starting with '$' run as Python code; "
                   "use only values (and bundles) you trust", err=True)
    if debug:
        try:
            run_bundle(find_bundle(bundle, root), mode, overrides, extra_configs=list(extra))
        except MedrefineError:
            traceback.print_exc()  # then the usual one line and exit code
            raise
        return
    try:
        run_bundle(find_bundle(bundle, root), mode, overrides, extra_configs=list(extra))
    except MedrefineError as err:
        if "\n" not in str(err):
            raise
        raise type(err)(" ".join(str(err).split())) from None  # one line, as a refused input is shown
    except Exception as err:  # not a refused input: a bug or the environment; one line, traceback with --debug
        root = err
        while root.__cause__ is not None:  # MONAI wraps the real error in "Failed to evaluate ..." layers
            root = root.__cause__
        first = (str(root).strip().splitlines() or [""])[0]
        raise click.ClickException(f"{type(root).__name__}: {first} (run again with --debug for the traceback)") from err

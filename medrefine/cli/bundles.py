"""``medrefine bundles`` and ``medrefine run``: list the shipped bundles and run one."""

from __future__ import annotations

import click

MODE_CHOICES = ("train", "evaluate", "inference", "multi_gpu_train", "stage2", "cross_validation", "multi_gpu_stage2",
                "multi_gpu_inference")

# mode -> the mode that runs it across processes under torchrun (``--nproc N`` with N > 1)
DISTRIBUTED_MODES = {"train": "multi_gpu_train", "stage2": "multi_gpu_stage2", "inference": "multi_gpu_inference"}


def _distributed_command(bundle: str, mode: str, nproc: int, *, root: str | None, sets: tuple[str, ...],
                         extra: tuple[str, ...], work_dir: str | None, run_name: str | None, debug: bool) -> list[str]:
    """``python -m torch.distributed.run ... -m medrefine run BUNDLE <distributed mode> ...``, the options passed on.

    Raises:
        click.UsageError: ``mode`` has no distributed variant.
        click.ClickException: the bundle has no config for the distributed variant.
    """
    import os
    import sys

    from medrefine.bundle import find_bundle

    if mode in DISTRIBUTED_MODES.values():
        target = mode
    elif mode in DISTRIBUTED_MODES:
        target = DISTRIBUTED_MODES[mode]
    else:
        raise click.UsageError(f"--nproc {nproc}: mode {mode!r} does not run across processes; expected one of "
                               f"{', '.join(DISTRIBUTED_MODES)} (or run it with --nproc 1)")
    info = find_bundle(bundle, root)
    if target not in info.modes:
        raise click.ClickException(f"--nproc {nproc}: bundle {info.name!r} has no configs/{target}.json, "
                                   f"so mode {mode!r} runs in one process only (run it with --nproc 1)")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "medrefine", "run", str(info.path), target]
    for item in sets:
        cmd += ["--set", item]
    for item in extra:
        cmd += ["--config", os.path.abspath(item) if os.path.isfile(item) else item]
    if work_dir is not None:
        cmd += ["--work-dir", os.path.abspath(work_dir)]
    if run_name is not None:
        cmd += ["--run", run_name]
    if root is not None:
        cmd += ["--root", os.path.abspath(root)]
    if debug:
        cmd.append("--debug")
    return cmd


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
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Processes to run MODE with. N > 1 starts N processes on this machine under "
                   "`python -m torch.distributed.run --standalone --nproc_per_node N` (one GPU each on CUDA, "
                   "nccl; gloo on CPU) with the distributed mode: train -> multi_gpu_train, "
                   "stage2 -> multi_gpu_stage2, inference -> multi_gpu_inference (the cases are shared out, "
                   "each output written once, tables merged by rank 0). The other options are passed on.")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error instead of one line.")
def run(bundle: str, mode: str, sets: tuple[str, ...], extra: tuple[str, ...], work_dir: str | None,
        run_name: str | None, root: str | None, nproc: int, debug: bool) -> None:
    """Run MODE of BUNDLE: train, evaluate, inference, stage2, cross_validation or a multi_gpu_* mode.

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
      medrefine run multiorgan_ct_segmentation inference --nproc 2 --set dataset_dir=cohort
    """
    import os
    import traceback

    from medrefine.bundle import find_bundle, parse_overrides, run_bundle
    from medrefine.errors import MedrefineError

    overrides = parse_overrides(sets)
    if work_dir is not None and run_name is not None:
        raise click.UsageError("give --work-dir or --run, not both (--run NAME means --work-dir ./medrefine_runs/BUNDLE/NAME)")
    if nproc > 1:
        import subprocess

        cmd = _distributed_command(bundle, mode, nproc, root=root, sets=sets, extra=extra, work_dir=work_dir,
                                   run_name=run_name, debug=debug)
        import shlex

        click.echo(f"starting {nproc} processes: {shlex.join(cmd)}", err=True)
        code = subprocess.run(cmd).returncode
        if code:
            raise click.ClickException(f"{nproc} processes of {mode}: exit code {code} (see the processes' output above)")
        return
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

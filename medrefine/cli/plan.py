"""``medrefine plan``: plan a segmentation bundle's training from the data and this machine (nnU-Net-style)."""

from __future__ import annotations

import click


@click.command()
@click.argument("bundle", default="multiorgan_ct_segmentation")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="A config value of the bundle's train.json (repeatable), e.g. dataset_dir=DATA, structures=[...].")
@click.option("--config", "extra", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Extra config file layered on train.json (repeatable).")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="The plan JSON to write.")
@click.option("--time-budget", default=None, help="Training time to fit: 30m, 2h, 1h30m, 90s (a bare number: minutes). "
                                                  "Default: the bundle's epochs, with their estimated time.")
@click.option("--memory-budget", type=click.FloatRange(min=0.1), default=None,
              help="GiB a training step may use (default: 80%% of the GPU, or half the free RAM up to 8 GiB).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N: the device the training will use (default: the config's).")
@click.option("--compare-default", is_flag=True, help="Also time the bundle's unplanned defaults, for comparison.")
def plan(bundle: str, sets: tuple[str, ...], extra: tuple[str, ...], out_path: str, time_budget: str | None,
         memory_budget: float | None, device: str | None, compare_default: bool) -> None:
    """Plan BUNDLE's training (multiorgan_ct_segmentation) from its dataset and this machine.

    Reads every case once (spacings, shapes, foreground intensity percentiles, class volumes,
    classes present), then chooses the target spacing (median), patch and batch size within the
    memory budget, the U-Net's depth, the HU window, the classes actually present (out_channels =
    those + background) and the epochs that fit the time budget, timing a few real training steps
    of the planned network here. Prints the plan with its estimated time and writes it to -o;
    train with it through --set plan=PLAN (config keys set on the command line still win).

    \b
    Examples:
      medrefine plan multiorgan_ct_segmentation --set dataset_dir=data --time-budget 30m -o plan.json
      medrefine run multiorgan_ct_segmentation train --set dataset_dir=data --set plan=plan.json
    """
    from medrefine.bundle import parse_overrides
    from medrefine.bundle.verbosity import run_verbosity
    from medrefine.workflows.segmentation_plan import parse_duration, plan_bundle, write_plan

    overrides = parse_overrides(sets)
    budget = parse_duration(time_budget) if time_budget else None
    with run_verbosity():  # MONAI's notices only with -v
        result = plan_bundle(bundle, overrides, extra_configs=list(extra), time_budget_s=budget,
                             memory_budget_bytes=int(memory_budget * 2**30) if memory_budget else None, device=device,
                             compare_default=compare_default)
    for line in result.lines():
        click.echo(line)
    path = write_plan(result, out_path)
    sets_shown = " ".join(f"--set {s}" for s in sets if not s.startswith("plan="))
    click.echo(f"wrote {path}; train with: medrefine run {bundle} train {sets_shown} --set plan={path}".replace("  ", " "))

"""The ``medrefine`` command: data work around the bundles.

Each command lives in its own module and imports its heavy dependencies inside the command
function, so ``medrefine --help`` stays fast. The group loads a command module only when that
command (or the help listing) needs it.
"""

from __future__ import annotations

import importlib
import logging

import click

from medrefine import __version__
from medrefine.errors import INPUT_ERROR_EXIT_CODE, MedrefineError

__all__ = ["cli", "main"]

# command name -> "module:attribute" under medrefine.cli
COMMANDS: dict[str, str] = {
    "phantom": "medrefine.cli.phantom:phantom",
    "points": "medrefine.cli.points:points",
    "prepare": "medrefine.cli.prepare:prepare",
    "validate": "medrefine.cli.validate:validate",
    "evaluate": "medrefine.cli.evaluate:evaluate",
    "report": "medrefine.cli.report:report",
    "bundles": "medrefine.cli.bundles:bundles",
    "bundle": "medrefine.cli.share:bundle",
    "run": "medrefine.cli.bundles:run",
    "demo": "medrefine.cli.demo:demo",
    "datalist": "medrefine.cli.datalist:datalist",
    "refine": "medrefine.cli.refine:refine",
    "segment": "medrefine.cli.segment:segment",
    "plan": "medrefine.cli.plan:plan",
}


class InputRefused(click.ClickException):
    """A refused input: ``Error: <message>`` on stderr and exit code :data:`INPUT_ERROR_EXIT_CODE`."""

    exit_code = INPUT_ERROR_EXIT_CODE


class LazyGroup(click.Group):
    """A click group that imports each command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context):  # noqa: D102
        try:
            return super().invoke(ctx)
        except MedrefineError as err:
            raise InputRefused(str(err)) from err


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="medrefine")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """medrefine: refine labels, learn from points, segment, evaluate and report 3D images.

    \b
    Typical session:
      medrefine phantom cardiac --cases 8 --size 64 --noise moderate --out cohort
      medrefine refine -i cohort/images -l cohort/labels_noisy --ref cohort/labels -o refined
      medrefine evaluate --pred cohort/labels_noisy --ref cohort/labels --out metrics.csv
      medrefine report metrics.csv --out report
      medrefine bundles
      medrefine run annotation_refinement train --set epochs=2
      medrefine bundle pack annotation_refinement --no-weights
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="medrefine")

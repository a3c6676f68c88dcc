"""``medrefine report``: a markdown + self-contained HTML report of a metrics CSV."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("metrics_csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Report folder to write (built aside, then renamed into place; an earlier report there is replaced).")
@click.option("--sources", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Sources JSON giving each case's pred/ref/image files (for overlays and the mesh). "
                   "Default: METRICS_STEM.sources.json next to the CSV, if present.")
@click.option("--title", default=None,
              help="Report title. Default: 'RUN — medrefine report', RUN being the CSV's stem, or its folder's name "
                   "for a generic stem such as metrics or metrics_refined.")
@click.option("--name", default=None,
              help="Name of this run in comparisons, overlays and the 3D view (default: the CSV's stem without a "
                   "metrics_ prefix, else the run's folder name).")
@click.option("--overlay-cases", default=None,
              help="Cases to draw: a count (3 = best, median and worst by mean Dice) or comma-separated case ids; "
                   "0 for none. Default 3 when sources are found.")
@click.option("--mesh-case", default=None,
              help="Case shown as interactive 3D surfaces in report.html (default: the case whose mean Dice fell most "
                   "against the first --compare run, else the case of lowest mean Dice).")
@click.option("--reference-name", default="reference", show_default=True,
              help="What the sources' ref volumes are, in overlays and the 3D view (e.g. input, when a refinement "
                   "was scored against its input label).")
@click.option("--compare", "compare_csv", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Metrics CSV of a run to compare against (the 'before'); repeatable.")
@click.option("--compare-name", multiple=True,
              help="Name of each --compare run, in order (default: its CSV stem), e.g. noisy.")
def report(metrics_csv: str, out: str, sources: str | None, title: str | None, name: str | None, overlay_cases: str | None,
           mesh_case: str | None, reference_name: str, compare_csv: tuple[str, ...], compare_name: tuple[str, ...]) -> None:
    """Write OUT/report.md and OUT/report.html from METRICS_CSV; print the HTML path.

    The report opens with what got worse (structures that vanished or whose Dice dropped, per
    case), then an interactive 3D view of one case in scanner coordinates (reference, compared
    runs and this run as toggleable surfaces; needs the sources), the per-structure table
    (mean ± std, median, Dice success rates), a structure ranking chart, histograms and box
    plots, before/after tables and charts for each --compare run, and per-case overlay PNGs.
    report.html is self-contained (images and plotly.js inline) and opens offline.

    \b
    Examples:
      medrefine report metrics.csv --out report
      medrefine report refined.csv --out report --name refined --compare noisy.csv --compare-name noisy --mesh-case case_000
    """
    from medrefine.errors import InputError
    from medrefine.reports import write_report

    if len(compare_name) > len(compare_csv):
        raise InputError(f"--compare-name given {len(compare_name)} time(s) but --compare only {len(compare_csv)} time(s)")
    compare: dict[str, str] = {}
    for n, path in enumerate(compare_csv):
        label = compare_name[n] if n < len(compare_name) else Path(path).stem
        if label in compare:
            raise InputError(f"--compare: two runs named {label!r}; give each a distinct --compare-name")
        compare[label] = path
    cases: int | list[str] | None = None
    if overlay_cases is not None:
        text = overlay_cases.strip()
        if text.isdigit():
            cases = int(text)
        else:
            cases = [c.strip() for c in text.split(",") if c.strip()]
            if not cases:
                raise InputError(f"--overlay-cases: expected a count or comma-separated case ids, got {overlay_cases!r}")
    html = write_report(metrics_csv, out, title=title, sources=sources, overlay_cases=cases, mesh_case=mesh_case,
                        compare=compare or None, name=name, reference_name=reference_name)
    click.echo(str(html))

"""Reports of a metrics run: tables, charts, 2D overlays, 3D meshes, markdown and HTML.

``write_report`` builds the whole report folder; the pieces are usable on their own:

- :func:`load_metrics`, :func:`per_class_table`, :func:`per_case_table`, :func:`compare_table`
  (:mod:`medrefine.reports.tables`);
- :func:`ranking_chart`, :func:`box_plots`, :func:`distribution_plots`, :func:`compare_plot`
  (:mod:`medrefine.reports.plots`, PNG);
- :func:`overlay_png` (:mod:`medrefine.reports.overlay`): image + label contours, three
  orthogonal slices, several labels side by side;
- :func:`mesh_figure`, :func:`mesh_html` (:mod:`medrefine.reports.mesh`): plotly marching-cubes
  surfaces in scanner coordinates, several labellings as toggleable layers, offline HTML;
- :func:`worse_table`, :func:`worst_case` (:mod:`medrefine.reports.changes`): structures that
  vanished or whose Dice dropped, and the case to show in 3D.

matplotlib, plotly and scikit-image are imported inside the functions that draw.
"""

from __future__ import annotations

from medrefine.reports.changes import worse_table, worst_case
from medrefine.reports.mesh import label_meshes, mesh_figure, mesh_html
from medrefine.reports.overlay import choose_slices, overlay_png
from medrefine.reports.plots import box_plots, compare_plot, distribution_plots, ranking_chart
from medrefine.reports.report import write_report
from medrefine.reports.sources import Sources, load_sources
from medrefine.reports.tables import compare_table, load_metrics, per_case_table, per_class_table, select_cases

__all__ = [
    "write_report",
    "overlay_png",
    "mesh_html",
    "mesh_figure",
    "worse_table",
    "worst_case",
    "label_meshes",
    "choose_slices",
    "ranking_chart",
    "box_plots",
    "distribution_plots",
    "compare_plot",
    "load_metrics",
    "per_class_table",
    "per_case_table",
    "compare_table",
    "select_cases",
    "Sources",
    "load_sources",
]

"""Shared helpers of the report figures: Agg figures, atomic PNG writing, class colours.

Figures are built as :class:`matplotlib.figure.Figure` objects on an explicit Agg canvas, never
through ``pyplot``: no global backend switch, no figure registry to leak memory in long runs, and
it works on machines without a display.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["new_figure", "save_png", "class_color", "class_colors", "size_for_rows", "to_hex"]

DPI = 100


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, out: str | Path, **savefig_kwargs) -> Path:
    """Write ``fig`` as PNG to ``out`` atomically (temporary file, then rename) and return ``out``."""
    from medrefine.io import atomic_write

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, **savefig_kwargs)
    return out


def size_for_rows(count: int, *, per_row: float = 0.24, minimum: float = 2.6, extra: float = 1.3) -> float:
    """Figure height (inches) for a chart with one row per structure, readable for 1 to ~120 rows."""
    return max(minimum, per_row * count + extra)


def _palette() -> list[tuple[float, float, float]]:
    from matplotlib import colormaps

    colors: list[tuple[float, float, float]] = []
    for name in ("tab10", "Dark2", "Set1", "tab20b", "tab20c"):
        colors += [tuple(c[:3]) for c in colormaps[name].colors]  # type: ignore[attr-defined]
    # drop near-greys, which vanish on a CT background
    return [c for c in colors if max(c) - min(c) > 0.12]


def class_color(class_id: int) -> tuple[float, float, float]:
    """A fixed qualitative RGB colour (0..1) for a label value, the same in every figure and mesh."""
    palette = _palette()
    return palette[(int(class_id) - 1) % len(palette)]


def class_colors(class_ids: Iterable[int]) -> dict[int, tuple[float, float, float]]:
    """``{class_id: rgb}`` for several label values (see :func:`class_color`)."""
    palette = _palette()
    return {int(c): palette[(int(c) - 1) % len(palette)] for c in class_ids}


def to_hex(rgb: tuple[float, float, float]) -> str:
    """``(r, g, b)`` in 0..1 -> ``"#rrggbb"``."""
    return "#" + "".join(f"{int(round(255 * v)):02x}" for v in rgb)

"""Shared helpers of the report figures: Agg figures, atomic PNG writing, class colours.

Figures are built as :class:`matplotlib.figure.Figure` objects on an explicit Agg canvas, never
through ``pyplot``: no global backend switch, no figure registry to leak memory in long runs, and
it works on machines without a display.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["new_figure", "save_png", "class_color", "class_colors", "size_for_rows", "to_hex", "srgb_to_lab"]

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


def srgb_to_lab(rgb) -> np.ndarray:
    """CIELAB (D65) coordinates ``(N, 3)`` of sRGB colours ``(N, 3)`` in 0..1 (the standard sRGB -> XYZ -> Lab formulas)."""
    rgb = np.clip(np.asarray(rgb, dtype=float).reshape(-1, 3), 0.0, 1.0)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE
    delta = 6 / 29
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]])
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
PALETTE_SIZE = 256
_FIRST_COLOR = (0.9, 0.1, 0.1)  # label 1 is red, as in ITK-SNAP and 3D Slicer


@lru_cache(maxsize=1)
def _palette() -> tuple[tuple[float, float, float], ...]:
    """``PALETTE_SIZE`` colours, each as far as possible in CIELAB from all the colours before it.

    Greedy max-min selection (the Glasbey et al. 2007 idea) over a 24-level sRGB grid,
    restricted to lightness 35..90 and chroma >= 20: greys and near-black/near-white vanish on a
    CT background or a white page. Colour ``k`` is the candidate whose smallest CIE76 distance to
    colours ``0..k-1`` is largest, so label ``k`` differs from label ``k - 1`` at least as much
    as any two of the first ``k + 1`` labels differ; for 120 labels every pair is at least
    ~17 Delta E apart (2.3 is the just-noticeable difference). Deterministic: no random draw.
    """
    levels = np.linspace(0.0, 1.0, 24)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = srgb_to_lab(grid)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    keep = (lab[:, 0] >= 35) & (lab[:, 0] <= 90) & (chroma >= 20)
    grid, lab = grid[keep], lab[keep]
    pick = int(np.argmin(((grid - np.asarray(_FIRST_COLOR)) ** 2).sum(axis=1)))
    chosen = [pick]
    nearest = np.linalg.norm(lab - lab[pick], axis=1)
    while len(chosen) < PALETTE_SIZE:
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[pick], axis=1))
    return tuple(tuple(float(v) for v in grid[i]) for i in chosen)  # type: ignore[misc]


def class_color(class_id: int) -> tuple[float, float, float]:
    """A fixed RGB colour (0..1) for a label value, the same in every figure and mesh.

    Label ``v`` takes colour ``v - 1`` of a greedy max-min CIELAB palette (see ``_palette``), so
    neighbouring label values, which are often neighbouring organs, get clearly different colours
    for up to 256 labels (then the palette repeats).
    """
    palette = _palette()
    return palette[(int(class_id) - 1) % len(palette)]


def class_colors(class_ids: Iterable[int]) -> dict[int, tuple[float, float, float]]:
    """``{class_id: rgb}`` for several label values (see :func:`class_color`)."""
    return {int(c): class_color(c) for c in class_ids}


def to_hex(rgb: tuple[float, float, float]) -> str:
    """``(r, g, b)`` in 0..1 -> ``"#rrggbb"``."""
    return "#" + "".join(f"{int(round(255 * v)):02x}" for v in rgb)

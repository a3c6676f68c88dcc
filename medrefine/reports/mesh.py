"""Interactive 3D surface meshes of a label volume: marching cubes per structure, one plotly page.

The HTML file carries plotly.js inline (about 4.5 MB), so it opens offline and on machines
without internet access; rotate, zoom, and click legend entries to hide structures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medrefine.reports._render import class_colors, to_hex

__all__ = ["mesh_html", "label_meshes"]

logger = logging.getLogger(__name__)

# above this many voxels per structure's bounding box, marching cubes steps over voxels
_FULL_RES_VOXELS = 96**3


def _auto_step(box_voxels: int) -> int:
    return max(1, int(np.ceil((box_voxels / _FULL_RES_VOXELS) ** (1 / 3))))


def label_meshes(label: np.ndarray, *, spacing: Sequence[float], step_size: int | None = None,
                 class_ids: Sequence[int] | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Triangle surfaces of each structure of a label volume, in millimetres.

    Each structure is cropped to its bounding box, padded with one background voxel (closed
    surfaces at the volume border) and meshed with :func:`skimage.measure.marching_cubes` at
    level 0.5 with the voxel ``spacing``.

    Args:
        label: integer label array ``(X, Y, Z)``; 0 is background.
        spacing: voxel size in mm ``(sx, sy, sz)``.
        step_size: marching-cubes step in voxels (coarser, smaller meshes); default 1, or larger
            for structures whose bounding box exceeds 96^3 voxels.
        class_ids: structures to mesh (default every non-zero value present).

    Returns:
        ``{class_id: (vertices (V, 3) float mm, faces (F, 3) int)}``; structures too small to
        mesh are left out (logged).
    """
    from skimage.measure import marching_cubes

    ids = sorted(int(c) for c in np.unique(label) if c != 0) if class_ids is None else [int(c) for c in class_ids]
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    sp = np.asarray(spacing, dtype=float)
    for c in ids:
        mask = label == c
        if not mask.any():
            continue
        nz = np.nonzero(mask)
        lo = np.array([a.min() for a in nz])
        hi = np.array([a.max() for a in nz]) + 1
        box = np.pad(mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], 1).astype(np.float32)
        step = step_size or _auto_step(box.size)
        try:
            verts, faces, _, _ = marching_cubes(box, level=0.5, spacing=tuple(sp), step_size=step, allow_degenerate=False)
        except (RuntimeError, ValueError) as err:
            if step == 1:
                logger.warning("class %d: cannot build a surface (%s); left out of the mesh", c, err)
                continue
            verts, faces, _, _ = marching_cubes(box, level=0.5, spacing=tuple(sp), step_size=1, allow_degenerate=False)
        verts = verts + (lo - 1) * sp
        out[c] = (verts.astype(np.float32), faces.astype(np.int32))
    return out


def mesh_html(label, out: str | Path, *, spacing: Sequence[float] | None, classes: Mapping[int, str] | None = None,
              step_size: int | None = None, opacity: float = 0.6, title: str | None = None) -> Path:
    """Write an interactive 3D view of a label volume: one plotly ``Mesh3d`` trace per structure.

    Args:
        label: integer label volume ``(X, Y, Z)`` (array or :class:`~medrefine.io.Volume`).
        out: HTML path to write (plotly.js is embedded; the file works offline).
        spacing: voxel size in mm ``(sx, sy, sz)``; ``None`` takes it from a Volume.
        classes: label value -> structure name for the trace names (default ``class_<v>``).
        step_size: marching-cubes step (see :func:`label_meshes`); default automatic.
        opacity: surface opacity in (0, 1].
        title: page title.

    Returns:
        ``out``.

    Raises:
        ValueError: the label is not 3D or holds no structure, bad ``spacing``/``opacity``.
        TypeError: ``label`` is not an array or Volume.

    Example:
        >>> mesh_html(label, "mesh_case_000.html", spacing=(1.0, 1.0, 2.5), classes={1: "liver"})  # doctest: +SKIP
    """
    import plotly.graph_objects as go

    from medrefine.io import atomic_write

    if hasattr(label, "array") and hasattr(label, "affine"):
        spacing = spacing if spacing is not None else label.spacing
        label = np.asarray(label.array)
    if not isinstance(label, np.ndarray):
        raise TypeError(f"`label` must be a numpy array or a Volume, got {type(label).__name__}")
    if label.ndim != 3:
        raise ValueError(f"`label` must be 3D (X, Y, Z), got shape {label.shape}")
    if spacing is None:
        raise ValueError("`spacing` is required for an array label (voxel size in mm, 3 values), got None")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"`spacing` must have 3 positive values, got {spacing}")
    if not 0 < opacity <= 1:
        raise ValueError(f"`opacity` must be in (0, 1], got {opacity}")
    if step_size is not None and step_size < 1:
        raise ValueError(f"`step_size` must be >= 1, got {step_size}")
    meshes = label_meshes(label, spacing=spacing, step_size=step_size)
    if not meshes:
        raise ValueError(f"`label` holds no structure to mesh (values {np.unique(label)[:10].tolist()})")
    names = {int(k): str(v) for k, v in (classes or {}).items()}
    colors = class_colors(meshes)
    traces = []
    for c, (verts, faces) in meshes.items():
        traces.append(go.Mesh3d(
            x=verts[:, 0], y=verts[:, 1], z=verts[:, 2], i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
            name=f"{c} {names.get(c, f'class_{c}')}", color=to_hex(colors[c]), opacity=opacity,
            showlegend=True, flatshading=False, hoverinfo="name",
            lighting=dict(ambient=0.45, diffuse=0.8, specular=0.15, roughness=0.6),
        ))
    fig = go.Figure(traces)
    fig.update_layout(
        title=title or "3D surfaces",
        scene=dict(aspectmode="data", xaxis_title="x (mm)", yaxis_title="y (mm)", zaxis_title="z (mm)"),
        legend=dict(itemsizing="constant"),
        margin=dict(l=0, r=0, t=40, b=0),
        template="plotly_white",
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True)
    logger.info("wrote %d surfaces to %s", len(traces), out)
    return out

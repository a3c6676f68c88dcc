"""Interactive 3D surface meshes of label volumes: marching cubes per structure, one plotly figure.

Surfaces sit in scanner coordinates: marching cubes runs in voxel indices and the image's affine
maps the vertices to millimetres (RAS+ for a :class:`~medrefine.io.Volume`, whatever the file
format), so the view matches ITK-SNAP / 3D Slicer and the axes carry orientation labels.
Several labellings of one case (reference, input, result) become toggleable layers: the result
opaque, the others translucent, a legend group per layer and buttons for the usual pairs.

plotly.js is embedded (about 4.8 MB, once per page), so the pages open offline; there is no CDN.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medrefine.reports._render import class_colors, to_hex

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["mesh_html", "mesh_figure", "label_meshes", "axis_titles"]

logger = logging.getLogger(__name__)

# above this many voxels per structure's bounding box, marching cubes steps over voxels
_FULL_RES_VOXELS = 96**3
# above this many voxels in all the bounding boxes of a figure, every structure steps coarser
_FIGURE_VOXELS = 3 * 96**3
# above this many triangles in a figure (about 16 bytes each in the page), it is meshed again coarser
_MAX_FACES = 150_000
# where each axis of a space points: (negative end, positive end)
_DIRECTIONS = {"RAS": (("L", "R"), ("P", "A"), ("I", "S")), "LPS": (("R", "L"), ("A", "P"), ("I", "S"))}


def _auto_step(box_voxels: int, budget: int = _FULL_RES_VOXELS) -> int:
    return max(1, int(np.ceil((box_voxels / budget) ** (1 / 3))))


def _boxes(label: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{value: (lowest index, highest index + 1)}`` of every positive label value, in one pass."""
    from scipy.ndimage import find_objects

    values = np.asarray(label)
    if not np.issubdtype(values.dtype, np.integer):
        values = np.rint(values).astype(np.int64)
    values = np.where(values > 0, values, 0)
    return {c + 1: (np.array([s.start for s in box]), np.array([s.stop for s in box]))
            for c, box in enumerate(find_objects(values)) if box is not None}


def _check_affine(affine) -> np.ndarray:
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"`affine` must be an invertible 4x4 voxel-to-world matrix, got {affine.tolist() if affine.size <= 16 else affine.shape}")
    return affine


def _spacing_affine(spacing) -> np.ndarray:
    if spacing is None:
        raise ValueError("`spacing` is required for an array label (voxel size in mm, 3 values), got None")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"`spacing` must have 3 positive values, got {spacing}")
    return np.diag([*spacing, 1.0])


def label_meshes(label: np.ndarray, *, spacing: Sequence[float] | None = None, affine: np.ndarray | None = None,
                 step_size: int | None = None, min_step: int = 1, class_ids: Sequence[int] | None = None
                 ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Triangle surfaces of each structure of a label volume, in millimetres.

    Each structure is cropped to its bounding box, padded with one background voxel (closed
    surfaces at the volume border) and meshed with :func:`skimage.measure.marching_cubes` at
    level 0.5 in voxel indices; the vertices are then mapped by ``affine`` (scanner
    coordinates), or scaled by ``spacing`` (mm along the array axes, origin at voxel 0).

    Args:
        label: integer label array ``(X, Y, Z)``; 0 is background.
        spacing: voxel size in mm ``(sx, sy, sz)``; used when ``affine`` is None.
        affine: ``(4, 4)`` voxel-to-world matrix; vertices come out in its world space. Triangles
            of a mirroring affine (negative determinant) are rewound so normals still point out.
        step_size: marching-cubes step in voxels (coarser, smaller meshes); default 1, or larger
            for structures whose bounding box exceeds 96^3 voxels.
        min_step: smallest automatic step (a figure-wide size budget, see :func:`mesh_figure`).
        class_ids: structures to mesh (default every non-zero value present).

    Returns:
        ``{class_id: (vertices (V, 3) float mm, faces (F, 3) int)}``; structures too small to
        mesh are left out (logged).

    Raises:
        ValueError: neither a valid ``affine`` nor ``spacing``.
    """
    from skimage.measure import marching_cubes

    matrix = _check_affine(affine) if affine is not None else _spacing_affine(spacing)
    mirrored = np.linalg.det(matrix[:3, :3]) < 0
    boxes = _boxes(label)
    ids = sorted(boxes) if class_ids is None else [int(c) for c in class_ids if int(c) in boxes]
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for c in ids:
        lo, hi = boxes[c]
        box = np.pad(label[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == c, 1).astype(np.float32)
        step = step_size or max(int(min_step), _auto_step(box.size))
        try:
            verts, faces, _, _ = marching_cubes(box, level=0.5, step_size=step, allow_degenerate=False)
        except (RuntimeError, ValueError) as err:
            if step == 1:
                logger.warning("class %d: cannot build a surface (%s); left out of the mesh", c, err)
                continue
            verts, faces, _, _ = marching_cubes(box, level=0.5, step_size=1, allow_degenerate=False)
        index = verts + (lo - 1)
        world = index @ matrix[:3, :3].T + matrix[:3, 3]
        if mirrored:
            faces = faces[:, [0, 2, 1]]
        out[c] = (world.astype(np.float32), faces.astype(np.int32))
    return out


def axis_titles(space: str | None) -> tuple[str, str, str]:
    """Axis titles with the patient directions, e.g. ``"x (mm)  L → R"`` for RAS+; plain for ``None``."""
    if space is None:
        return ("axis 0 (mm)", "axis 1 (mm)", "axis 2 (mm)")
    if space not in _DIRECTIONS:
        raise ValueError(f"`space` must be one of {sorted(_DIRECTIONS)} or None, got {space!r}")
    return tuple(f"{name} (mm)  {lo} → {hi}" for name, (lo, hi) in zip("xyz", _DIRECTIONS[space]))  # type: ignore[return-value]


def _as_label(data, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    if hasattr(data, "array") and hasattr(data, "affine"):
        array, affine = np.asarray(data.array), np.asarray(data.affine, dtype=float)
    elif isinstance(data, np.ndarray):
        array, affine = data, None
    else:
        raise TypeError(f"`{name}` must be a numpy array or a Volume, got {type(data).__name__}")
    if array.ndim != 3:
        raise ValueError(f"`{name}` must be 3D (X, Y, Z), got shape {array.shape}")
    return array, affine


def mesh_figure(layers: Mapping[str, object], *, affine: np.ndarray | None = None, spacing: Sequence[float] | None = None,
                space: str | None = "RAS", classes: Mapping[int, str] | None = None,
                opacity: Mapping[str, float] | None = None, hidden: Sequence[str] = (), step_size: int | None = None,
                title: str | None = None) -> go.Figure:
    """A plotly figure of the surfaces of one or more labellings of the same grid.

    Every (layer, structure) is one ``Mesh3d`` trace named after the structure, grouped in the
    legend under the layer's name (click an entry to hide one surface). The last layer is the
    result: opaque; earlier layers (reference, input) are translucent. With three layers or more,
    buttons show two layers at a time or all of them. The axes carry the patient directions and
    the scene the letters R/L, A/P, S/I at the sides of the surfaces' bounding box.

    Args:
        layers: ordered mapping ``layer name -> label array or Volume``, all of the same shape;
            the result last (e.g. ``{"reference": ref, "input": noisy, "refined": refined}``).
        affine: voxel-to-world matrix of the grid; default the first Volume's (RAS+).
        spacing: voxel size in mm when there is no affine (the axes then say "axis 0 (mm)",
            not a patient direction).
        space: world space of ``affine``: ``"RAS"`` (every Volume, every NIfTI) or ``"LPS"``.
        classes: label value -> structure name (default ``class_<v>``).
        opacity: layer name -> opacity in (0, 1]; default 1 for the last layer, 0.3 for the
            first of several, 0.5 between.
        hidden: layers shown only as (greyed) legend entries at first.
        step_size: marching-cubes step; default automatic: coarser for structures over 96^3
            voxels, for figures over 3 x 96^3 voxels of bounding boxes, and until the figure has at
            most 150,000 triangles (about 2.4 MB of page).
        title: figure title.

    Returns:
        The :class:`plotly.graph_objects.Figure`.

    Raises:
        ValueError: no layer, layers of different shapes, nothing to mesh, bad affine/spacing/opacity.
        TypeError: a layer is not an array or Volume.
    """
    import plotly.graph_objects as go

    if not layers:
        raise ValueError("`layers` must name at least one label volume, got none")
    arrays: dict[str, np.ndarray] = {}
    for layer_name, data in layers.items():
        arrays[str(layer_name)], own = _as_label(data, "label" if len(layers) == 1 else f"layers[{layer_name!r}]")
        if affine is None and own is not None:
            affine = own
    shapes = {n: a.shape for n, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"`layers` must share one grid (resample first), got shapes {shapes}")
    matrix = _check_affine(affine) if affine is not None else _spacing_affine(spacing)
    space = space if affine is not None else None
    names = list(arrays)
    default = {n: 1.0 if n == names[-1] else 0.3 if n == names[0] else 0.5 for n in names}
    opacity = {**default, **{str(k): float(v) for k, v in (opacity or {}).items()}}
    for layer_name, value in opacity.items():
        if not 0 < value <= 1:
            raise ValueError(f"`opacity` of layer {layer_name!r} must be in (0, 1], got {value}")
    unknown = [h for h in hidden if h not in arrays]
    if unknown:
        raise ValueError(f"`hidden` names unknown layer(s) {unknown}; layers are {names}")

    voxels = sum(int(np.prod(hi - lo + 2)) for a in arrays.values() for lo, hi in _boxes(a).values())
    min_step = _auto_step(voxels, _FIGURE_VOXELS)
    while True:
        meshes = {n: label_meshes(a, affine=matrix, step_size=step_size, min_step=min_step) for n, a in arrays.items()}
        faces = sum(len(f) for m in meshes.values() for _, f in m.values())
        if faces <= _MAX_FACES or step_size is not None or min_step >= 16:
            break
        # triangles fall with the square of the step
        min_step = max(min_step + 1, int(np.ceil(min_step * np.sqrt(faces / _MAX_FACES))))
        logger.info("%d triangles exceed %d; meshing again with step %d", faces, _MAX_FACES, min_step)
    if not any(meshes.values()):
        values = np.unique(np.concatenate([np.unique(a) for a in arrays.values()]))
        raise ValueError(f"`label` holds no structure to mesh (values {values[:10].tolist()})")
    labels = {int(k): str(v) for k, v in (classes or {}).items()}
    colors = class_colors({c for m in meshes.values() for c in m})
    grouped = len(arrays) > 1
    traces, owner = [], []
    for layer_name, per_class in meshes.items():
        for c, (verts, faces) in per_class.items():
            structure = f"{c} {labels.get(c, f'class_{c}')}"
            faces = faces.astype(np.uint16) if len(verts) <= np.iinfo(np.uint16).max else faces  # half the bytes
            traces.append(go.Mesh3d(
                x=verts[:, 0], y=verts[:, 1], z=verts[:, 2], i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
                name=structure, color=to_hex(colors[c]), opacity=opacity[layer_name], showlegend=True,
                legendgroup=layer_name if grouped else None, legendgrouptitle_text=layer_name if grouped else None,
                hovertext=f"{layer_name}: {structure}" if grouped else structure, hoverinfo="text",
                visible="legendonly" if layer_name in hidden else True, flatshading=False,
                lighting=dict(ambient=0.45, diffuse=0.8, specular=0.15, roughness=0.6),
            ))
            owner.append(layer_name)
    fig = go.Figure(traces)
    titles = axis_titles(space)
    fig.update_layout(
        title=dict(text=title or "3D surfaces", y=0.99, yanchor="top", x=0.01, xanchor="left"),
        scene=dict(aspectmode="data", xaxis_title=titles[0], yaxis_title=titles[1], zaxis_title=titles[2],
                   annotations=_direction_letters(meshes, space), camera=dict(eye=dict(x=0.6, y=1.8, z=0.6))),
        legend=dict(itemsizing="constant", groupclick="toggleitem"),
        margin=dict(l=0, r=0, t=40 if len(names) < 3 else 80, b=0),
        template="plotly_white",
    )
    if len(names) >= 3:
        fig.update_layout(updatemenus=[dict(type="buttons", direction="right", x=0.0, xanchor="left", y=1.0, yanchor="bottom", pad=dict(b=4),
                                            buttons=_layer_buttons(names, owner))])
    return fig


def _direction_letters(meshes: Mapping[str, Mapping[int, tuple[np.ndarray, np.ndarray]]], space: str | None) -> list[dict]:
    """Scene annotations R/L, A/P, S/I just outside the middle of each side of the surfaces' box."""
    if space is None:
        return []
    points = np.concatenate([v for m in meshes.values() for v, _ in m.values()])
    lo, hi = points.min(0), points.max(0)
    centre, margin = (lo + hi) / 2, 0.08 * (hi - lo).max()
    notes = []
    for axis, (negative, positive) in enumerate(_DIRECTIONS[space]):
        for letter, value in ((negative, lo[axis] - margin), (positive, hi[axis] + margin)):
            xyz = centre.copy()
            xyz[axis] = value
            notes.append(dict(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]), text=f"<b>{letter}</b>", showarrow=False,
                              font=dict(size=16, color="#333")))
    return notes


def _layer_buttons(names: list[str], owner: list[str]) -> list[dict]:
    """Buttons showing the result with each other layer, the other layers together, and all layers."""
    result, others = names[-1], names[:-1]
    views = [(f"{result} vs {o}", {result, o}) for o in others]
    if len(others) == 2:
        views.append((f"{others[1]} vs {others[0]}", set(others)))
    views.append(("all", set(names)))
    return [dict(label=label, method="restyle", args=[{"visible": [True if o in shown else "legendonly" for o in owner]}])
            for label, shown in views]


def mesh_html(label, out: str | Path, *, spacing: Sequence[float] | None = None, affine: np.ndarray | None = None,
              space: str | None = "RAS", classes: Mapping[int, str] | None = None, step_size: int | None = None,
              opacity: float = 0.6, title: str | None = None) -> Path:
    """Write an interactive 3D page of a label volume: one plotly ``Mesh3d`` trace per structure.

    Args:
        label: integer label volume ``(X, Y, Z)`` (array or :class:`~medrefine.io.Volume`; a
            Volume is drawn in its RAS+ scanner coordinates), or an ordered mapping of layers
            (see :func:`mesh_figure`, whose opacities then apply).
        out: HTML path to write (plotly.js is embedded; the file works offline).
        spacing: voxel size in mm ``(sx, sy, sz)`` of an array without ``affine``.
        affine: voxel-to-world matrix of an array (scanner coordinates).
        space: world space of the affine, ``"RAS"`` or ``"LPS"``.
        classes: label value -> structure name for the trace names (default ``class_<v>``).
        step_size: marching-cubes step (see :func:`label_meshes`); default automatic.
        opacity: surface opacity in (0, 1] of a single label.
        title: page title.

    Returns:
        ``out``.

    Raises:
        ValueError: the label is not 3D or holds no structure, bad ``spacing``/``affine``/``opacity``.
        TypeError: ``label`` is not an array or Volume.

    Example:
        >>> mesh_html(volume, "mesh_case_000.html", classes={1: "liver"})  # doctest: +SKIP
    """
    from medrefine.io import atomic_write

    if not 0 < opacity <= 1:
        raise ValueError(f"`opacity` must be in (0, 1], got {opacity}")
    layers = dict(label) if isinstance(label, Mapping) else {"label": label}
    fig = mesh_figure(layers, affine=affine, spacing=spacing, space=space, classes=classes,
                      opacity=None if isinstance(label, Mapping) else {"label": opacity},
                      step_size=step_size, title=title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True)
    logger.info("wrote %d surfaces to %s", len(fig.data), out)
    return out

"""2D overlays: an image with label contours on three orthogonal slices, several labels side by side.

Views follow the array axes ``(i, j, k)`` of medrefine's RAS+ convention: *axial* is the plane
``k = const`` (i across, j up), *coronal* ``j = const`` (i across, k up), *sagittal*
``i = const`` (j across, k up). Each panel is drawn in millimetres (the voxel spacing sets the
aspect), so anisotropic CT does not look squashed. Reorient a volume to RAS first (as
:func:`medrefine.reports.write_report` does) for anatomically labelled views.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medrefine.reports._render import class_colors, new_figure, save_png

__all__ = ["overlay_png", "choose_slices", "reorient_to_ras"]

logger = logging.getLogger(__name__)

_VIEWS = ("axial", "coronal", "sagittal")
_SLICE_MODES = ("center", "largest")
PANEL_INCHES = 3.4


def reorient_to_ras(array: np.ndarray, affine: np.ndarray, spacing: Sequence[float] | None = None
                    ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Reorder and flip the axes of ``array`` to the closest RAS+ orientation of ``affine``.

    Args:
        array: volume ``(X, Y, Z)``.
        affine: its ``(4, 4)`` voxel-to-world matrix.
        spacing: voxel size along the input axes (default: from ``affine``).

    Returns:
        ``(array in RAS axis order, spacing along the new axes)``.
    """
    from nibabel.orientations import apply_orientation, io_orientation

    affine = np.asarray(affine, dtype=float)
    if spacing is None:
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
    ornt = io_orientation(affine)
    out = apply_orientation(array, ornt)
    new_spacing = [0.0, 0.0, 0.0]
    for axis, (target, _flip) in enumerate(ornt):
        new_spacing[int(target)] = float(spacing[axis])
    return np.ascontiguousarray(out), tuple(new_spacing)  # type: ignore[return-value]


def _as_array(data, name: str) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Accept an array or a :class:`~medrefine.io.Volume` (reoriented to RAS); return it and its spacing."""
    if hasattr(data, "array") and hasattr(data, "affine"):
        if np.asarray(data.array).ndim != 3:
            raise ValueError(f"`{name}` must be 3D (X, Y, Z), got shape {np.asarray(data.array).shape}")
        return reorient_to_ras(np.asarray(data.array), data.affine, data.spacing)
    if not isinstance(data, np.ndarray):
        raise TypeError(f"`{name}` must be a numpy array or a Volume, got {type(data).__name__}")
    return data, None


def choose_slices(label: np.ndarray, *, mode: str = "center") -> tuple[int, int, int]:
    """Indices ``(i, j, k)`` of the three orthogonal slices to show for a label volume.

    Args:
        label: integer label array ``(X, Y, Z)``; foreground is ``label > 0``.
        mode: ``"center"``: through the foreground's centre of mass (moved to the nearest slice
            holding foreground when the centre falls in a hole); ``"largest"``: for each axis the
            slice with the most foreground voxels. An empty label gives the volume centre.

    Returns:
        ``(i, j, k)``.

    Raises:
        ValueError: unknown ``mode`` or a label that is not 3D.
    """
    from medrefine.errors import did_you_mean

    if mode not in _SLICE_MODES:
        raise ValueError(f"`slices` must be one of {_SLICE_MODES} or three indices, got {mode!r}.{did_you_mean(mode, _SLICE_MODES)}")
    if label.ndim != 3:
        raise ValueError(f"`label` must be 3D (X, Y, Z), got shape {label.shape}")
    fg = label > 0
    if not fg.any():
        return tuple(int(s // 2) for s in label.shape)  # type: ignore[return-value]
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        counts = fg.sum(axis=other)
        if mode == "largest":
            out.append(int(np.argmax(counts)))
            continue
        idx = np.arange(label.shape[axis])
        center = int(round(float((counts * idx).sum() / counts.sum())))
        filled = np.flatnonzero(counts)
        out.append(center if counts[center] else int(filled[np.argmin(np.abs(filled - center))]))
    return tuple(out)  # type: ignore[return-value]


def _take(volume: np.ndarray, view: str, index: tuple[int, int, int]) -> np.ndarray:
    """The 2D slice of ``view``, transposed so rows run along the vertical display axis."""
    i, j, k = index
    if view == "axial":
        return volume[:, :, k].T
    if view == "coronal":
        return volume[:, j, :].T
    return volume[i, :, :].T


def _extent(shape: tuple[int, int, int], spacing: Sequence[float], view: str) -> tuple[float, float, float, float]:
    axes = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}[view]
    return (0.0, shape[axes[0]] * spacing[axes[0]], 0.0, shape[axes[1]] * spacing[axes[1]])


def _window(image: np.ndarray, window: tuple[float, float] | None) -> tuple[float, float]:
    if window is not None:
        return float(window[0]), float(window[1])
    sample = image[:: max(1, image.shape[0] // 64), :: max(1, image.shape[1] // 64), :]
    low, high = np.percentile(sample, [1.0, 99.5])
    return float(low), float(high if high > low else low + 1.0)


def overlay_png(image, labels, out: str | Path, *, titles: Sequence[str] | None = None, classes: Mapping[int, str] | None = None,
                spacing: Sequence[float] | None = None, slices: Sequence[int] | str = "center", window: tuple[float, float] | None = None,
                fill_alpha: float = 0.25, radiological: bool = True, title: str | None = None) -> Path:
    """Draw label contours over an image on three orthogonal slices and write a PNG.

    With one label the figure is one row: axial | coronal | sagittal. With several labels (e.g.
    reference | noisy | refined) they stand side by side as columns, one row per view, all
    through the same slices so the columns compare like with like. Panels keep the physical
    aspect ratio given by ``spacing`` and carry orientation letters (R/L, A/P, S/I).

    Arrays are taken to be in RAS+ axis order (medrefine's convention); a
    :class:`~medrefine.io.Volume` is reoriented to it from its affine first.

    Args:
        image: intensity volume ``(X, Y, Z)`` (array or :class:`~medrefine.io.Volume`), shown in
            grey with a percentile window (1st to 99.5th); ``None`` for a black background.
        labels: an integer label volume ``(X, Y, Z)`` or a sequence of them (same shape as
            ``image``).
        out: PNG path to write.
        titles: one title per label (default ``"label 1"``, ...; ``"label"`` for one).
        classes: label value -> structure name for the legend (default ``class_<v>``).
        spacing: voxel size in mm ``(sx, sy, sz)``; default the Volume's, else 1 mm.
        slices: ``"center"`` (through the first label's foreground centre of mass),
            ``"largest"`` (most foreground per axis), or explicit indices ``(i, j, k)``.
        window: intensity range ``(low, high)`` shown from black to white; default percentiles.
        fill_alpha: opacity of the filled label colours under the contours (0 for contours only).
        radiological: show the patient's right on the viewer's left in axial and coronal views
            (the CT reading convention); ``False`` for the neurological convention.
        title: figure title.

    Returns:
        ``out``.

    Raises:
        ValueError: shapes differ or are not 3D, the number of titles does not match, bad
            ``spacing`` or ``slices``.
        TypeError: an input is not an array or Volume.

    Example:
        >>> overlay_png(ct, [ref, noisy, refined], "case_000.png", titles=["reference", "noisy", "refined"],
        ...             classes={1: "myocardium"}, spacing=(1.0, 1.0, 2.5))  # doctest: +SKIP
    """
    if isinstance(labels, (list, tuple)):
        label_list = list(labels)
    else:
        label_list = [labels]
    if not label_list:
        raise ValueError("`labels` must hold at least one label volume, got an empty sequence")
    arrays = []
    vol_spacing = None
    for n, lab in enumerate(label_list):
        arr, sp = _as_array(lab, f"labels[{n}]")
        vol_spacing = vol_spacing or sp
        if arr.ndim != 3:
            raise ValueError(f"`labels[{n}]` must be 3D (X, Y, Z), got shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
            if not np.all(np.equal(np.mod(arr, 1), 0)):
                raise ValueError(f"`labels[{n}]` must hold integer label values, got dtype {arr.dtype} with fractions")
        arrays.append(np.asarray(arr).astype(np.int64, copy=False))
    shape = arrays[0].shape
    for n, arr in enumerate(arrays[1:], start=1):
        if arr.shape != shape:
            raise ValueError(f"`labels[{n}]` must have the shape of `labels[0]` {shape}, got {arr.shape}")
    img = None
    if image is not None:
        img, sp = _as_array(image, "image")
        vol_spacing = sp or vol_spacing
        if img.shape != shape:
            raise ValueError(f"`image` must have the labels' shape {shape}, got {img.shape}")
        img = np.asarray(img, dtype=np.float32)
    spacing = tuple(float(s) for s in (spacing if spacing is not None else vol_spacing or (1.0, 1.0, 1.0)))
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"`spacing` must have 3 positive values, got {spacing}")
    if titles is None:
        titles = ["label"] if len(arrays) == 1 else [f"label {n + 1}" for n in range(len(arrays))]
    titles = [str(t) for t in titles]
    if len(titles) != len(arrays):
        raise ValueError(f"`titles` must have one entry per label ({len(arrays)}), got {len(titles)}")
    if isinstance(slices, str):
        index = choose_slices(arrays[0] if arrays[0].any() else np.maximum.reduce(arrays), mode=slices)
    else:
        index = tuple(int(s) for s in slices)
        if len(index) != 3 or any(not 0 <= s < n for s, n in zip(index, shape)):
            raise ValueError(f"`slices` must be three indices inside the shape {shape}, got {tuple(slices)}")
    if not 0 <= fill_alpha <= 1:
        raise ValueError(f"`fill_alpha` must be in [0, 1], got {fill_alpha}")

    low, high = _window(img, window) if img is not None else (0.0, 1.0)
    present = sorted(set().union(*[set(np.unique(_take(a, v, index)).tolist()) for a in arrays for v in _VIEWS]) - {0})
    colors = class_colors(present)
    names = {int(k): str(v) for k, v in (classes or {}).items()}

    # layout in inches: panels keep their physical aspect ratio
    single = len(arrays) == 1
    extents = {v: _extent(shape, spacing, v) for v in _VIEWS}
    aspect = {v: extents[v][3] / extents[v][1] for v in _VIEWS}  # height / width
    if single:
        nrows, ncols = 1, 3
        # widths follow the square root of each panel's width/height ratio: a flat coronal view
        # of a thin slab gets more room than the axial one, but does not squeeze it to a stamp
        weights = np.array([(1 / aspect[v]) ** 0.5 for v in _VIEWS])
        widths = list(3 * PANEL_INCHES * weights / weights.sum())
        heights = [float(np.clip(max(w * aspect[v] for w, v in zip(widths, _VIEWS)), 0.8, 2 * PANEL_INCHES))]
        left, top, wgap, hgap = 0.1, 0.8 if title or titles[0] else 0.35, 0.15, 0.0
    else:
        nrows, ncols = 3, len(arrays)
        widths = [PANEL_INCHES] * ncols
        heights = [float(np.clip(PANEL_INCHES * aspect[v], 0.15 * PANEL_INCHES, 1.8 * PANEL_INCHES)) for v in _VIEWS]
        left, top, wgap, hgap = 0.45, 0.75 if title else 0.4, 0.1, 0.12
    right = 0.1
    fig_w = left + right + sum(widths) + wgap * (ncols - 1)
    legend_cols = max(1, min(len(present), int(fig_w // 1.9)))
    legend_rows = int(np.ceil(len(present) / legend_cols)) if present else 0
    bottom = 0.19 * legend_rows + 0.2
    fig_h = top + bottom + sum(heights) + hgap * (nrows - 1)
    fig = new_figure(fig_w, fig_h)
    fig.patch.set_facecolor("white")
    grid = fig.add_gridspec(nrows, ncols, width_ratios=widths, height_ratios=heights,
                            left=left / fig_w, right=1 - right / fig_w, top=1 - top / fig_h, bottom=bottom / fig_h,
                            wspace=wgap / float(np.mean(widths)), hspace=hgap / float(np.mean(heights)))
    letters = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("P", "A", "S", "I")}
    for col, (arr, name) in enumerate(zip(arrays, titles)):
        for v, view in enumerate(_VIEWS):
            row, column = (0, v) if single else (v, col)
            ax = fig.add_subplot(grid[row, column])
            extent = extents[view]
            lab2d = _take(arr, view, index)
            if img is not None:
                ax.imshow(_take(img, view, index), cmap="gray", vmin=low, vmax=high, origin="lower", extent=extent, interpolation="bilinear")
            else:
                ax.imshow(np.zeros_like(lab2d, dtype=float), cmap="gray", vmin=0, vmax=1, origin="lower", extent=extent)
            ids = [c for c in np.unique(lab2d).tolist() if c != 0]
            if ids and fill_alpha > 0:
                rgba = np.zeros(lab2d.shape + (4,), dtype=np.float32)
                for c in ids:
                    rgba[lab2d == c] = (*colors[c], fill_alpha)
                ax.imshow(rgba, origin="lower", extent=extent, interpolation="nearest")
            if ids:
                h, w = lab2d.shape
                xs = (np.arange(w) + 0.5) * (extent[1] / w)
                ys = (np.arange(h) + 0.5) * (extent[3] / h)
                for c in ids:
                    mask = (lab2d == c).astype(np.float32)
                    if mask.shape[0] > 1 and mask.shape[1] > 1:
                        ax.contour(xs, ys, mask, levels=[0.5], colors=[colors[c]], linewidths=1.1)
            flip = radiological and view != "sagittal"
            ax.set_xlim((extent[1], extent[0]) if flip else (extent[0], extent[1]))
            ax.set_ylim(extent[2], extent[3])
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            lft, rgt, up, down = letters[view]
            if view != "sagittal" and not radiological:
                lft, rgt = rgt, lft
            style = dict(transform=ax.transAxes, color="#ffd54f", fontsize=7, fontweight="bold")
            ax.text(0.015, 0.5, lft, ha="left", va="center", **style)
            ax.text(0.985, 0.5, rgt, ha="right", va="center", **style)
            ax.text(0.5, 0.985, up, ha="center", va="top", **style)
            ax.text(0.5, 0.015, down, ha="center", va="bottom", **style)
            where = {"axial": f"k={index[2]}", "coronal": f"j={index[1]}", "sagittal": f"i={index[0]}"}[view]
            if single:
                ax.set_title(f"{view} ({where})", fontsize=9)
            else:
                if row == 0:
                    ax.set_title(name, fontsize=10, fontweight="bold")
                if column == 0:
                    ax.set_ylabel(f"{view}\n({where})", fontsize=8)
    heading = title or (titles[0] if single else "")
    if heading:
        fig.suptitle(heading, fontsize=11, y=1 - 0.1 / fig_h, va="top")
    if present:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor=colors[c], edgecolor=colors[c], label=f"{c} {names.get(c, f'class_{c}')}") for c in present]
        fig.legend(handles=handles, loc="lower center", ncol=legend_cols, fontsize=7, frameon=False,
                   handlelength=1.2, columnspacing=1.0, bbox_to_anchor=(0.5, 0.05 / fig_h))
    return save_png(fig, out)

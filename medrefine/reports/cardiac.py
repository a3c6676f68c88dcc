"""Report of the cardiac motion bundle: volume curves, shape-code PCA, a beating-heart GIF, tables.

Figures are Agg matplotlib figures written atomically (:mod:`medrefine.reports._render`); the
document is the shared :class:`~medrefine.reports.document.Document` (markdown + self-contained HTML).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medrefine.reports._render import class_color, new_figure, save_png
from medrefine.reports.document import Document

__all__ = ["code_pca_png", "motion_gif", "volume_curves_png", "write_cardiac_report"]

_STRUCTURES = {1: "left_ventricle", 2: "myocardium", 3: "right_ventricle"}


def volume_curves_png(curves: Mapping[tuple[str, str], Mapping[str, np.ndarray]], out: str | Path) -> Path:
    """LV, myocardium and RV volume over the cycle, prediction (solid) and reference (dashed), per subject."""
    fig = new_figure(11, 3.4)
    for k, (value, name) in enumerate(_STRUCTURES.items()):
        ax = fig.add_subplot(1, 3, k + 1)
        for (case, source), vol in curves.items():
            if name not in vol:
                continue
            v = np.asarray(vol[name])
            phase = np.arange(len(v)) / len(v)
            ax.plot(phase, v, "-" if source == "pred" else "--", color=class_color(value), alpha=0.8 if source == "pred" else 0.5,
                    lw=1.2)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("phase of the cycle")
        ax.set_ylabel("volume (ml)")
    fig.tight_layout()
    return save_png(fig, out)


def code_pca_png(codes: Mapping[str, Sequence[float]], out: str | Path) -> Path:
    """The subjects' shape codes projected on their first two principal components."""
    names = list(codes)
    x = np.asarray([codes[n] for n in names], dtype=np.float64)
    x = x - x.mean(axis=0)
    if len(names) > 1 and np.abs(x).max() > 0:
        _, s, vt = np.linalg.svd(x, full_matrices=False)
        comps = x @ vt[:2].T if vt.shape[0] >= 2 else np.c_[x @ vt[:1].T, np.zeros(len(names))]
        share = s**2 / max((s**2).sum(), 1e-12)
    else:
        comps, share = np.zeros((len(names), 2)), np.zeros(2)
    fig = new_figure(4.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(comps[:, 0], comps[:, 1], s=18, color=class_color(1))
    for name, (a, b) in zip(names, comps):
        ax.annotate(name, (a, b), fontsize=7)
    ax.set_xlabel(f"PC 1 ({100 * share[0]:.0f} %)" if len(share) else "PC 1")
    ax.set_ylabel(f"PC 2 ({100 * share[1]:.0f} %)" if len(share) > 1 else "PC 2")
    ax.set_title("shape codes")
    fig.tight_layout()
    return save_png(fig, out)


def motion_gif(seg: np.ndarray, out: str | Path, *, slice_index: int | None = None, duration_ms: int = 80) -> Path:
    """Animated GIF of one short-axis slice of a ``(X, Y, Z, T)`` segmentation over the cycle,
    with arrows from the end-diastolic boundary to the current one (nearest boundary point)."""
    from PIL import Image

    from medrefine.io import atomic_write

    seg = np.asarray(seg)
    z = seg.shape[2] // 2 if slice_index is None else int(slice_index)
    palette = np.array([(0, 0, 0)] + [tuple(int(255 * c) for c in class_color(v)) for v in (1, 2, 3)], dtype=np.uint8)
    frames = []
    ed = seg[:, :, z, 0]
    ed_pts = np.argwhere((ed > 0) & (np.roll(ed, 1, 0) != ed))
    for f in range(seg.shape[3]):
        fig = new_figure(3.0, 3.0)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(palette[np.clip(seg[:, :, z, f], 0, 3)].transpose(1, 0, 2), origin="lower")
        cur = seg[:, :, z, f]
        cur_pts = np.argwhere((cur > 0) & (np.roll(cur, 1, 0) != cur))
        if len(ed_pts) and len(cur_pts):
            step = max(1, len(ed_pts) // 40)
            src = ed_pts[::step]
            d = ((src[:, None, :] - cur_pts[None, :, :]) ** 2).sum(-1)
            dst = cur_pts[d.argmin(1)]
            ax.quiver(src[:, 0], src[:, 1], dst[:, 0] - src[:, 0], dst[:, 1] - src[:, 1], angles="xy",
                      scale_units="xy", scale=1, color="white", width=0.006)
        ax.set_axis_off()
        fig.canvas.draw()
        frames.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return out


def write_cardiac_report(out_dir: str | Path, metrics: Any, function: Any, curves: Mapping, codes: Mapping[str, Sequence[float]],
                         summary: Mapping[str, float], *, motion: tuple[np.ndarray, str] | None = None,
                         title: str = "Cardiac shape and motion") -> Path:
    """Write ``report.md`` and ``report.html`` (+ PNGs, GIF) into ``out_dir``; return the HTML path."""
    from medrefine.io import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = Document(title)
    doc.heading("Summary")
    doc.table(["quantity", "value"], [[k, f"{v:.4f}"] for k, v in summary.items()])
    doc.heading("Per-frame overlap (mean over subjects)")
    by_frame = metrics.groupby(["frame", "structure"])[["dice", "hd95"]].mean().reset_index()
    doc.table(["frame", "structure", "dice", "hd95 (mm)"],
              [[str(r.frame), r.structure, f"{r.dice:.3f}", f"{r.hd95:.2f}"] for r in by_frame.itertuples()])
    doc.heading("Cardiac function")
    cols = [c for c in ("lv_edv_ml", "lv_esv_ml", "lv_ef", "rv_edv_ml", "rv_esv_ml", "rv_ef", "myocardial_mass_g") if c in function]
    doc.table(["case", "source", *cols],
              [[str(r["case"]), str(r["source"]), *[f"{r[c]:.1f}" for c in cols]] for _, r in function.iterrows()])
    doc.heading("Figures")
    doc.image(volume_curves_png(curves, out / "volume_curves.png"), "volume curves: prediction (solid), reference (dashed)")
    doc.image(code_pca_png(codes, out / "codes_pca.png"), "shape codes, first two principal components")
    if motion is not None:
        gif = motion_gif(motion[0], out / f"{motion[1]}_motion.gif")
        doc.link(gif.name, f"{motion[1]}: beating segmentation (GIF)", "mid-ventricular slice, arrows from the ED boundary")
    with atomic_write(out / "report.md") as tmp:
        tmp.write_text(doc.markdown())
    with atomic_write(out / "report.html") as tmp:
        tmp.write_text(doc.html())
    return out / "report.html"

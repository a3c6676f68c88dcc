"""Tests of medrefine.reports.mesh: marching-cubes surfaces in an offline plotly page."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medrefine.reports.mesh import label_meshes, mesh_html


def plotly_traces(path) -> list[dict]:
    """The trace list passed to Plotly.newPlot in a plotly HTML file."""
    text = path.read_text()
    start = text.rindex("Plotly.newPlot(")
    start = text.index("[", start)
    traces, _ = json.JSONDecoder().raw_decode(text[start:])
    return traces


def test_one_trace_per_present_class(tmp_path, blobs):
    blob_label, _ = blobs
    lab = blob_label()
    lab[lab == 2] = 0  # class 2 absent
    out = mesh_html(lab, tmp_path / "mesh.html", spacing=(1.0, 1.0, 2.0), classes={1: "liver", 2: "kidney", 3: "aorta"})
    traces = plotly_traces(out)
    assert [t["type"] for t in traces] == ["mesh3d", "mesh3d"]
    assert [t["name"] for t in traces] == ["1 liver", "3 aorta"]
    assert all(t["opacity"] == pytest.approx(0.6) for t in traces)
    text = out.read_text()
    assert "<script src=" not in text and "cdn.plot.ly" not in text.split("Plotly.newPlot(")[-1]
    assert len(text) > 1_000_000  # plotly.js is inlined: the page works offline


def test_mesh_vertices_in_mm():
    lab = np.zeros((12, 10, 8), dtype=np.uint8)
    lab[4:8, 2:5, 1:3] = 7
    (verts, faces), = label_meshes(lab, spacing=(2.0, 1.0, 0.5)).values()
    # the 0.5 iso-surface lies half a voxel outside the voxel centres
    np.testing.assert_allclose(verts.min(0), [3.5 * 2, 1.5 * 1, 0.5 * 0.5], atol=1e-5)
    np.testing.assert_allclose(verts.max(0), [7.5 * 2, 4.5 * 1, 2.5 * 0.5], atol=1e-5)
    assert faces.shape[1] == 3 and faces.max() < len(verts)


def test_step_size_makes_smaller_meshes(blobs):
    blob_label, _ = blobs
    lab = np.zeros((40, 40, 40), np.uint8)
    lab[5:35, 8:30, 10:34] = 1
    fine = label_meshes(lab, spacing=(1, 1, 1))[1][1]
    coarse = label_meshes(lab, spacing=(1, 1, 1), step_size=3)[1][1]
    assert len(coarse) < len(fine) / 4


@pytest.mark.parametrize(
    "label, kwargs, error, message",
    [
        (np.zeros((5, 5, 5), np.uint8), dict(spacing=(1, 1, 1)), ValueError, "holds no structure"),
        (np.ones((5, 5), np.uint8), dict(spacing=(1, 1, 1)), ValueError, "must be 3D"),
        (np.ones((5, 5, 5), np.uint8), dict(spacing=(1, -1, 1)), ValueError, "3 positive values"),
        (np.ones((5, 5, 5), np.uint8), dict(spacing=None), ValueError, "`spacing` is required"),
        (np.ones((5, 5, 5), np.uint8), dict(spacing=(1, 1, 1), opacity=0), ValueError, "opacity"),
        ([[[1]]], dict(spacing=(1, 1, 1)), TypeError, "got list"),
    ],
)
def test_mesh_errors(tmp_path, label, kwargs, error, message):
    with pytest.raises(error, match=message):
        mesh_html(label, tmp_path / "m.html", **kwargs)
    assert not (tmp_path / "m.html").exists()

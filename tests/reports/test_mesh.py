"""Tests of medrefine.reports.mesh: marching-cubes surfaces in an offline plotly page."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from medrefine.io import Volume
from medrefine.reports.mesh import axis_titles, label_meshes, mesh_figure, mesh_html

# a permuted, mirrored, anisotropic affine: x = -2 j + 10, y = 1.5 k - 20, z = 3 i + 5
AFFINE = np.array([[0.0, -2.0, 0.0, 10.0], [0.0, 0.0, 1.5, -20.0], [3.0, 0.0, 0.0, 5.0], [0.0, 0.0, 0.0, 1.0]])


def plotly_call(path) -> tuple[list[dict], dict]:
    """The traces and layout passed to Plotly.newPlot in a plotly HTML file."""
    text = path.read_text()
    start = text.index("[", text.rindex("Plotly.newPlot("))
    decoder = json.JSONDecoder()
    traces, end = decoder.raw_decode(text[start:])
    layout, _ = decoder.raw_decode(text[start + end:].lstrip(" ,\n"))
    return traces, layout


def plotly_traces(path) -> list[dict]:
    return plotly_call(path)[0]


def values(field) -> np.ndarray:
    """A plotly array: a list, or plotly's ``{"dtype", "bdata"}`` base64 form."""
    if isinstance(field, dict):
        return np.frombuffer(base64.b64decode(field["bdata"]), dtype=np.dtype(field["dtype"]))
    return np.asarray(field)


def signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed triangle mesh, positive when the normals point outwards."""
    a, b, c = (verts[faces[:, n]].astype(float) for n in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6)


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


def test_vertices_in_scanner_coordinates_of_a_mirroring_affine():
    lab = np.zeros((12, 10, 8), dtype=np.uint8)
    lab[4:8, 2:5, 1:3] = 7
    (verts, faces), = label_meshes(lab, affine=AFFINE).values()
    # iso-surface in voxel indices: i 3.5..7.5, j 1.5..4.5, k 0.5..2.5, mapped by the affine
    np.testing.assert_allclose(verts.min(0), [10 - 2 * 4.5, 1.5 * 0.5 - 20, 3 * 3.5 + 5], atol=1e-4)
    np.testing.assert_allclose(verts.max(0), [10 - 2 * 1.5, 1.5 * 2.5 - 20, 3 * 7.5 + 5], atol=1e-4)
    # the affine mirrors (det -9): triangles are rewound, so the normals still point outwards
    (plain, plain_faces), = label_meshes(lab, spacing=(1, 1, 1)).values()
    reference = signed_volume(plain, plain_faces)
    assert abs(reference) > 10  # about 4 x 3 x 2 voxels
    assert signed_volume(verts, faces) == pytest.approx(9 * reference, rel=1e-4)


def test_layers_share_a_figure_with_orientation_labels(tmp_path):
    ref = np.zeros((12, 10, 8), dtype=np.uint8)
    ref[4:8, 2:5, 1:3] = 1
    ref[1:3, 6:9, 4:7] = 2
    noisy, refined = ref.copy(), ref.copy()
    noisy[4:6] = 0
    refined[ref == 2] = 0  # the refinement erased structure 2
    out = mesh_html({"reference": Volume(ref, AFFINE), "input": noisy, "refined": refined}, tmp_path / "m.html",
                    classes={1: "liver", 2: "kidney"}, title="case_a (refined)")
    traces, layout = plotly_call(out)
    assert [(t["legendgroup"], t["name"]) for t in traces] == [
        ("reference", "1 liver"), ("reference", "2 kidney"), ("input", "1 liver"), ("input", "2 kidney"), ("refined", "1 liver")]
    assert [t["opacity"] for t in traces] == [0.3, 0.3, 0.5, 0.5, 1.0]  # reference faint, result opaque
    assert layout["legend"]["groupclick"] == "toggleitem"
    # the affine of the Volume places every layer; RAS+ direction labels on the axes and in the scene
    x = values(traces[4]["x"])
    assert x.min() == pytest.approx(1.0, abs=1e-4) and x.max() == pytest.approx(7.0, abs=1e-4)
    scene = layout["scene"]
    assert [scene[f"{a}axis"]["title"]["text"] for a in "xyz"] == ["x (mm)  L → R", "y (mm)  P → A", "z (mm)  I → S"]
    assert sorted(a["text"] for a in scene["annotations"]) == sorted(f"<b>{c}</b>" for c in "LRPAIS")
    buttons = {b["label"]: b["args"][0]["visible"] for b in layout["updatemenus"][0]["buttons"]}
    assert buttons["refined vs reference"] == [True, True, "legendonly", "legendonly", True]
    assert buttons["input vs reference"] == [True, True, True, True, "legendonly"]


def test_figure_defaults_and_errors():
    ref = np.zeros((6, 6, 6), np.uint8)
    ref[1:4, 1:4, 1:4] = 1
    fig = mesh_figure({"reference": ref, "refined": ref}, spacing=(1, 1, 1), hidden=["reference"])
    assert [t.opacity for t in fig.data] == [0.3, 1.0] and [t.visible for t in fig.data] == ["legendonly", True]
    assert fig.layout.scene.xaxis.title.text == "axis 0 (mm)"  # no affine: no patient direction claimed
    assert not fig.layout.updatemenus
    assert axis_titles("LPS")[0] == "x (mm)  R → L"
    with pytest.raises(ValueError, match="share one grid"):
        mesh_figure({"a": ref, "b": ref[:5]}, spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="unknown layer"):
        mesh_figure({"a": ref}, spacing=(1, 1, 1), hidden=["b"])
    with pytest.raises(ValueError, match="invertible 4x4"):
        mesh_figure({"a": ref}, affine=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="must be one of"):
        axis_titles("RSA")


def test_figure_stays_under_the_triangle_budget(monkeypatch):
    import medrefine.reports.mesh as mesh

    lab = np.zeros((40, 40, 40), np.uint8)
    lab[5:35, 8:30, 10:34] = 1
    full = sum(len(t.i) for t in mesh_figure({"a": lab}, spacing=(1, 1, 1)).data)
    monkeypatch.setattr(mesh, "_MAX_FACES", full // 5)
    coarse = mesh_figure({"a": lab}, spacing=(1, 1, 1)).data
    assert 0 < sum(len(t.i) for t in coarse) <= full // 5
    assert np.asarray(coarse[0].i).dtype == np.uint16  # face indices in 2 bytes when they fit

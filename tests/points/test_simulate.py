"""Tests of medrefine.points.simulate: PA-Seg's seven-point protocol."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.errors import InputError
from medrefine.io import load_label, save_nifti
from medrefine.points import (
    background_points,
    foreground_point,
    load_points,
    read_points_json,
    simulate_point_files,
    simulate_points,
)

AFFINE = np.array([[0.0, 0, -1.5, 40.0], [0.8, 0, 0, -12.0], [0, 2.0, 0, 3.0], [0, 0, 0, 1.0]])  # permuted, anisotropic


def _box_label() -> np.ndarray:
    label = np.zeros((24, 20, 16), np.uint8)
    label[6:15, 5:12, 4:10] = 1
    return label


def _check_protocol(label, affine, points, cls=1):
    mask = label == cls
    coords = np.argwhere(mask)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    voxels = points.voxel_indices(label.shape, affine)
    chosen = points.classes == cls
    fg = voxels[chosen & points.foreground]
    bg = voxels[chosen & ~points.foreground]
    assert len(fg) == 1 and mask[tuple(fg[0])]
    assert len(bg) == 6
    for v in bg:
        assert ((v >= 0) & (v < label.shape)).all()
        assert ((v < lo) | (v > hi)).any(), f"{v} inside the box {lo}..{hi}"


def test_foreground_point_is_centre_of_box():
    assert foreground_point(_box_label() > 0).tolist() == [10, 8, 6]


def test_foreground_point_inside_non_convex_object():
    mask = np.zeros((21, 21, 5), bool)
    mask[2:19, 2:6, :] = True  # an L: its centroid lies outside
    mask[2:6, 2:19, :] = True
    centroid = np.rint(np.argwhere(mask).mean(axis=0)).astype(int)
    assert not mask[tuple(centroid)]
    assert mask[tuple(foreground_point(mask))]


def test_background_points_hand_values():
    voxels, faces = background_points(_box_label() > 0, margin_mm=None)
    assert faces == [(0, -1), (0, 1), (1, -1), (1, 1), (2, -1), (2, 1)]
    assert voxels.tolist() == [[4, 8, 6], [16, 8, 6], [10, 3, 6], [10, 13, 6], [10, 8, 2], [10, 8, 11]]
    voxels, _ = background_points(_box_label() > 0, (1.0, 1.0, 1.0), margin_mm=3.2)  # ceil -> 4 voxels
    assert voxels[0].tolist() == [2, 8, 6]


@pytest.mark.parametrize("jitter_mm", [0.0, 1.5])
def test_simulated_points_follow_protocol(jitter_mm):
    label = _box_label()
    points = simulate_points(label, AFFINE, seed=3, jitter_mm=jitter_mm)
    assert points.num_points == 7 and points.foreground.tolist() == [True] + [False] * 6
    _check_protocol(label, AFFINE, points)


def test_jitter_is_seeded():
    a = simulate_points(_box_label(), AFFINE, seed=1, jitter_mm=2.0)
    b = simulate_points(_box_label(), AFFINE, seed=1, jitter_mm=2.0)
    c = simulate_points(_box_label(), AFFINE, seed=2, jitter_mm=2.0)
    np.testing.assert_array_equal(a.world, b.world)
    assert not np.array_equal(a.world, c.world)


def test_multiclass_and_border():
    label = _box_label()
    label[16:22, 14:19, 10:15] = 2
    points = simulate_points(label, AFFINE)
    assert points.foreground_classes == [1, 2]
    _check_protocol(label, AFFINE, points, cls=1)
    edge = np.zeros((10, 10, 10), np.uint8)
    edge[0:4, 3:7, 3:7] = 1  # touches the low x border: that face gets no point
    assert simulate_points(edge, np.eye(4)).num_points == 6


def test_errors():
    with pytest.raises(InputError, match="lab.nii.gz: expected at least one foreground voxel"):
        simulate_points(np.zeros((8, 8, 8), np.uint8), np.eye(4), source="lab.nii.gz")
    with pytest.raises(InputError, match=r"expected class\(es\) \[3\]"):
        simulate_points(_box_label(), np.eye(4), classes=[3])
    with pytest.raises(ValueError, match="`jitter_mm` must be a finite number >= 0, got -1"):
        simulate_points(_box_label(), np.eye(4), jitter_mm=-1)


@pytest.mark.parametrize("fmt", ["nifti", "json"])
def test_files(tmp_path, fmt):
    labels = tmp_path / "labels"
    save_nifti(_box_label(), labels / "case_a.nii.gz", affine=AFFINE)
    save_nifti(_box_label(), labels / "case_b.nii.gz", affine=AFFINE)
    written = simulate_point_files(labels, tmp_path / "points", seed=0, jitter_mm=1.0, output_format=fmt)
    suffix = ".json" if fmt == "json" else ".nii.gz"
    assert [p.name for p in written] == [f"case_a{suffix}", f"case_b{suffix}"]
    label = load_label(labels / "case_a.nii.gz")
    points = load_points(written[0], image=label)
    assert points.num_points == 7
    if fmt == "json":
        _check_protocol(label.array, AFFINE, read_points_json(written[0]))
    # per-case seeds: a single file gives the same points as in the folder run
    single = simulate_point_files(labels / "case_b.nii.gz", tmp_path / "one", seed=0, jitter_mm=1.0, output_format=fmt)
    np.testing.assert_allclose(load_points(single[0]).world, load_points(written[1]).world)


def test_files_errors(tmp_path):
    with pytest.raises(InputError, match="nowhere: label file or folder not found"):
        simulate_point_files(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: expected label files"):
        simulate_point_files(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(InputError, match="Did you mean 'json'"):
        simulate_point_files(tmp_path / "empty", tmp_path / "out", output_format="jsn")


def test_border_warning_names_file_and_class_once_per_object(caplog):
    label = np.zeros((24, 20, 8), np.uint8)
    label[3:9, 3:9, :] = 5  # spans every slice: no room beyond either z face
    label[14:20, 10:16, 2:6] = 2  # inside: seven points
    with caplog.at_level("WARNING", logger="medrefine.points.simulate"):
        points = simulate_points(label, np.eye(4), source="labels/mr_seg.nii.gz")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["labels/mr_seg.nii.gz: class 5 touches the image border (axis 2 low, axis 2 high): 5 points "
                        "for it instead of 7, no background point beyond that border"]
    from medrefine.points import points_per_object

    assert points_per_object(points) == {2: 7, 5: 5}


def test_point_files_state_the_points_per_object(tmp_path):
    label = np.zeros((24, 20, 8), np.uint8)
    label[3:9, 3:9, :] = 5
    label[14:20, 10:16, 2:6] = 2
    path = save_nifti(label, tmp_path / "labels" / "case.nii.gz", affine=np.eye(4))
    lines: list[str] = []
    written = simulate_point_files(path, tmp_path / "points", output_format="json", echo=lines.append)
    assert lines == [f"{path} -> {written[0]}: class 2: 7 points, class 5: 5 points"]

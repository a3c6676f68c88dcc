"""Tests of medrefine.points.files: JSON lists and point maps, with their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medrefine.errors import GeometryError, InputError
from medrefine.io import load_image, save_nifti
from medrefine.points import (
    PointSet,
    load_point_map,
    load_points,
    map_to_points,
    points_to_map,
    read_points_json,
    save_point_map,
    write_points_json,
)

AFFINE = np.array([[-2.0, 0, 0, 10.0], [0, 1.0, 0, -5.0], [0, 0, 3.0, 2.0], [0, 0, 0, 1.0]])


def _points() -> PointSet:
    return PointSet.from_voxel(
        [[4, 4, 4], [1, 4, 4], [7, 4, 4], [5, 5, 2]], AFFINE, [True, False, False, True], [1, 1, 1, 2]
    )


def test_json_round_trip(tmp_path):
    path = write_points_json(_points(), tmp_path / "p.json", reference_shape=(8, 8, 8), reference_affine=AFFINE)
    document = json.loads(path.read_text())
    assert document["coordinate_system"] == "RAS" and document["reference"]["shape"] == [8, 8, 8]
    assert document["points"][0] == {"world": [2.0, -1.0, 14.0], "label": "foreground", "class": 1}
    back = read_points_json(path)
    np.testing.assert_allclose(back.world, _points().world)
    assert back.foreground.tolist() == [True, False, False, True]
    assert back.classes.tolist() == [1, 1, 1, 2]


def test_json_defaults_and_errors(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"points": [{"world": [0, 0, 0]}, {"world": [1, 1, 1], "label": "background"}]}))
    points = read_points_json(path)
    assert points.foreground.tolist() == [True, False] and points.classes.tolist() == [1, 0]
    path.write_text(json.dumps({"points": [{"world": [0, 0, 0], "label": "forground"}]}))
    with pytest.raises(InputError, match=r"p.json: point 0: \"label\" must be .* Did you mean 'foreground'"):
        read_points_json(path)
    path.write_text(json.dumps({"points": [{"world": [0, 0]}]}))
    with pytest.raises(InputError, match=r"p.json: point 0: \"world\" must hold 3 finite numbers"):
        read_points_json(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="p.json: could not read as JSON"):
        read_points_json(path)
    with pytest.raises(InputError, match="missing.json: point file not found"):
        read_points_json(tmp_path / "missing.json")


def test_write_refuses_input(tmp_path):
    target = tmp_path / "p.json"
    target.write_text("{}")
    with pytest.raises(InputError, match="refusing to overwrite an input"):
        write_points_json(_points(), target, protect=[target])


def test_map_round_trip_multiclass():
    point_map = points_to_map(_points(), (8, 8, 8), AFFINE)
    assert point_map[4, 4, 4] == 2 and point_map[5, 5, 2] == 3
    assert point_map[1, 4, 4] == 1 and point_map[7, 4, 4] == 1
    assert int((point_map > 0).sum()) == 4
    back = map_to_points(point_map, AFFINE)
    assert sorted(back.classes.tolist()) == [0, 0, 1, 2]  # background points lose their class


def test_points_outside_image_name_the_file(tmp_path):
    points = PointSet.from_voxel([[4, 4, 40]], AFFINE, [True], source=tmp_path / "case.json")
    with pytest.raises(InputError, match=r"case.json: expected .*point 0 \(foreground, class 1\) .* lies outside img.nii.gz"):
        points_to_map(points, (8, 8, 8), AFFINE, image_name="img.nii.gz")


def test_load_points_json_checks_image(tmp_path):
    image_path = save_nifti(np.zeros((8, 8, 8), np.float32), tmp_path / "img.nii.gz", affine=AFFINE)
    image = load_image(image_path)
    write_points_json(_points(), tmp_path / "ok.json")
    assert load_points(tmp_path / "ok.json", image=image).num_points == 4
    far = PointSet(world=[[500.0, 0.0, 0.0]], foreground=[True])
    write_points_json(far, tmp_path / "far.json")
    with pytest.raises(InputError, match=r"far.json: expected .*point 0 .* lies outside .*img.nii.gz"):
        load_points(tmp_path / "far.json", image=image)
    write_points_json(PointSet(world=[[0.0, 0.0, 0.0]], foreground=[False]), tmp_path / "bg.json")
    with pytest.raises(InputError, match="bg.json: expected at least one foreground point"):
        load_points(tmp_path / "bg.json")


def test_point_map_files_and_errors(tmp_path):
    image_path = save_nifti(np.zeros((8, 8, 8), np.float32), tmp_path / "img.nii.gz", affine=AFFINE)
    image = load_image(image_path)
    map_path = save_point_map(_points(), tmp_path / "pts.nii.gz", shape=(8, 8, 8), affine=AFFINE)
    points = load_points(map_path, image=image)
    assert points.num_points == 4 and points.foreground.sum() == 2
    np.testing.assert_allclose(np.sort(points.world, axis=0), np.sort(_points().world, axis=0))

    background_only = np.zeros((8, 8, 8), np.uint8)
    background_only[1, 1, 1] = 1
    save_nifti(background_only, tmp_path / "bg.nii.gz", affine=AFFINE)
    with pytest.raises(InputError, match=r"bg.nii.gz: expected at least one foreground point .* found values 0, 1"):
        load_point_map(tmp_path / "bg.nii.gz")

    shifted = AFFINE.copy()
    shifted[0, 3] += 4.0
    save_nifti(points_to_map(_points(), (8, 8, 8), AFFINE), tmp_path / "moved.nii.gz", affine=shifted)
    with pytest.raises(GeometryError, match=r"img.nii.gz and .*moved.nii.gz are expected to share one voxel grid"):
        load_points(tmp_path / "moved.nii.gz", image=image)

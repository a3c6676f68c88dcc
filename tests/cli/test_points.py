"""Tests of ``medrefine points simulate|expand`` through click's CliRunner."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from medrefine.cli import COMMANDS, cli
from medrefine.data.blobs import make_blob_phantom
from medrefine.data.phantoms import phantom_affine
from medrefine.io import load_image, load_label, save_nifti
from medrefine.points import load_points


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """Register the command as the lead will (COMMANDS["points"])."""
    monkeypatch.setitem(COMMANDS, "points", "medrefine.cli.points:points")


@pytest.fixture()
def cohort(tmp_path):
    for case in range(2):
        image, label, spacing = make_blob_phantom(24, seed=case, spacing=(1.0, 1.0, 1.5))
        affine = phantom_affine(image.shape, spacing)
        save_nifti(image, tmp_path / "images" / f"case_{case}.nii.gz", affine=affine)
        save_nifti(label, tmp_path / "labels" / f"case_{case}.nii.gz", affine=affine)
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(cli, ["points", *args])


@pytest.mark.parametrize("fmt", ["nifti", "json"])
def test_simulate_then_expand(cohort, fmt):
    out = cohort / "points"
    result = run("simulate", "--labels", str(cohort / "labels"), "--out", str(out), "--seed", "0",
                 "--jitter-mm", "0.5", "--format", fmt)
    assert result.exit_code == 0, result.output
    assert "Wrote 2 point file(s)" in result.output
    suffix = ".json" if fmt == "json" else ".nii.gz"
    points_file = out / f"case_0{suffix}"
    label = load_label(cohort / "labels" / "case_0.nii.gz")
    points = load_points(points_file, image=label)
    voxels = points.voxel_indices(label.shape, label.affine)
    assert points.num_points == 7 and points.foreground.sum() == 1
    assert label.array[tuple(voxels[points.foreground][0])] == 1
    assert (label.array[tuple(voxels[~points.foreground].T)] == 0).all()

    seeds = cohort / "seeds.nii.gz"
    result = run("expand", "--image", str(cohort / "images" / "case_0.nii.gz"), "--points", str(points_file),
                 "--out", str(seeds))
    assert result.exit_code == 0, result.output
    expanded = load_image(seeds).array
    assert set(np.unique(expanded).tolist()) <= {0, 1, 255}
    assert (label.array[expanded == 1] == 1).mean() > 0.9
    # the CT options: background inside the box where far, smoothing; the background threshold must exceed --threshold
    result = run("expand", "--image", str(cohort / "images" / "case_0.nii.gz"), "--points", str(points_file),
                 "--out", str(seeds), "--background-threshold", "0.5", "--smooth-mm", "1", "--lambda-geodesic", "0.9")
    assert result.exit_code == 0, result.output
    box_background = load_image(seeds).array
    assert ((box_background == 0) & (expanded == 255)).sum() > 0 and (label.array[box_background == 0] == 0).mean() > 0.9
    result = run("expand", "--image", str(cohort / "images" / "case_0.nii.gz"), "--points", str(points_file),
                 "--out", str(seeds), "--background-threshold", "0.1")
    assert result.exit_code == 2 and "--background-threshold" in result.output and "must be above --threshold (0.2)" in result.output


def test_missing_labels_and_unknown_format(tmp_path):
    result = run("simulate", "--labels", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "does not exist" in result.output
    result = run("simulate", "--labels", str(tmp_path), "--out", str(tmp_path / "o"), "--format", "csv")
    assert result.exit_code == 2 and "'csv' is not one of" in result.output
    result = run("simulate", "--labels", str(tmp_path), "--out", str(tmp_path / "o"), "--jiter-mm", "1")
    assert result.exit_code == 2 and "No such option" in result.output


def test_label_without_foreground(tmp_path):
    save_nifti(np.zeros((16, 16, 16), np.uint8), tmp_path / "empty.nii.gz")
    result = run("simulate", "--labels", str(tmp_path / "empty.nii.gz"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1
    assert "empty.nii.gz: expected at least one foreground voxel" in result.output


def test_expand_errors_name_the_files(cohort):
    image = cohort / "images" / "case_0.nii.gz"
    label = load_label(cohort / "labels" / "case_0.nii.gz")
    bg_only = np.zeros(label.shape, np.uint8)
    bg_only[2, 2, 2] = 1
    save_nifti(bg_only, cohort / "bg.nii.gz", affine=label.affine)
    result = run("expand", "--image", str(image), "--points", str(cohort / "bg.nii.gz"), "--out", str(cohort / "x.nii.gz"))
    assert result.exit_code == 1 and "bg.nii.gz: expected at least one foreground point" in result.output

    moved = label.affine.copy()
    moved[2, 3] += 10.0
    save_nifti(bg_only + 1, cohort / "moved.nii.gz", affine=moved)
    result = run("expand", "--image", str(image), "--points", str(cohort / "moved.nii.gz"), "--out", str(cohort / "x.nii.gz"))
    assert result.exit_code == 1 and "case_0.nii.gz and" in result.output and "share one voxel grid" in result.output

    (cohort / "far.json").write_text('{"points": [{"world": [900, 0, 0], "label": "foreground", "class": 1}]}')
    result = run("expand", "--image", str(image), "--points", str(cohort / "far.json"), "--out", str(cohort / "x.nii.gz"))
    assert result.exit_code == 1 and "far.json: expected every point inside" in result.output and "point 0 (foreground, class 1)" in result.output and "lies outside" in result.output
    assert not (cohort / "x.nii.gz").exists()


def test_command_object_directly(tmp_path):
    from medrefine.cli.points import points

    result = CliRunner().invoke(points, ["simulate", "--labels", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "expected label files" in result.output


def test_help():
    result = run("simulate", "--help")
    assert result.exit_code == 0 and "--jitter-mm" in result.output and "--format" in result.output


def test_simulate_refuses_to_overwrite_labels(cohort):
    before = (cohort / "labels" / "case_0.nii.gz").read_bytes()
    result = run("simulate", "--labels", str(cohort / "labels"), "--out", str(cohort / "labels"))
    assert result.exit_code == 1 and "refusing to overwrite an input file" in result.output
    assert (cohort / "labels" / "case_0.nii.gz").read_bytes() == before


def test_simulate_multiclass_json(tmp_path):
    from medrefine.points import read_points_json

    label = np.zeros((24, 24, 24), np.uint8)
    label[4:9, 4:9, 4:9] = 1
    label[14:20, 13:19, 12:18] = 2
    save_nifti(label, tmp_path / "two.nii.gz")
    result = run("simulate", "--labels", str(tmp_path / "two.nii.gz"), "--out", str(tmp_path / "pts"), "--format", "json")
    assert result.exit_code == 0, result.output
    points = read_points_json(tmp_path / "pts" / "two.json")
    assert points.num_points == 14 and points.foreground_classes == [1, 2]
    assert sorted(points.classes[~points.foreground].tolist()) == [1] * 6 + [2] * 6


def test_simulate_prints_the_points_per_object(cohort):
    result = run("simulate", "--labels", str(cohort / "labels"), "--out", str(cohort / "points"), "--format", "json")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if " -> " in line]
    assert len(lines) == 2 and all(line.endswith("class 1: 7 points") for line in lines), result.output

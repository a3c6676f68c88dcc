"""Tests of ``medrefine phantom cardiac`` through click's CliRunner."""

from __future__ import annotations

import json

from click.testing import CliRunner

from medrefine.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, ["phantom", "cardiac", *args], catch_exceptions=False)


def test_writes_cohort_and_datalist(tmp_path):
    out = tmp_path / "cohort"
    result = run("--cases", "2", "--size", "32", "--noise", "mild", "--seed", "1", "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "Wrote 2 cardiac phantom cases" in result.output
    datalist = json.loads((out / "datalist.json").read_text())
    assert datalist["numTraining"] == 2
    for entry in datalist["training"]:
        for key in ("image", "label", "label_clean"):
            assert (out / entry[key]).is_file(), entry[key]
        assert entry["label"].startswith("labels_noisy/")
    assert (out / "classes.json").is_file()


def test_refuses_non_empty_output_folder(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run("--cases", "1", "--size", "16", "--out", str(out))
    assert result.exit_code != 0
    assert "not empty" in result.output and str(out) in result.output
    assert (out / "notes.txt").read_text() == "mine"
    result = run("--cases", "1", "--size", "16", "--out", str(out), "--overwrite", "--no-progress")
    assert result.exit_code == 0, result.output
    assert not (out / "notes.txt").exists()


def test_rejects_unknown_noise_level(tmp_path):
    result = run("--noise", "extreme", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "'extreme' is not one of" in result.output
    assert not (tmp_path / "x").exists()


def test_help_lists_options():
    result = CliRunner().invoke(cli, ["phantom", "cardiac", "--help"])
    assert result.exit_code == 0
    for option in ("--cases", "--size", "--noise", "--seed", "--out", "--overwrite"):
        assert option in result.output


def run_sdf(*args: str):
    return CliRunner().invoke(cli, ["phantom", "heart-sdf", *args], catch_exceptions=False)


def test_heart_sdf_writes_the_same_layout(tmp_path):
    out = tmp_path / "sdf"
    result = run_sdf("--cases", "1", "--size", "24", "--spacing", "4", "--noise-model", "model", "--out", str(out),
                     "--no-progress")
    assert result.exit_code == 0, result.output
    assert "Wrote 1 SDF heart phantom cases (24^3 at 4.0 mm, noise moderate, model)" in result.output
    entry = json.loads((out / "datalist.json").read_text())["training"][0]
    assert entry["label"] == "labels_noisy/case_000.nii.gz" and (out / entry["label_clean"]).is_file()


def test_heart_sdf_rejects_unknown_noise_model(tmp_path):
    result = run_sdf("--noise-model", "slicewize", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "'slicewize' is not one of" in result.output
    assert not (tmp_path / "x").exists()


def test_phantom_lesions(tmp_path):
    from click.testing import CliRunner

    from medrefine.cli import cli
    from medrefine.data.lesions import load_lesions

    out = tmp_path / "lesions"
    result = CliRunner().invoke(cli, ["phantom", "lesions", "--patients", "3", "--seed", "1", "--no-progress",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    cohort = load_lesions(out, check_images=True)
    assert len(set(cohort.patients())) == 3 and cohort.modalities == ("T1", "ART", "DWI", "ADC")
    again = CliRunner().invoke(cli, ["phantom", "lesions", "--patients", "3", "--out", str(out)])
    assert again.exit_code != 0 and "not empty" in again.output

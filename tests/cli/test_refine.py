"""Tests of ``medrefine refine`` through click's CliRunner, on a tiny phantom cohort."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from medrefine.cli import cli
from medrefine.errors import INPUT_ERROR_EXIT_CODE
from medrefine.io import load_label


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _digest(folder) -> str:
    """Names and bytes of every file under ``folder``."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from medrefine.data.phantoms import make_cardiac_cohort

    root = tmp_path_factory.mktemp("refine") / "cohort"
    make_cardiac_cohort(root, cases=3, size=24, noise="moderate", seed=0)
    return root


@pytest.fixture(scope="module")
def refined(cohort):
    """One training run (5 epochs) on the cohort, with the digest of the inputs before it."""
    before = _digest(cohort)
    out = cohort.parent / "refined"
    result = _run("refine", "-i", cohort / "images", "-l", cohort / "labels_noisy", "--ref", cohort / "labels",
                  "-o", out, "--epochs", "5")
    return result, out, before


def test_refine_end_to_end(cohort, refined):
    result, out, before = refined
    assert result.exit_code == 0, result.output
    cases = sorted(p.name for p in (cohort / "labels_noisy").iterdir())
    assert len(cases) == 3
    for name in cases:
        given = load_label(cohort / "labels_noisy" / name)
        made = load_label(out / "refined" / name)
        assert made.array.shape == given.array.shape
        np.testing.assert_allclose(made.affine, given.affine, atol=1e-5)
        assert (out / "uncertainty" / name).is_file() and (out / "changes" / name).is_file()
    metrics = pd.read_csv(out / "metrics.csv")
    assert sorted(metrics["case"]) == [n.replace(".nii.gz", "") for n in cases]
    assert {"dice_refined_vs_input", "dice_input_vs_ref", "dice_refined_vs_ref"} <= set(metrics.columns)
    assert metrics["dice_refined_vs_input"].between(0, 1).all()
    assert (out / "model" / "model.json").is_file() and (out / "model" / "model.pt").is_file()
    assert (out / "report" / "report.html").is_file() and (out / "changes.csv").is_file()
    # the plan came first, the summary line last
    lines = result.output.strip().splitlines()
    assert any(line.startswith("plan: 3 cases on") for line in lines)
    assert any("estimated time:" in line for line in lines)
    assert lines[-1].startswith("refined 3 cases: mean Dice vs input") and "vs ref" in lines[-1]
    assert "estimated" in lines[-1]


def test_refine_leaves_inputs_alone(cohort, refined):
    result, _, before = refined
    assert result.exit_code == 0, result.output
    assert _digest(cohort) == before


def test_refine_dry_run_writes_nothing(cohort, tmp_path):
    before = _digest(cohort)
    out = tmp_path / "plan_only"
    # a dataset folder alone (its datalist: label = noisy, label_clean = reference)
    result = _run("refine", "-i", cohort, "-o", out, "--fast", "--dry-run")
    assert result.exit_code == 0, result.output
    assert not out.exists() and _digest(cohort) == before
    assert "estimated time:" in result.output
    # 3 cases: default_epochs(3) = 534, --fast halves it
    assert "267 epochs (fast)" in result.output
    assert result.output.strip().splitlines()[-1].startswith("dry run: nothing written; estimated")


def test_refine_with_trained_model_is_inductive(cohort, refined, tmp_path):
    from medrefine.data.phantoms import make_cardiac_cohort

    _, out, _ = refined
    new = tmp_path / "new"
    make_cardiac_cohort(new, cases=1, size=24, noise="moderate", seed=7)
    for folder in ("images", "labels_noisy", "labels"):  # a case the model has not seen, by name too
        (new / folder / "case_000.nii.gz").rename(new / folder / "case_101.nii.gz")
    again = tmp_path / "again"
    result = _run("refine", "-i", new / "images", "-l", new / "labels_noisy", "--ref", new / "labels",
                  "--model", out / "model", "-o", again)
    assert result.exit_code == 0, result.output
    assert "inductive refinement" in result.output and "training:" not in result.output
    assert (again / "refined" / "case_101.nii.gz").is_file()
    assert not (again / "model").exists()  # nothing trained here
    assert list(pd.read_csv(again / "metrics.csv")["case"]) == ["case_101"]
    # 5 epochs: the guard keeps the input for most structures, and says so naming the model
    warning = next(line for line in result.output.splitlines() if line.startswith("warning:"))
    assert "the guard kept the input for" in warning and str(out / "model") in warning


@pytest.mark.parametrize("where", ["images", "labels_noisy/sub"])
def test_refine_refuses_output_inside_an_input_folder(cohort, where):
    before = _digest(cohort)
    result = _run("refine", "-i", cohort / "images", "-l", cohort / "labels_noisy", "-o", cohort / where)
    assert result.exit_code == INPUT_ERROR_EXIT_CODE
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("Error:") and "inside the input folder" in result.output
    assert _digest(cohort) == before


def test_refine_options_that_do_not_combine(cohort, tmp_path):
    result = _run("refine", "-i", cohort / "images", "-l", cohort / "labels_noisy", "-o", tmp_path / "o",
                  "--epochs", "3", "--quality")
    assert result.exit_code == 2 and "not both" in result.output

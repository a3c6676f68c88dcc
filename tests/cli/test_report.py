"""Tests of ``medrefine report``: exit codes, outputs, sources discovery, comparisons."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from medrefine.cli import cli


def write_metrics(path, offset: float = 0.0):
    dice = {(1, "liver"): [0.8, 0.9, 1.0], (2, "kidney"): [0.4, 0.6, 0.65]}
    rows = []
    for (cid, name), values in dice.items():
        for case, d in zip(["case_a", "case_b", "case_c"], values):
            rows += [(case, cid, name, "dice", d + offset), (case, cid, name, "hd95", 10 * (1 - d - offset))]
    pd.DataFrame(rows, columns=["case", "class_id", "class_name", "metric", "value"]).to_csv(path, index=False)
    return path


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(map(str, args)))


def test_report_writes_and_prints_html(tmp_path, run):
    write_metrics(tmp_path / "metrics.csv")
    result = run("report", "metrics.csv", "--out", "rep", "--title", "CLI run")
    assert result.exit_code == 0, result.output
    html = tmp_path / "rep" / "report.html"
    assert result.output.strip() == str(html)
    assert "<title>CLI run</title>" in html.read_text()
    assert "| 1 | liver | 3 | 0.900 ± 0.100 |" in (tmp_path / "rep" / "report.md").read_text()


def test_bad_csv_exits_non_zero_without_folder(tmp_path, run):
    pd.DataFrame({"case": ["a"], "dice": [0.9]}).to_csv(tmp_path / "bad.csv", index=False)
    result = run("report", "bad.csv", "--out", "rep")
    assert result.exit_code == 3
    assert "Error: bad.csv: missing column(s) class_id, class_name, metric, value" in result.output
    assert not (tmp_path / "rep").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.csv"]


def test_missing_input_and_unknown_option(tmp_path, run):
    assert run("report", "nope.csv", "--out", "rep").exit_code == 2
    write_metrics(tmp_path / "metrics.csv")
    assert run("report", "metrics.csv", "--out", "rep", "--colour", "red").exit_code == 2
    assert run("report", "metrics.csv").exit_code == 2  # --out is required


def test_sources_found_next_to_csv_and_compare(tmp_path, run):
    from medrefine.io import save_nifti

    lab = np.zeros((16, 16, 16), np.uint8)
    lab[3:9, 4:12, 5:11] = 1
    lab[10:14, 4:9, 3:13] = 2
    cases = {}
    for case in ("case_a", "case_b", "case_c"):
        save_nifti(lab, tmp_path / f"{case}.nii.gz", affine=np.diag([1.0, 1.0, 2.0, 1.0]))
        cases[case] = {"pred": f"{case}.nii.gz", "ref": f"{case}.nii.gz", "image": None}
    write_metrics(tmp_path / "refined.csv")
    (tmp_path / "refined.sources.json").write_text(json.dumps({"classes": {"1": "liver", "2": "kidney"}, "cases": cases}))
    write_metrics(tmp_path / "noisy_run.csv", offset=-0.2)
    result = run("report", "refined.csv", "--out", "rep", "--compare", "noisy_run.csv", "--compare-name", "noisy",
                 "--overlay-cases", "2", "--mesh-case", "case_a")
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "rep").iterdir()}
    assert {"overlay_case_c.png", "overlay_case_a.png", "compare_noisy.png"} <= names
    assert "overlay_case_b.png" not in names
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Comparison: noisy → refined" in md and "## 3D surfaces: case_a" in md
    assert 'id="mesh3d"' in (tmp_path / "rep" / "report.html").read_text()


def test_run_named_after_its_folder_not_metrics(tmp_path, run):
    (tmp_path / "run_07").mkdir()
    write_metrics(tmp_path / "run_07" / "metrics.csv")
    result = run("report", "run_07/metrics.csv", "--out", "rep")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "<title>run_07 — medrefine report</title>" in page
    assert "(metrics)" not in page and "Run run_07:" in page


@pytest.mark.parametrize(
    "args, message",
    [
        (["--compare-name", "noisy"], "--compare-name given 1 time(s) but --compare only 0"),
        (["--overlay-cases", "3"], "need the volumes"),
        (["--mesh-case", "case_a"], "need the volumes"),
        (["--overlay-cases", ","], "expected a count or comma-separated case ids"),
    ],
)
def test_argument_errors(tmp_path, run, args, message):
    write_metrics(tmp_path / "metrics.csv")
    result = run("report", "metrics.csv", "--out", "rep", *args)
    assert result.exit_code == 3 and message in result.output
    assert not (tmp_path / "rep").exists()


def test_help_lists_options(run):
    result = run("report", "--help")
    assert result.exit_code == 0
    for option in ("--out", "--sources", "--title", "--overlay-cases", "--mesh-case", "--reference-name", "--compare", "--compare-name"):
        assert option in result.output

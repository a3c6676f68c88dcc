"""The quick scripts in examples/ run, print what they promise, and write only where they are told."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(*args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_evaluate_noisy_phantoms(tmp_path):
    out = _run(str(EXAMPLES / "evaluate_noisy_phantoms.py"), cwd=tmp_path)
    assert "left_ventricle" in out and "coronary_arteries" in out
    assert list(tmp_path.iterdir()) == []  # prints only


def test_load_and_resample(shared_data, tmp_path):
    target = tmp_path / "out" / "seg.nii.gz"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = _run(str(EXAMPLES / "load_and_resample.py"), str(shared_data / "ct_dicom"),
               str(shared_data / "ct_dicom_seg.nii.gz"), "--out", str(target), cwd=cwd)
    assert "grids differ" in out and target.is_file()
    assert f"label on the series' grid: {target}" in out
    assert list(cwd.iterdir()) == []


def test_load_and_resample_refuses_one_path(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "load_and_resample.py"), "only_one"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "expected SERIES_DIR and LABEL (or neither), got 1 path(s)" in proc.stderr


def test_refine_in_python_writes_under_out(tmp_path):
    """A few epochs only: this checks the calls and where files go; the docstring's 150 epochs give the quality."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = _run(str(EXAMPLES / "refine_in_python.py"), "--out", str(tmp_path / "run"), "--epochs", "2", cwd=cwd)
    assert f"writing into {tmp_path / 'run'}" in out and "myocardium" in out
    assert sorted(p.name for p in (tmp_path / "run" / "refined" / "refined").glob("*.nii.gz")) == [f"case_{i:03d}.nii.gz" for i in range(4)]
    assert list(cwd.iterdir()) == []

"""The quick scripts in examples/ run and print what they promise."""

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


def test_load_and_resample(shared_data, tmp_path):
    target = tmp_path / "seg.nii.gz"
    out = _run(str(EXAMPLES / "load_and_resample.py"), str(shared_data / "ct_dicom"),
               str(shared_data / "ct_dicom_seg.nii.gz"), str(target), cwd=tmp_path)
    assert "grids differ" in out and target.is_file()

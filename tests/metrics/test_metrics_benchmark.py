"""The metrics benchmark script: a clear exit without the real data, and a quick real run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "metrics.py"


def run(*args: str, data: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if data is not None:
        env["MEDREFINE_SHARED_DATA"] = str(data)
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


def test_exits_with_message_when_data_absent(tmp_path):
    result = run(data=tmp_path / "nowhere")
    assert result.returncode == 1
    assert "ct_seg.nii.gz is absent" in result.stderr and "MEDREFINE_SHARED_DATA" in result.stderr


@pytest.mark.slow
@pytest.mark.shared_data
def test_runs_on_real_data(shared_data):
    result = run("--repeats", "1", "--skip-monai", data=shared_data)
    assert result.returncode == 0, result.stderr
    assert "41 classes" in result.stdout and "all 5 metrics" in result.stdout and "ms per class" in result.stdout

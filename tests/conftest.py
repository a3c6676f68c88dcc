"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDREFINE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data" / "totalseg_example"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real CT/MR examples in ../shared/data/totalseg_example, or skip when absent."""
    if not (SHARED_DATA / "ct.nii.gz").is_file():
        pytest.skip(f"real example data not found at {SHARED_DATA} (the ../shared folder is absent)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep torch on the machine's cores without oversubscription when tests run in parallel."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, min(old, 2)))
    yield
    torch.set_num_threads(old)


@pytest.fixture
def two_process_json(tmp_path):
    """``run(code) -> dict``: ``code`` (a Python script that calls ``dist.init_process_group('gloo')``
    and, on rank 0, ``json.dump``s its result to ``sys.argv[1]``) run under ``torchrun
    --nproc_per_node=2``; returns what rank 0 wrote, or fails with the processes' output."""
    import json
    import os
    import subprocess
    import sys

    def run(code: str) -> dict:
        script, result = tmp_path / "two_process_worker.py", tmp_path / "two_process_result.json"
        script.write_text(code)
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               str(script), str(result)], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(result.read_text())

    return run

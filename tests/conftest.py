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

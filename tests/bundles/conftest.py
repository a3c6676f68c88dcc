"""Fixtures shared by the bundle tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


@pytest.fixture
def torchrun_train(tmp_path) -> Callable[..., Path]:
    """``run(name, cohort, *args)``: a copy of bundle ``name`` trained with train + multi_gpu_train +
    smoke under ``torchrun --nproc_per_node=2`` (gloo on CPU) through ``python -m monai.bundle run``;
    ``args`` are more ``--key value`` overrides, ``layers`` more of the bundle's configs on top
    (``("mlflow.json",)``). Returns the bundle copy; fails with the processes' output."""

    def run(name: str, cohort: Path, *args: str, layers: tuple[str, ...] = ()) -> Path:
        root = tmp_path / name
        shutil.copytree(BUNDLES / name, root, ignore=shutil.ignore_patterns("models", "eval", "logs"))
        configs = root / "configs"
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "monai.bundle", "run",
            "--config_file", str([str(configs / f) for f in ("train.json", "multi_gpu_train.json", "smoke.json", *layers)]),
            "--meta_file", str(configs / "metadata.json"),
            "--bundle_root", str(root), "--work_dir", str(root), "--dataset_dir", str(cohort), *args,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return root

    return run


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory) -> Path:
    """Three 32^3 cardiac phantoms with noisy labels (datalist.json at the top)."""
    from medrefine.data.phantoms import make_cardiac_cohort

    out = tmp_path_factory.mktemp("bundle_data") / "cohort"
    make_cardiac_cohort(out, cases=3, size=32, noise="moderate", seed=3)
    return out


@pytest.fixture(scope="module")
def tiny_lesions(tmp_path_factory) -> Path:
    """Lesion phantoms of six patients (RRMediCa folders)."""
    from medrefine.data.lesion_phantoms import make_lesion_cohort

    return make_lesion_cohort(tmp_path_factory.mktemp("bundle_data") / "lesions", patients=6, seed=3)


@pytest.fixture(scope="module")
def tiny_cine(tmp_path_factory) -> Path:
    """Five 4D short-axis cine phantoms (BIDS-like layout), 16x16x6 voxels, 4 frames."""
    from medrefine.data.cine_phantoms import make_cine_cohort

    return make_cine_cohort(tmp_path_factory.mktemp("bundle_data") / "cine", subjects=5, size=(16, 16), slices=6,
                            frames=4, spacing=(9.0, 9.0, 13.0), seed=3)


SMOKE_COHORTS = {"lesions": "tiny_lesions", "cine": "tiny_cine"}


@pytest.fixture
def smoke_cohort(request) -> Callable[..., Path]:
    """``cohort(bundle)``: the tiny cohort the bundle's ``configs/smoke.json`` asks for (``smoke_cohort``:
    ``lesions``, ``cine``; default the cardiac phantoms of ``tiny_cohort``)."""

    def cohort(bundle) -> Path:
        smoke = json.loads((bundle.path / "configs" / "smoke.json").read_text())
        return request.getfixturevalue(SMOKE_COHORTS.get(smoke.get("smoke_cohort"), "tiny_cohort"))

    return cohort

"""Fixtures shared by the bundle tests."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def copy_bundle(name: str, root: Path) -> Path:
    """A copy of bundle ``name`` at ``root`` (without trained models, outputs or logs)."""
    shutil.copytree(BUNDLES / name, root, ignore=shutil.ignore_patterns("models", "eval", "logs", "__pycache__"))
    return root


def run_bundle_processes(root: Path, cohort: Path, layers: Sequence[str], *args: str, nproc: int = 2) -> Path:
    """Run the bundle copy ``root`` with config ``layers`` (stems in ``configs/``) through
    ``python -m monai.bundle run``: under ``torchrun --standalone --nproc_per_node=nproc`` (gloo on CPU)
    when ``nproc`` > 1, as one plain process otherwise. ``args`` are more ``--key value`` overrides.
    Returns ``root``; fails with the processes' output."""
    configs = root / "configs"
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    cmd = [
        sys.executable, *launcher, "-m", "monai.bundle", "run",
        "--config_file", str([str(configs / f"{stem}.json") for stem in layers]),
        "--meta_file", str(configs / "metadata.json"),
        "--bundle_root", str(root), "--work_dir", str(root), "--dataset_dir", str(cohort), *args,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(BUNDLES.parent))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    (root / "run.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root


def history_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a ``HistoryCSV`` file."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class BundleProcesses:
    """:func:`copy_bundle`, :func:`run_bundle_processes` and :func:`history_rows` for a test (fixture ``bundle_processes``)."""

    copy = staticmethod(copy_bundle)
    run = staticmethod(run_bundle_processes)
    history = staticmethod(history_rows)


@pytest.fixture
def bundle_processes() -> BundleProcesses:
    """Copy a bundle, run it in one or several processes, read its history (see :class:`BundleProcesses`)."""
    return BundleProcesses()


@pytest.fixture
def torchrun_train(tmp_path) -> Callable[..., Path]:
    """``run(name, cohort, *args)``: a copy of bundle ``name`` trained with train + multi_gpu_train +
    smoke under ``torchrun --nproc_per_node=2`` (gloo on CPU) through ``python -m monai.bundle run``;
    ``args`` are more ``--key value`` overrides, ``layers`` more of the bundle's configs on top
    (``("mlflow.json",)``). Returns the bundle copy; fails with the processes' output."""

    def run(name: str, cohort: Path, *args: str, layers: tuple[str, ...] = ()) -> Path:
        root = copy_bundle(name, tmp_path / name)
        stems = ("train", "multi_gpu_train", "smoke", *(layer.removesuffix(".json") for layer in layers))
        return run_bundle_processes(root, cohort, stems, *args, nproc=2)

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

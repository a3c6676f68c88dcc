"""The refinement bundle's multi_gpu_train config runs under torchrun with two CPU processes (gloo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "annotation_refinement"


@pytest.mark.slow
def test_two_process_training(tmp_path):
    from medrefine.data.phantoms import make_cardiac_cohort

    cohort = tmp_path / "cohort"
    make_cardiac_cohort(cohort, cases=4, size=32, noise="moderate", seed=5)
    root = tmp_path / "bundle"
    shutil.copytree(BUNDLE, root, ignore=shutil.ignore_patterns("models", "eval", "logs"))
    configs = root / "configs"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run",
        "--config_file", str([str(configs / "train.json"), str(configs / "multi_gpu_train.json"), str(configs / "smoke.json")]),
        "--meta_file", str(configs / "metadata.json"),
        "--bundle_root", str(root), "--work_dir", str(root), "--dataset_dir", str(cohort), "--batch_size", "4",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (root / "models" / "model.pt").is_file()
    history = (root / "logs" / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 2, history  # header + one row per epoch, written once (rank 0)

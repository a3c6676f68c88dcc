"""The point-supervision bundle's multi_gpu_train config (stage 1) runs under torchrun with two CPU
processes (gloo), as the refinement bundle's does."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_two_process_training(tmp_path, torchrun_train):
    from medrefine.data.phantoms import make_cardiac_cohort
    from medrefine.workflows.models import read_model

    make_cardiac_cohort(tmp_path / "cohort", cases=4, size=32, noise="moderate", seed=5)
    root = torchrun_train("point_supervised_segmentation", tmp_path / "cohort", "--batch_size", "2")
    model = read_model(root / "models" / "stage1_unet.pt")  # description written once, by rank 0
    assert model.weights_path.is_file() and model.classes
    history = (root / "logs" / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 2, history  # header + one row per epoch, written once (rank 0)

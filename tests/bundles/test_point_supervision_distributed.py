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


def test_multi_gpu_config_follows_train_json():
    """The copied steps stay equal to train.json's, and every rank decides the final validation alike."""
    import json

    from medrefine.bundle import find_bundle

    configs = find_bundle("point_supervised_segmentation").path / "configs"
    train = json.loads((configs / "train.json").read_text())
    multi = json.loads((configs / "multi_gpu_train.json").read_text())
    describe = [s for s in train["initialize"] if "write_description" in s]
    assert [s for s in multi["initialize"] if "write_description" in s] == [
        f"{s} if dist.get_rank() == 0 else None" for s in describe]
    check = next(s for s in train["run"] if "is_file()" in s)
    assert multi["run"][multi["run"].index(check) - 1] == "$dist.barrier()"
    assert [s for s in multi["run"] if s != "$dist.barrier()"] == train["run"]

"""The point-supervision bundle's multi-process configs stay copies of its single-process ones (the runs
themselves: tests/bundles/test_distributed_training.py)."""

from __future__ import annotations



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


def test_multi_gpu_stage2_config_follows_stage2_json():
    """multi_gpu_stage2 wraps stage2.json's two networks in DDP and keeps its steps, rank 0 alone writing."""
    import json

    from medrefine.bundle import config_files, find_bundle

    bundle = find_bundle("point_supervised_segmentation")
    assert [p.stem for p in config_files(bundle, "multi_gpu_stage2")] == ["train", "multi_gpu_train", "stage2", "multi_gpu_stage2"]
    configs = bundle.path / "configs"
    stage2 = json.loads((configs / "stage2.json").read_text())
    multi = json.loads((configs / "multi_gpu_stage2.json").read_text())
    for key in ("network", "network2"):
        assert multi[key]["module"] == stage2[key]
    describe = [s for s in stage2["initialize"] if "write_description" in s]
    assert [s for s in multi["initialize"] if "write_description" in s] == [f"{s} if dist.get_rank() == 0 else None" for s in describe]
    assert [s for s in multi["run"] if s != "$dist.barrier()"] == stage2["run"]
    savers = [i for i, h in enumerate(stage2["validate#handlers"]) if h["_target_"].endswith("CheckpointSaver")]
    assert savers and all(multi[f"validate#handlers#{i}#_disabled_"] == "$dist.get_rank() > 0" for i in savers)

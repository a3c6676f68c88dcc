"""Every bundle's training runs under torchrun with two CPU processes (gloo) and takes the first step the
single process takes with the same global batch.

For each bundle (and both stages of point supervision) one plain run and one ``torchrun
--nproc_per_node=2`` run of its multi-process configs train on the same tiny cohort with
augmentation off and every training case in one global batch, so epoch 1 is one optimisation step:
the history's ``train_loss`` of epoch 1 is the first step's loss (``HistoryCSV`` averages it over the
processes). ``batch_size`` is the global batch in both runs: DDP bundles load half of it per process
(``per_process_batch``), NeAR and NIMOSEF engines split it themselves (``rank_share``). Each run must end, write its model and history once (rank 0) and leave
no partial files.

Tolerances (``rel``), measured on these cohorts (see each entry):

- mean-over-samples losses (Dice per sample + voxel-mean cross-entropy on equal 32^3 crops): only
  float32 summation order differs, ``rel=1e-4``;
- losses that are not a mean over samples differ by the loss's own definition, not by the
  data each process saw: the partially labeled cross-entropy of stage 1 averages over the labeled
  voxels of each process's half; NeAR's batch Dice and class-weighted CE and NIMOSEF's batch terms
  pool over the batch. Their tolerance is a few times the measured gap and far below the spread
  between the two halves' losses, which is what a wrong global batch (both processes on the same
  half, a case dropped or repeated) would show.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def _cardiac(root: Path, cases: int) -> Path:
    from medrefine.data.phantoms import make_cardiac_cohort

    make_cardiac_cohort(root / "cohort", cases=cases, size=32, noise="moderate", seed=5)
    return root / "cohort"


def _lesions(root: Path) -> Path:
    from medrefine.data.lesion_phantoms import make_lesion_cohort

    return make_lesion_cohort(root / "lesions", patients=7, seed=3)  # 4 training lesions in fold 0 of the smoke split


def _cine(root: Path) -> Path:
    from medrefine.data.cine_phantoms import make_cine_cohort

    return make_cine_cohort(root / "cine", subjects=5, size=(16, 16), slices=6, frames=4, spacing=(9.0, 9.0, 13.0), seed=3)


#: bundle -> cohort, overrides of both runs (augmentation off, deterministic crops), batch_size of the
#: single run and of each of the two processes, history file, the model files rank 0 writes, ``rel``
CASES = {
    "multiorgan_ct_segmentation": dict(  # 5 cases, 1 for validation; DiceCE per sample: rel 6e-5 before
        # HistoryCSV averaged over processes (rank 0's half alone), so 1e-4 is about the tightest safe bound
        cohort=lambda root: _cardiac(root, 5),
        args=("--roi_size", "[32,32,32]", "--prob_flip", "0", "--prob_rotate", "0", "--prob_intensity", "0",
              "--prob_elastic", "0"),
        batch=(4, 4), history="logs/history.csv", models=("model.pt", "model.json"), rel=1e-4),
    # class-weighted CE normalised by the global batch's weights (multi_gpu_train sets loss#across_processes;
    # per process it was 1.7e-2 off); BatchNorm would normalise each process's half on CPU (SyncBatchNorm,
    # which multi_gpu_train uses on CUDA, needs CUDA; 9e-2 off), so the CRN runs with norm=group, which has
    # no batch statistics; an even training set (4 lesions), as DistributedSampler pads an odd one by
    # repeating a lesion. Measured: equal below rel 1e-7
    "lesion_classification": dict(
        cohort=_lesions,
        args=("--prob_flip", "0", "--prob_affine", "0", "--prob_intensity", "0", "--modality_dropout", "0",
              "--norm", "group"),
        batch=(4, 4), history="logs/history.csv", models=("model.pt", "model.json"), rel=1e-5),
    "annotation_refinement": dict(  # batch Dice + class-weighted CE, not a mean over cases: rel 2e-3 measured on blobs
        cohort=lambda root: _cardiac(root, 4), args=(),
        batch=(4, 4), history="logs/history.csv", models=("model.pt", "model.json"), rel=1e-2),
    "cardiac_motion": dict(  # batch-pooled image terms, not a mean over subjects; passes at 1e-2
        cohort=_cine, args=(),
        batch=(4, 4), history="logs/history.csv", models=("model.pt", "model.json"), rel=1e-2),
    "point_supervised_segmentation": dict(  # partial CE over each half's labeled voxels; passes at 1e-2
        cohort=lambda root: _cardiac(root, 4), args=(),
        batch=(4, 4), history="logs/history_stage1_unet.csv", models=("stage1_unet.pt", "stage1_unet.json"), rel=1e-2),
}
TWO_PROCESS_HISTORY = {"point_supervised_segmentation": "logs/history.csv"}


def _check_run(root: Path, models: tuple[str, ...], history: Path, epochs: int, bundle_processes) -> float:
    """The run's first-step loss, after checking it wrote its models and one history row per epoch."""
    for name in models:
        assert (root / "models" / name).is_file(), f"no models/{name}"
    partial = [p.name for p in root.rglob("*") if p.is_file() and (".tmp" in p.name or p.name.startswith("tmp"))]
    assert not partial, partial
    rows = bundle_processes.history(history)
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1)), rows  # written once (rank 0)
    assert [int(r["iteration"]) for r in rows] == list(range(1, epochs + 1)), rows  # one step per epoch
    return float(rows[0]["train_loss"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_two_processes_take_the_single_process_first_step(name, tmp_path, bundle_processes):
    case = CASES[name]
    cohort = case["cohort"](tmp_path)
    losses = []
    for nproc, batch in zip((1, 2), case["batch"]):
        layers = ("train", "multi_gpu_train", "smoke") if nproc > 1 else ("train", "smoke")
        root = bundle_processes.copy(name, tmp_path / f"run{nproc}")
        bundle_processes.run(root, cohort, layers, *case["args"], "--batch_size", str(batch), "--epochs", "2", nproc=nproc)
        history = case["history"] if nproc == 1 else TWO_PROCESS_HISTORY.get(name, case["history"])
        losses.append(_check_run(root, case["models"], root / history, 2, bundle_processes))
    single, double = losses
    assert double == pytest.approx(single, rel=case["rel"]), f"{name}: first-step loss {double} (2 processes) vs {single}"


@pytest.mark.slow
def test_point_supervision_stage2_two_processes(tmp_path, bundle_processes):
    """Stage 2 (two networks distilling into each other) from one stage-1 model, as one process and as two."""
    cohort = _cardiac(tmp_path, 4)
    stage1 = bundle_processes.run(bundle_processes.copy("point_supervised_segmentation", tmp_path / "stage1"), cohort,
                                  ("train", "smoke"), "--epochs", "1", nproc=1)
    losses = []
    for nproc, batch, layers in ((1, 4, ("train", "stage2", "smoke")),
                                 (2, 4, ("train", "multi_gpu_train", "stage2", "multi_gpu_stage2", "smoke"))):
        root = bundle_processes.copy("point_supervised_segmentation", tmp_path / f"run{nproc}")
        shutil.copytree(stage1 / "models", root / "models")
        bundle_processes.run(root, cohort, layers, "--batch_size", str(batch), "--epochs", "2", nproc=nproc)
        losses.append(_check_run(root, ("model.pt", "model.json", "model2.pt", "model2.json"),
                                 root / "logs" / "history_stage2.csv", 2, bundle_processes))
    single, double = losses
    # DiceCE per sample + voxel-mean distillation are means over samples; the CRF label refiner optimises each
    # batch's labels jointly (Adam over the batch), measured rel 1.6e-4
    assert double == pytest.approx(single, rel=1e-3), f"first-step loss {double} (2 processes) vs {single}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_multi_gpu_train_keeps_the_imports_of_train(name):
    """An ``imports`` list in multi_gpu_train replaces train.json's: a dropped module fails every torchrun run."""
    import json

    configs = Path(__file__).resolve().parents[2] / "bundles" / name / "configs"
    train = json.loads((configs / "train.json").read_text()).get("imports", [])
    multi = json.loads((configs / "multi_gpu_train.json").read_text())
    assert set(train) <= set(multi.get("imports", train)) | set(multi.get("+imports", []))


@pytest.mark.parametrize("config", sorted(str(p.relative_to(p.parents[2])) for p in
                                          (Path(__file__).resolve().parents[2] / "bundles").glob("*/configs/multi_gpu_*.json")))
def test_processes_meet_before_the_group_ends(config):
    """A process that destroys the group while another still works makes gloo abort at exit
    ("terminate called without an active exception", seen in a docs run): every multi-process config
    ends with a barrier (or the sharded finish, which ends with one) before destroy_process_group, and a
    rank-0-written file is looked for only after a barrier."""
    import json

    merged = json.loads((Path(__file__).resolve().parents[2] / "bundles" / config).read_text())
    finalize = merged.get("finalize")
    if finalize is None:  # multi_gpu_stage2 keeps multi_gpu_train's
        return
    destroy = next(i for i, s in enumerate(finalize) if "destroy_process_group" in s)
    assert any("barrier" in s or "finish_sharded" in s for s in finalize[:destroy]), finalize
    run = merged.get("run", [])
    for i, step in enumerate(run):
        if "isfile" in step or "is_file()" in step:
            assert any("barrier" in s for s in run[:i]), (config, step)

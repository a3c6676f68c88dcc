"""Tests of medrefine.handlers.collapse and the key-metric floor of AtomicCheckpointSaver."""

from __future__ import annotations

import json

import pytest
import torch
from ignite.engine import Engine, Events

from medrefine.handlers import AtomicCheckpointSaver, CollapseStop, TrainingCollapsed


def _run(scores, preds=None, *, patience=3, max_epochs=10, pred_keys=("pred",), losses=None):
    """Train ``max_epochs`` epochs, validating every epoch; validation ``i`` scores ``scores[i]`` and
    predicts ``preds[i]`` (a one-hot ``(C, X, Y)`` tensor). Returns ``(trainer, stop)``."""
    preds = preds or [torch.eye(2)[:, None, :].expand(2, 2, 2).clone() for _ in scores]  # two classes
    evaluator = Engine(lambda e, b: [{"pred": preds[e.state.epoch - 1]}])
    evaluator.state.key_metric_name = "val_dice"

    @evaluator.on(Events.EPOCH_COMPLETED)
    def _score(e):
        e.state.metrics = {"val_dice": scores[e.state.epoch - 1]}

    trainer = Engine(lambda e, b: {"loss": 1.0 if losses is None else losses[e.state.epoch - 1]})

    @trainer.on(Events.EPOCH_COMPLETED)
    def _validate(t):  # as MONAI's ValidationHandler: the evaluator runs at the trainer's epoch
        evaluator.state.max_epochs = t.state.epoch - 1
        evaluator.run([0], max_epochs=t.state.epoch)

    stop = CollapseStop(evaluator, patience=patience, pred_keys=pred_keys, hint="lower learning_rate")
    stop.attach(trainer)
    trainer.run([0], max_epochs=max_epochs)
    return trainer, stop


def test_zero_metric_stops_after_patience_with_one_clear_line():
    trainer, stop = _run([0.0] * 10)
    assert trainer.state.epoch == 3
    with pytest.raises(TrainingCollapsed, match=r"^training collapsed: 3 validations in a row with val_dice = 0 and the loss no longer falling; "
                                                r"stopped at epoch 3 of 10 .*Try: lower learning_rate$"):
        stop.raise_if_collapsed()
    assert "\n" not in stop.message


def test_a_healthy_run_or_one_that_recovers_is_not_stopped():
    trainer, stop = _run([0.0, 0.0, 0.4, 0.0, 0.0, 0.5, 0.6, 0.6, 0.7, 0.7])
    assert trainer.state.epoch == 10 and stop.message is None
    stop.raise_if_collapsed()  # best 0.7: nothing to say


def test_zero_scores_while_the_loss_still_falls_do_not_stop_but_export_nothing():
    trainer, stop = _run([0.0] * 10, losses=[1.0 - 0.05 * i for i in range(10)])  # a small organ not found yet
    assert trainer.state.epoch == 10 and stop.in_a_row <= 1
    with pytest.raises(TrainingCollapsed, match="none of its 10 validation\\(s\\) scored above 0; no model was saved"):
        stop.raise_if_collapsed()
    trainer, stop = _run([0.0] * 10, losses=[1.0 - 0.001 * i for i in range(10)])  # 0.1 % per epoch: flat
    assert trainer.state.epoch == 3


def test_one_class_everywhere_counts_as_collapse_even_with_a_score():
    background = torch.zeros(2, 4, 4)
    background[0] = 1  # every voxel class 0
    trainer, stop = _run([0.3] * 10, [background] * 10)
    assert trainer.state.epoch == 3
    with pytest.raises(TrainingCollapsed, match="every voxel got class 0 \\(pred\\)"):
        stop.raise_if_collapsed()


def test_a_short_run_that_never_beat_zero_still_fails():
    trainer, stop = _run([0.0, 0.0], max_epochs=2)
    assert trainer.state.epoch == 2
    with pytest.raises(TrainingCollapsed, match="none of its 2 validation\\(s\\) scored above 0"):
        stop.raise_if_collapsed()


def test_patience_must_be_positive():
    with pytest.raises(ValueError, match="`patience` must be at least 1, got 0"):
        CollapseStop(evaluator=None, patience=0)


@pytest.mark.parametrize(("score", "written"), [(0.0, False), (0.25, True)])
def test_checkpoint_saver_writes_no_model_at_or_below_the_floor(tmp_path, score, written):
    net = torch.nn.Linear(1, 1)
    evaluator = Engine(lambda e, b: None)
    evaluator.state.key_metric_name = "val_dice"

    @evaluator.on(Events.EPOCH_COMPLETED)
    def _score(e):
        e.state.metrics = {"val_dice": score}

    AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_key_metric=True, key_metric_filename="model.pt",
                          min_key_metric=0.0).attach(evaluator)
    evaluator.run([0], max_epochs=1)
    assert (tmp_path / "model.pt").is_file() == written


@pytest.mark.parametrize(("bundle", "config", "extra"), [
    ("point_supervised_segmentation", "train.json", None),
    ("point_supervised_segmentation", "train.json", "stage2.json"),
    ("multiorgan_ct_segmentation", "train.json", None),
    ("multiorgan_ct_segmentation", "train.json", "multi_gpu_train.json"),
])
def test_segmentation_trainers_attach_the_stop_and_the_floor(bundle, config, extra):
    from medrefine.bundle import find_bundle

    folder = find_bundle(bundle).path / "configs"
    merged = json.loads((folder / config).read_text())
    if extra:
        merged.update(json.loads((folder / extra).read_text()))
    assert merged["collapse_stop"]["_target_"] == "medrefine.handlers.CollapseStop"
    run = merged["run"]
    attach, train, check = (run.index(s) for s in ("$@collapse_stop.attach(@train#trainer)", "$@train#trainer.run()",
                                                   "$@collapse_stop.raise_if_collapsed()"))
    assert attach < train < check < len(run) - 1  # checked before the last-chance validation
    handlers = merged.get("validate#handlers") or merged["validate"]["handlers"]
    savers = [h for h in handlers if h["_target_"] == "medrefine.handlers.AtomicCheckpointSaver"]
    assert savers and all(h["min_key_metric"] == 0.0 for h in savers)


def _lesion_run(validations, *, epochs=12, patience=3):
    """Lesion classifier (targets of 3 and 2 classes): validation ``i`` predicts ``validations[i]``, a list of
    per-lesion logit vectors of length 5; the loss is flat. Returns ``(trainer, stop)``."""
    evaluator = Engine(lambda e, b: [{"pred": torch.tensor(v, dtype=torch.float32)} for v in validations[e.state.epoch - 1]])
    evaluator.state.key_metric_name = "val_balanced_accuracy"

    @evaluator.on(Events.EPOCH_COMPLETED)
    def _score(e):
        e.state.metrics = {"val_balanced_accuracy": 0.4}  # above 0: only the classes can tell a collapse

    trainer = Engine(lambda e, b: {"loss": 1.0})

    @trainer.on(Events.EPOCH_COMPLETED)
    def _validate(t):
        evaluator.state.max_epochs = t.state.epoch - 1
        evaluator.run([0], max_epochs=t.state.epoch)

    stop = CollapseStop(evaluator, patience=patience, class_groups=[3, 2], hint="keep class_weighting on")
    stop.attach(trainer)
    trainer.run([0], max_epochs=epochs)
    return trainer, stop


def test_a_classifier_giving_every_lesion_the_same_classes_is_stopped():
    same = [[0.1, 2.0, 0.3, 1.0, 0.0], [0.0, 3.0, 1.0, 2.0, -1.0], [1.0, 1.5, 0.0, 0.5, 0.2]]  # (1, 0) for all three
    trainer, stop = _lesion_run([same] * 12)
    assert trainer.state.epoch == 3
    with pytest.raises(TrainingCollapsed, match=r"every sample got classes \(1, 0\) per target \(pred\).*Try: keep class_weighting on$"):
        stop.raise_if_collapsed()


def test_a_classifier_that_varies_one_target_is_not_stopped():
    # target 1 always class 0, but target 2 differs between lesions: not one class throughout
    varied = [[0.1, 2.0, 0.3, 1.0, 0.0], [0.0, 3.0, 1.0, -2.0, 1.0], [1.0, 1.5, 0.0, 0.5, 0.2]]
    trainer, stop = _lesion_run([varied] * 12)
    assert trainer.state.epoch == 12 and stop.message is None
    stop.raise_if_collapsed()


def test_lesion_trainers_attach_the_stop_with_their_class_counts():
    from medrefine.bundle import find_bundle

    folder = find_bundle("lesion_classification").path / "configs"
    train = json.loads((folder / "train.json").read_text())
    assert train["collapse_stop"]["class_groups"] == "$@cohort.num_classes"
    for config in ("train.json", "multi_gpu_train.json"):
        run = json.loads((folder / config).read_text())["run"]
        attach, fit, check = (run.index(s) for s in ("$@collapse_stop.attach(@train#trainer)", "$@train#trainer.run()",
                                                     "$@collapse_stop.raise_if_collapsed()"))
        assert attach < fit < check, config


@pytest.mark.parametrize("bundle", ["annotation_refinement", "cardiac_motion"])
def test_implicit_trainers_attach_the_stop_before_they_export(bundle):
    """NeAR and NIMOSEF: a run whose validation Dice stays 0 while the loss is flat ends before export_model."""
    from medrefine.bundle import find_bundle

    folder = find_bundle(bundle).path / "configs"
    train = json.loads((folder / "train.json").read_text())
    assert train["collapse_stop"]["metric_name"] == "val_mean_dice" and train["collapse_stop"]["pred_keys"] == []
    for config in ("train.json", "multi_gpu_train.json"):
        run = json.loads((folder / config).read_text())["run"]
        attach, fit, check = (run.index(s) for s in ("$@collapse_stop.attach(@train#trainer)", "$@train#trainer.run()",
                                                     "$@collapse_stop.raise_if_collapsed()"))
        export = next(i for i, s in enumerate(run) if "export_model" in s)
        assert attach < fit < check < export, config


def test_never_above_fails_off_lets_a_short_zero_run_end():
    trainer, stop = _run([0.0, 0.0], max_epochs=2)
    stop.never_above_fails = False
    stop.raise_if_collapsed()  # two zero validations, patience 3: nothing to say
    trainer, stop = _run([0.0] * 5, max_epochs=5)
    stop.never_above_fails = False
    with pytest.raises(TrainingCollapsed, match="3 validations in a row"):
        stop.raise_if_collapsed()  # the in-a-row rule still holds

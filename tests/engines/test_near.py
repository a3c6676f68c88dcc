"""Tests of medrefine.engines.near (NeAR auto-decoder trainer)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from ignite.engine import Events

from medrefine.engines import (
    AutoDecoderTrainer,
    create_autodecoder_trainer,
    default_milestones,
    foreground_dice,
)
from medrefine.errors import InputError
from medrefine.inferers import decode_volume
from medrefine.networks import ImplicitRefiner

TINY = {"latent_dim": 8, "grid_channels": (6, 4), "grid_sizes": (2, 4), "hidden_channels": (16,), "grid_refine": False}


def _trainer(cases, tmp_path, max_epochs=2, seed=0, validate=False, **kw):
    """A trainer with the refinement bundle's handler stack: lr steps, (validation), latest checkpoint + resume, history."""
    from monai.handlers import CheckpointSaver, LrScheduleHandler, ValidationHandler

    from medrefine.engines import AutoDecoderEvaluator
    from medrefine.handlers import HistoryCSV, ResumeHandler

    torch.manual_seed(seed)
    net = ImplicitRefiner(len(cases), 3, **TINY)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1], gamma=0.5)
    args = {"max_epochs": max_epochs, "batch_size": 1, "train_resolution": 6, "num_points": 100}
    args.update(kw)
    evaluator = None
    if validate:
        best = CheckpointSaver(str(tmp_path / "ckpt"), {"network": net}, save_key_metric=True,
                               key_metric_filename="best_network.pt")
        evaluator = AutoDecoderEvaluator("cpu", net, cases, resolution=6, val_handlers=[best])
    trainer = AutoDecoderTrainer(net, opt, cases, **args)
    handlers = [LrScheduleHandler(sched, print_lr=False)]
    if evaluator is not None:
        handlers.append(ValidationHandler(interval=1, validator=evaluator, epoch_level=True))
    handlers += [ResumeHandler(tmp_path / "ckpt", {"network": net, "optimizer": opt, "lr_scheduler": sched}),
                 HistoryCSV(tmp_path / "logs" / "history.csv", evaluator=evaluator, optimizer=opt)]
    trainer._register_handlers(handlers)
    return trainer


class _Interrupt(Exception):
    pass


def _params(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _epochs(path):
    with open(path) as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


def test_resume_after_interruption_continues_exactly(blob_cases, tmp_path):
    cases = blob_cases[:2]
    # reference: two epochs in one go
    ref = _trainer(cases, tmp_path / "ref")
    ref.run()
    assert ref.state.epoch == 2

    # interrupted during epoch 2
    first = _trainer(cases, tmp_path / "run")

    @first.on(Events.ITERATION_STARTED)
    def _crash(engine):
        if engine.state.epoch == 2:
            raise _Interrupt()

    with pytest.raises(_Interrupt):
        first.run()
    ckpt_dir = tmp_path / "run" / "ckpt"
    assert [p.name for p in ckpt_dir.glob("latest_*.pt")] == ["latest_checkpoint_epoch=1.pt"]
    saved = torch.load(ckpt_dir / "latest_checkpoint_epoch=1.pt", weights_only=True)["network"]
    assert _epochs(tmp_path / "run" / "logs" / "history.csv") == [1]

    # restart with a differently initialised network: it must load epoch 1 and go on from there
    second = _trainer(cases, tmp_path / "run", seed=123)
    seen = {}

    @second.on(Events.STARTED)
    def _check(engine):
        seen["epoch"] = engine.state.epoch
        seen["params"] = _params(second.network)
        seen["lr"] = second.optimizer.param_groups[0]["lr"]

    second.run()
    assert seen["epoch"] == 1
    assert all(torch.equal(seen["params"][k], saved[k].cpu()) for k in saved)
    assert seen["lr"] == pytest.approx(5e-3)  # the scheduler state came back too
    assert second.state.epoch == 2 and second.state.iteration == 4
    final, expected = _params(second.network), _params(ref.network)
    for k in expected:
        torch.testing.assert_close(final[k], expected[k], atol=1e-6, rtol=1e-5)
    assert [p.name for p in ckpt_dir.glob("latest_*.pt")] == ["latest_checkpoint_epoch=2.pt"]
    assert _epochs(tmp_path / "run" / "logs" / "history.csv") == [1, 2]

    # a finished run is not re-run; a larger max_epochs extends it
    third = _trainer(cases, tmp_path / "run", seed=7)
    assert third.run().epoch == 2
    assert third.run(max_epochs=3).epoch == 3
    assert _epochs(tmp_path / "run" / "logs" / "history.csv") == [1, 2, 3]


def test_validation_best_checkpoint_history(blob_cases, tmp_path):
    clean = [dict(c, label_clean=c["label"]) for c in blob_cases[:2]]
    trainer = _trainer(clean, tmp_path, max_epochs=2, validate=True)
    trainer.run()
    metrics = trainer.validator.state.metrics
    assert set(metrics) >= {"val_dice_noisy", "val_dice_clean", "val_mean_dice"}
    assert metrics["val_mean_dice"] == metrics["val_dice_clean"]
    assert trainer.validator.state.epoch == 2  # the evaluator runs at the trainer's epoch
    assert trainer.validate(resolution=6) == pytest.approx(metrics)  # the method and the evaluator agree
    assert trainer.best_checkpoint == tmp_path / "ckpt" / "best_network.pt" and trainer.best_checkpoint.is_file()
    assert set(torch.load(trainer.best_checkpoint, weights_only=True)) == set(trainer.network.state_dict())
    with open(tmp_path / "logs" / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and float(rows[0]["train_loss"]) > 0 and float(rows[0]["train_ce"]) > 0
    assert float(rows[1]["val_mean_dice"]) == pytest.approx(metrics["val_mean_dice"])
    assert float(rows[0]["lr"]) == pytest.approx(5e-3) and float(rows[1]["lr"]) == pytest.approx(5e-3)


def test_end_to_end_overfit_reaches_high_dice(blob_cases):
    cases = blob_cases[:2]
    torch.manual_seed(0)
    net = ImplicitRefiner(2, 3, latent_dim=16, grid_channels=(8, 8), grid_sizes=(4, 8), hidden_channels=(32, 32),
                          grid_refine=False)  # fmt: skip
    trainer = create_autodecoder_trainer(net, cases, lr=5e-3, max_epochs=150, batch_size=2, train_resolution=12)
    trainer.run()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(5e-5)  # milestones 90, 127 of 150
    assert trainer.validate()["val_dice_noisy"] > 0.6
    for n, case in enumerate(cases):
        label, entropy = decode_volume(net, n, torch.as_tensor(case["image"]), return_probabilities=False)
        assert foreground_dice(label[0], torch.as_tensor(case["label"]), 3) > 0.85
        assert entropy.shape == (1, 24, 24, 24) and float(entropy.min()) >= 0


def test_built_from_bundle_config(blob_cases, tmp_path):
    from monai.bundle import ConfigParser

    config = {
        "cases": "$None",
        "network": {"_target_": "medrefine.networks.ImplicitRefiner", "num_cases": 2, "out_channels": 3,
                    "latent_dim": 8, "grid_channels": [4], "grid_sizes": [4], "hidden_channels": [8]},
        "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.001},
        "loss": {"_target_": "medrefine.losses.near.NeARLoss", "num_classes": 3, "class_weights": "inverse_frequency"},
        "trainer": {"_target_": "medrefine.engines.AutoDecoderTrainer", "network": "@network",
                    "optimizer": "@optimizer", "dataset": "@cases", "loss_function": "@loss", "max_epochs": 1,
                    "batch_size": 2, "train_resolution": 4},
    }  # fmt: skip
    parser = ConfigParser(config)
    parser["cases"] = blob_cases[:2]
    trainer = parser.get_parsed_content("trainer")
    assert isinstance(trainer, AutoDecoderTrainer)
    assert trainer.run().epoch == 1


def test_resume_refuses_a_foreign_checkpoint(blob_cases, tmp_path):
    _trainer(blob_cases[:2], tmp_path, max_epochs=1).run()
    other = _trainer(blob_cases, tmp_path, max_epochs=2)  # 3 cases: another latent table
    with pytest.raises(InputError, match=r"ckpt: holds a checkpoint \(latest_checkpoint_epoch=1\.pt\) of "
                                         r"medrefine\.networks\.ImplicitRefiner that differs from the configured model "
                                         r"\(num_cases 2 there, 3 here\); start afresh with --run NEW"):
        other.run()


def test_trainer_argument_errors(blob_cases, tmp_path):
    net = ImplicitRefiner(2, 3, **TINY)
    with pytest.raises(InputError, match=r"`network.num_cases` \(2\) must equal"):
        AutoDecoderTrainer(net, torch.optim.SGD(net.parameters(), 0.1), blob_cases)
    with pytest.raises(TypeError, match="key_metric"):  # no reference label chooses anything: there is no such option
        _trainer(blob_cases[:2], tmp_path, key_metric="clean")


def test_default_milestones_scale_with_epochs():
    assert default_milestones(50) == [30, 42]
    assert default_milestones(200) == [120, 170]  # NeAR's recipe
    assert default_milestones(1) == [1]


def test_default_latent_weight_scales_down_for_long_runs_and_the_bundle_uses_it():
    import json
    from pathlib import Path

    from medrefine.engines import default_epochs, default_latent_weight

    assert default_latent_weight(default_epochs(16)) == 1.0
    assert default_latent_weight(default_epochs(4)) == 0.5
    assert default_latent_weight(default_epochs(1)) == 0.125  # the one real CT: 1,600 epochs
    assert default_latent_weight(100, weight=0.4) == 0.4
    with pytest.raises(ValueError, match="max_epochs"):
        default_latent_weight(0)
    cfg = json.loads((Path(__file__).resolve().parents[2] / "bundles/annotation_refinement/configs/train.json").read_text())
    assert cfg["lambda_latent"] is None and "default_latent_weight(@max_epochs)" in cfg["latent_weight"]
    assert cfg["loss"]["lambda_latent"] == "@latent_weight"
    assert cfg["class_weight_cap"] == 2.0

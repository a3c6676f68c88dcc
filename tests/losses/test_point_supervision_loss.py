"""PA-Seg's stage-1 objective: seed loss + ramp-up x (CRF + variance), on a packed target."""

from __future__ import annotations

import math

import pytest
import torch

from medrefine.errors import InputError
from medrefine.losses import (
    UNLABELED,
    GatedCRFLoss,
    PartialCEDiceLoss,
    PointSupervisionLoss,
    VarianceMinimizationLoss,
    pack_image_with_target,
)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 8, 12, 10, generator=g)
    image = torch.rand(2, 1, 8, 12, 10, generator=g)
    seeds = torch.full((2, 1, 8, 12, 10), UNLABELED, dtype=torch.long)
    seeds[:, :, :2] = 0
    seeds[:, :, 4:6, 5:7, 4:6] = 1
    return logits, image, seeds


def test_without_regularisers_it_is_the_seed_loss(batch):
    logits, image, seeds = batch
    loss = PointSupervisionLoss(weight_crf=0.0, weight_variance=0.0)
    expected = PartialCEDiceLoss()(logits, seeds)
    assert torch.allclose(loss(logits, pack_image_with_target(seeds, image)), expected)


def test_total_is_seed_plus_ramped_regularisers(batch):
    logits, image, seeds = batch
    loss = PointSupervisionLoss(weight_crf=0.7, weight_variance=0.2, rampup_epochs=10, crf_radius=2, crf_downsample=2,
                                spacing=(1.0, 1.0, 2.0))
    loss.epoch = 5
    ramp = math.exp(-5.0 * (1 - 0.5) ** 2)
    seed = PartialCEDiceLoss()(logits, seeds)
    crf = GatedCRFLoss(radius=2, downsample_factor=2, spatial_dims="multiview2d", softmax=True)(logits, image, spacing=(1.0, 1.0, 2.0))
    var = VarianceMinimizationLoss(softmax=True)(logits, image)
    got = loss(logits, pack_image_with_target(seeds, image))
    assert torch.allclose(got, seed + ramp * (0.7 * crf + 0.2 * var), atol=1e-6)
    assert loss.last_terms["rampup"] == pytest.approx(ramp)


def test_unlabeled_region_gates_the_crf(batch):
    logits, image, seeds = batch
    packed = pack_image_with_target(seeds, image)
    everywhere = PointSupervisionLoss(weight_variance=0.0, rampup_epochs=0, crf_radius=2, crf_region="all")
    unlabeled = PointSupervisionLoss(weight_variance=0.0, rampup_epochs=0, crf_radius=2, crf_region="unlabeled")
    assert not torch.allclose(everywhere(logits, packed), unlabeled(logits, packed))
    with pytest.raises(InputError, match="crf_region"):
        PointSupervisionLoss(crf_region="everywhere")


def test_gradient_reaches_the_logits(batch):
    logits, image, seeds = batch
    logits = logits.clone().requires_grad_(True)
    loss = PointSupervisionLoss(rampup_epochs=0, crf_radius=2)
    loss(logits, pack_image_with_target(seeds, image)).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_unpacked_target_is_refused(batch):
    logits, _, seeds = batch
    with pytest.raises(InputError, match="packed"):
        PointSupervisionLoss()(logits, seeds.float())


def test_attach_follows_the_trainer_epoch():
    from ignite.engine import Engine

    loss = PointSupervisionLoss(rampup_epochs=4)
    seen = []
    engine = Engine(lambda e, b: seen.append(loss.rampup()))
    loss.attach(engine)
    engine.run([0], max_epochs=5)
    assert seen[0] == pytest.approx(math.exp(-5.0)) and seen[-1] == pytest.approx(1.0)
    assert seen == sorted(seen)

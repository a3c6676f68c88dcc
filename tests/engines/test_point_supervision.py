"""Stage 2 of PA-Seg: two networks, frozen teachers, cross distillation."""

from __future__ import annotations

import math

import pytest
import torch

from medrefine.engines import CrossDistillationTrainer, distillation_loss, frozen_copy
from medrefine.errors import InputError
from medrefine.losses import UNLABELED


def test_distillation_loss_by_hand():
    student = torch.tensor([0.0, 0.0]).view(1, 2, 1)
    teacher = torch.tensor([math.log(3.0) * 2, 0.0]).view(1, 2, 1)  # softmax(teacher / 2) = (0.75, 0.25)
    expected = (0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)) * 4.0
    assert float(distillation_loss(student, teacher, temperature=2.0)) == pytest.approx(expected, rel=1e-5)
    assert float(distillation_loss(teacher, teacher)) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(InputError, match="temperature"):
        distillation_loss(student, teacher, temperature=0.0)


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 1))


def _loader(n: int = 2):
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(n):
        seeds = torch.full((1, 1, 6, 6, 6), UNLABELED, dtype=torch.long)
        seeds[..., :2] = 0
        seeds[..., 3, 3, 3] = 1
        batches.append({"image": torch.rand(1, 1, 6, 6, 6, generator=g), "seeds": seeds})
    return batches


def _trainer(epochs: int, refresh: int, **kw) -> CrossDistillationTrainer:
    nets = [_net(0), _net(1)]
    opts = [torch.optim.SGD(n.parameters(), lr=0.1) for n in nets]
    return CrossDistillationTrainer("cpu", epochs, _loader(), networks=nets, optimizers=opts, refresh_epochs=refresh, **kw)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_both_networks_learn_and_teachers_stay_frozen_between_refreshes():
    trainer = _trainer(epochs=2, refresh=5)
    before = [frozen_copy(n) for n in trainer.networks]
    trainer.run()
    for net, old, teacher in zip(trainer.networks, before, trainer.teachers):
        assert not _same(net, old)  # trained
        assert _same(teacher, old)  # no refresh before epoch 5
        assert not any(p.requires_grad for p in teacher.parameters())
    out = trainer.state.output
    out = out[0] if isinstance(out, list) else out  # decollated per item
    assert float(out["loss"]) == pytest.approx(out["loss1"] + out["loss2"], rel=1e-5)


def test_teachers_are_refreshed_every_k_epochs():
    trainer = _trainer(epochs=3, refresh=2)
    snapshots = {}

    from ignite.engine import Events

    @trainer.on(Events.EPOCH_COMPLETED)
    def _snap(engine):
        snapshots[engine.state.epoch] = ([frozen_copy(n) for n in trainer.networks], [frozen_copy(t) for t in trainer.teachers])

    trainer.run()
    nets2, teachers2 = snapshots[2]
    assert all(_same(n, t) for n, t in zip(nets2, teachers2))  # refreshed at the end of epoch 2
    nets1, teachers1 = snapshots[1]
    assert not any(_same(n, t) for n, t in zip(nets1, teachers1))


def test_hard_labels_keep_the_seeds():
    trainer = _trainer(epochs=1, refresh=1)
    logits = torch.zeros(1, 2, 6, 6, 6)
    logits[:, 1] = 1.0  # the teacher says foreground everywhere
    seeds = _loader(1)[0]["seeds"]
    hard = trainer._hard_labels(logits, seeds)
    assert int(hard[..., 0, 0, 0]) == 0 and int(hard[..., 3, 3, 3]) == 1 and int(hard[..., 5, 5, 5]) == 1
    trainer.keep_seeds = False
    assert int(trainer._hard_labels(logits, seeds)[..., 0, 0, 0]) == 1


def test_teacher_flips_average_the_mirrored_passes():
    trainer = _trainer(epochs=1, refresh=1, teacher_flips=(0, 2))
    image = _loader(1)[0]["image"]
    with torch.no_grad():
        got = trainer.teacher_logits(image)
        for teacher, logits in zip(trainer.teachers, got):
            plain = teacher(image)
            by_hand = (plain + torch.flip(teacher(torch.flip(image, (2,))), (2,)) + torch.flip(teacher(torch.flip(image, (4,))), (4,))) / 3
            assert torch.allclose(logits, by_hand, atol=1e-6)
            assert not torch.allclose(logits, plain, atol=1e-4)  # the mirrored passes count
    trainer.run()  # trains with them
    with pytest.raises(InputError, match=r"`teacher_flips` \[3\] name axes beyond the image's 3 spatial axes"):
        _trainer(epochs=1, refresh=1, teacher_flips=(3,)).teacher_logits(image)
    with pytest.raises(InputError, match="distinct spatial axes"):
        _trainer(epochs=1, refresh=1, teacher_flips=(1, 1))


def test_regulariser_is_added_to_both_losses():
    calls = []

    def regulariser(logits, image):
        calls.append((tuple(logits.shape), tuple(image.shape)))
        return logits.sum() * 0.0 + 2.0

    runs = []
    for kw in ({}, {"regulariser": regulariser, "weight_regulariser": 0.25}):
        nets = [_net(0), _net(1)]
        opts = [torch.optim.SGD(n.parameters(), lr=0.1) for n in nets]
        trainer = CrossDistillationTrainer("cpu", 1, _loader(1), networks=nets, optimizers=opts, **kw)
        trainer.run()
        out = trainer.state.output
        runs.append(out[0] if isinstance(out, list) else out)
    assert calls == [((1, 2, 6, 6, 6), (1, 1, 6, 6, 6))] * 2  # once per network, logits and image
    assert runs[1]["loss1"] == pytest.approx(runs[0]["loss1"] + 0.5, rel=1e-5)
    assert runs[1]["loss2"] == pytest.approx(runs[0]["loss2"] + 0.5, rel=1e-5)


def test_bad_arguments_are_refused():
    nets = [_net(0), _net(1)]
    opts = [torch.optim.SGD(n.parameters(), lr=0.1) for n in nets]
    with pytest.raises(InputError, match="two networks"):
        CrossDistillationTrainer("cpu", 1, _loader(), networks=nets[:1], optimizers=opts[:1])
    with pytest.raises(InputError, match="`weight_regulariser` must be >= 0, got -1"):
        CrossDistillationTrainer("cpu", 1, _loader(), networks=nets, optimizers=opts, weight_regulariser=-1)
    with pytest.raises(InputError, match="weight_kd"):
        CrossDistillationTrainer("cpu", 1, _loader(), networks=nets, optimizers=opts, weight_kd=1.5)


def test_student_view_mirrors_and_noises_only_the_students_input():
    trainer = _trainer(epochs=1, refresh=1, student_flips=(0, 1, 2), student_noise=0.1)
    image = _loader(1)[0]["image"]
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        view, dims = trainer._student_view(image)
        seen.add(dims)
        assert set(dims) <= {2, 3, 4}
        noise = view - (torch.flip(image, dims) if dims else image)
        assert 0.05 < float(noise.std()) < 0.15 and abs(float(noise.mean())) < 0.05
    assert len(seen) > 3  # random subsets of the axes


def test_student_flips_mirror_the_targets_too():
    """Loss of a flipped step == loss of the students on the flipped image against the flipped teachers' labels."""
    from monai.losses import DiceCELoss

    trainer = _trainer(epochs=1, refresh=1, student_flips=(1,))
    batch = _loader(1)[0]
    image, seeds = batch["image"], batch["seeds"]
    torch.manual_seed(3)
    _, dims = trainer._student_view(image)
    assert dims == (3,)  # this seed flips axis 1 (so the check below means something)
    with torch.no_grad():
        teachers = trainer.teacher_logits(image)
        hard = [trainer._hard_labels(t, seeds) for t in teachers]
        flipped = torch.flip(image, dims)
        expected = []
        for index, network in enumerate(trainer.networks):
            logits = network(flipped)
            self_term = DiceCELoss(to_onehot_y=True, softmax=True)(logits, torch.flip(hard[index], dims))
            kd_term = distillation_loss(logits, torch.flip(teachers[1 - index], dims))
            expected.append(float(0.5 * self_term + 0.5 * kd_term))
    torch.manual_seed(3)
    trainer.state.device = torch.device("cpu")
    out = trainer._iteration(trainer, batch)
    out = out[0] if isinstance(out, list) else out
    assert out["loss1"] == pytest.approx(expected[0], rel=1e-5) and out["loss2"] == pytest.approx(expected[1], rel=1e-5)
    # the same step without mirroring the targets would give another loss
    with torch.no_grad():
        logits = trainer.networks[0](flipped)
        unflipped = DiceCELoss(to_onehot_y=True, softmax=True)(logits, hard[0])
        mirrored = DiceCELoss(to_onehot_y=True, softmax=True)(logits, torch.flip(hard[0], dims))
    assert float(unflipped) != pytest.approx(float(mirrored), rel=1e-3)


class _CountingRefiner:
    """Says foreground everywhere; counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, logits, image):
        self.calls += 1
        out = torch.zeros_like(logits)
        out[:, 1] = 5.0
        return out


@pytest.mark.parametrize("epochs, refresh, expected_calls", [(3, 5, 2), (3, 1, 6)])
def test_refined_labels_are_cached_until_the_teachers_refresh(epochs, refresh, expected_calls):
    refiner = _CountingRefiner()
    nets = [_net(0), _net(1)]
    opts = [torch.optim.SGD(n.parameters(), lr=0.1) for n in nets]
    trainer = CrossDistillationTrainer("cpu", epochs, _loader(1), networks=nets, optimizers=opts,
                                       refresh_epochs=refresh, label_refiner=refiner)
    trainer.run()
    # one image, two teachers: computed once per teacher, again after each refresh (epochs 1 and 2 when k = 1)
    assert refiner.calls == expected_calls
    batch = _loader(1)[0]
    logits = torch.zeros(1, 2, 6, 6, 6)
    hard = trainer._hard_labels(trainer.refined_logits(0, logits, batch["image"]), batch["seeds"])
    assert int(hard[..., 5, 5, 5]) == 1 and int(hard[..., 0, 0, 0]) == 0  # refined foreground; the seeds kept


def test_teachers_of_ddp_wrapped_networks_are_plain_copies_and_refresh_from_the_inner_module(tmp_path):
    """Stage 2 under torchrun wraps both networks in DistributedDataParallel: the teachers copy the inner
    module (a deep copy of the wrapper would hold the process group) and refresh from its state dict,
    whose keys lack the wrapper's ``module.`` prefix."""
    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        nets = [torch.nn.parallel.DistributedDataParallel(_net(seed)) for seed in range(2)]
        teacher = frozen_copy(nets[0])
        assert not isinstance(teacher, torch.nn.parallel.DistributedDataParallel)
        assert _same(teacher, nets[0].module) and not any(p.requires_grad for p in teacher.parameters())
        opts = [torch.optim.SGD(n.parameters(), lr=0.5) for n in nets]
        trainer = CrossDistillationTrainer("cpu", 1, _loader(), networks=nets, optimizers=opts, refresh_epochs=1)
        trainer.run()
        assert not _same(trainer.teachers[0], nets[0].module)  # trained, no refresh after the last epoch
        trainer.refresh_teachers()
        assert all(_same(t, n.module) for t, n in zip(trainer.teachers, nets))
    finally:
        torch.distributed.destroy_process_group()

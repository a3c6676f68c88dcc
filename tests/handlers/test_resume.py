"""Tests of medrefine.handlers.resume: finding, refusing and loading the latest checkpoint."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from ignite.engine import Engine, Events

from medrefine.errors import InputError
from medrefine.handlers import ResumeHandler, latest_checkpoint, load_checkpoint


class _Payload:
    """Unpickling this runs ``os.system`` (what a planted checkpoint could do with weights_only=False)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _engine(max_epochs=3):
    engine = Engine(lambda e, b: None)
    engine.state.max_epochs = max_epochs
    return engine


def test_latest_checkpoint_orders_by_epoch_not_name(tmp_path):
    for epoch in (2, 10, 9):
        torch.save({"x": torch.zeros(1)}, tmp_path / f"latest_checkpoint_epoch={epoch}.pt")
    (tmp_path / "best_network.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path).name == "latest_checkpoint_epoch=10.pt"  # "9" > "10" as text
    assert latest_checkpoint(tmp_path / "absent") is None
    assert latest_checkpoint(tmp_path, prefix="other") is None


def test_pickle_payload_is_refused_and_not_executed(tmp_path):
    ckpt_dir, marker = tmp_path / "models", tmp_path / "pwned"
    ckpt_dir.mkdir()
    planted = ckpt_dir / "latest_checkpoint_epoch=7.pt"
    planted.write_bytes(pickle.dumps({"trainer": _Payload(marker)}))
    net = torch.nn.Linear(2, 2)
    engine = _engine()
    ResumeHandler(ckpt_dir, {"network": net}).attach(engine)
    with pytest.raises(InputError, match=r"latest_checkpoint_epoch=7\.pt: expected a checkpoint holding tensors and plain values only, found content that cannot be loaded without running code .*refused") as info:
        engine.run([0], max_epochs=3)
    assert "\n" not in str(info.value)
    assert not marker.exists()  # the payload never ran
    with pytest.raises(InputError, match="refused"):
        load_checkpoint(planted)
    assert not marker.exists()


def test_truncated_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "latest_checkpoint_epoch=1.pt"
    torch.save({"network": torch.nn.Linear(2, 2).state_dict()}, path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InputError, match=r"latest_checkpoint_epoch=1\.pt: expected a checkpoint, found unreadable content"):
        load_checkpoint(path)


def test_saves_every_epoch_resumes_and_drops_the_resumed_file(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    live = {"net": net, "opt": opt}

    def step(engine, batch):
        live["opt"].zero_grad()
        live["net"](torch.ones(1, 2)).sum().backward()
        live["opt"].step()

    first = Engine(step)
    ResumeHandler(tmp_path, {"network": net, "optimizer": opt}).attach(first)
    first.run([0, 1], max_epochs=2)
    assert [p.name for p in tmp_path.glob("*.pt")] == ["latest_checkpoint_epoch=2.pt"]
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    assert set(torch.load(tmp_path / "latest_checkpoint_epoch=2.pt", weights_only=True)) == {"network", "optimizer", "trainer"}

    fresh = torch.nn.Linear(2, 1)
    live.update(net=fresh, opt=torch.optim.SGD(fresh.parameters(), lr=0.1))
    second = Engine(step)
    handler = ResumeHandler(tmp_path, {"network": fresh, "optimizer": live["opt"]})
    handler.attach(second)
    seen = {}
    second.add_event_handler(Events.STARTED, lambda e: seen.update(epoch=e.state.epoch, iteration=e.state.iteration))
    second.run([0, 1], max_epochs=3)
    assert seen == {"epoch": 2, "iteration": 4}
    assert handler.resumed_from is None  # dropped once epoch 3 was saved
    assert [p.name for p in tmp_path.glob("*.pt")] == ["latest_checkpoint_epoch=3.pt"]
    assert second.state.epoch == 3
    assert torch.allclose(saved["weight"] - 0.1 * 2, fresh.weight.detach())  # resumed, then two SGD steps of grad 1


def test_resume_false_and_too_few_epochs(tmp_path):
    net = torch.nn.Linear(2, 1)
    engine = Engine(lambda e, b: None)
    ResumeHandler(tmp_path, {"network": net}).attach(engine)
    engine.run([0], max_epochs=4)
    shorter = Engine(lambda e, b: None)
    ResumeHandler(tmp_path, {"network": net}).attach(shorter)
    with pytest.raises(InputError, match=r"at epoch 4, beyond max_epochs 2"):
        shorter.run([0], max_epochs=2)
    again = Engine(lambda e, b: None)
    ResumeHandler(tmp_path, {"network": net}, resume=False).attach(again)
    again.run([0], max_epochs=1)
    assert again.state.epoch == 1
    # the epoch-4 checkpoint was replaced: a later run continues the fresh one, not the old one
    assert [p.name for p in tmp_path.glob("*.pt")] == ["latest_checkpoint_epoch=1.pt"]


def _described(net, **arguments):
    from medrefine.networks.describe import record_init_args

    return record_init_args(net, "torch.nn.Linear", arguments)


def test_checkpoint_of_another_network_is_refused_before_the_first_epoch(tmp_path):
    small = _described(torch.nn.Linear(2, 1), in_features=2, out_features=1)
    ResumeHandler(tmp_path, {"network": small}).attach(first := Engine(lambda e, b: None))
    first.run([0], max_epochs=2)
    import json

    described = json.loads((tmp_path / "latest_checkpoint.json").read_text())["network"]
    assert described == {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 1}

    big = _described(torch.nn.Linear(2, 5, bias=False), in_features=2, out_features=5, bias=False)
    steps = []
    second = Engine(lambda e, b: steps.append(b))
    ResumeHandler(tmp_path, {"network": big}).attach(second)
    with pytest.raises(InputError) as info:
        second.run([0], max_epochs=4)
    assert str(info.value) == (
        f"{tmp_path}: holds a checkpoint (latest_checkpoint_epoch=2.pt) of torch.nn.Linear that differs from the "
        "configured model (bias (unset) there, false here; out_features 1 there, 5 here); start afresh with --run NEW "
        f"(or --work-dir NEW), --set resume=false (replaces it), or delete {tmp_path}")
    assert steps == [] and (tmp_path / "latest_checkpoint_epoch=2.pt").is_file()  # nothing ran, nothing replaced

    # the same network (another instance, same arguments) resumes
    same = _described(torch.nn.Linear(2, 1), in_features=2, out_features=1)
    third = Engine(lambda e, b: steps.append(b))
    ResumeHandler(tmp_path, {"network": same}).attach(third)
    third.run([0], max_epochs=3)
    assert third.state.epoch == 3 and steps == [0]  # epochs 1-2 came from the checkpoint: one epoch ran
    assert torch.equal(same.weight, small.weight)  # loaded from the checkpoint (no optimiser: unchanged since)

    # resume=False starts the other network afresh and describes it
    fresh = Engine(lambda e, b: None)
    ResumeHandler(tmp_path, {"model": big}, resume=False).attach(fresh)
    fresh.run([0], max_epochs=1)
    assert json.loads((tmp_path / "latest_checkpoint.json").read_text())["network"]["out_features"] == 5


def test_argument_errors():
    with pytest.raises(ValueError, match="`save_dict` must name at least one object"):
        ResumeHandler("x", {})
    with pytest.raises(ValueError, match="must not hold 'trainer'"):
        ResumeHandler("x", {"trainer": torch.nn.Linear(1, 1)})

"""Tests of medrefine.handlers.history: one row per epoch, validation columns, truncation on resume."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest
import torch
from ignite.engine import Engine, Events

from medrefine.handlers import HistoryCSV


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _trainer(losses):
    """An engine whose iteration ``i`` (1-based) outputs ``losses[i - 1]``, as a MONAI trainer's per-sample list."""
    return Engine(lambda e, b: [{"loss": torch.tensor(losses[e.state.iteration - 1]), "pred": torch.zeros(2, 2)}])


def test_one_row_per_epoch_with_means_lr_and_validation(tmp_path):
    engine = _trainer([1.0, 3.0, 5.0, 7.0])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.25)
    evaluator = SimpleNamespace(state=SimpleNamespace(epoch=0, metrics={}))

    @engine.on(Events.EPOCH_COMPLETED)
    def _validate(e):  # validates in epoch 2 only, as a ValidationHandler with interval 2
        if e.state.epoch == 2:
            evaluator.state.epoch, evaluator.state.metrics = 2, {"val_mean_dice": 0.5}

    HistoryCSV(tmp_path / "history.csv", evaluator=evaluator, optimizer=opt, png_path=tmp_path / "curve.png").attach(engine)
    engine.run([0, 1], max_epochs=2)
    rows = _rows(tmp_path / "history.csv")
    assert list(rows[0])[:4] == ["epoch", "iteration", "train_loss", "lr"]
    assert [(r["epoch"], r["iteration"], float(r["train_loss"])) for r in rows] == [("1", "2", 2.0), ("2", "4", 6.0)]
    assert rows[0]["val_mean_dice"] == "" and float(rows[1]["val_mean_dice"]) == 0.5
    assert float(rows[1]["lr"]) == 0.25
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_resume_truncates_rows_after_the_resumed_epoch(tmp_path):
    path = tmp_path / "history.csv"
    HistoryCSV(path).attach(first := _trainer([1.0] * 8))
    first.run([0, 1], max_epochs=4)
    assert [r["epoch"] for r in _rows(path)] == ["1", "2", "3", "4"]

    resumed = _trainer([2.0] * 8)
    resumed.add_event_handler(Events.STARTED, lambda e: e.state.__dict__.update(epoch=2, iteration=4))  # as ResumeHandler
    HistoryCSV(path).attach(resumed)
    seen = {}

    @resumed.on(Events.EPOCH_STARTED)
    def _look(e):  # after the history's own EPOCH_STARTED handler
        seen.setdefault("rows", [r["epoch"] for r in _rows(path)])

    resumed.run([0, 1], max_epochs=3)
    assert seen["rows"] == ["1", "2"]  # rows of epochs 3 and 4 dropped as the resumed run starts
    rows = _rows(path)
    assert [(r["epoch"], float(r["train_loss"])) for r in rows] == [("1", 1.0), ("2", 1.0), ("3", 2.0)]


def test_other_ranks_do_not_write(tmp_path, monkeypatch):
    import medrefine.handlers.history as history

    monkeypatch.setattr(history, "_rank", lambda: 1)
    HistoryCSV(tmp_path / "history.csv").attach(engine := _trainer([1.0, 1.0]))
    engine.run([0, 1], max_epochs=1)
    assert not (tmp_path / "history.csv").exists()


@pytest.mark.parametrize("output, expected", [
    ({"loss": 2.0, "ce": torch.tensor(1.5), "flag": True, "image": torch.zeros(3)}, {"loss": 2.0, "ce": 1.5}),
    ([{"loss": torch.tensor(1.0)}, {"loss": torch.tensor(3.0)}], {"loss": 2.0}),
    (None, {}),
])
def test_scalars_of_an_output(output, expected):
    from medrefine.handlers.history import _scalars

    assert _scalars(output) == pytest.approx(expected)

"""EpochProgress: one bar over the run's epochs, with the epoch's mean loss and the last validation."""

from __future__ import annotations

import pytest
from ignite.engine import Engine, Events

from medrefine.handlers import EpochProgress


def test_one_bar_counts_epochs_and_shows_loss_and_metrics(monkeypatch):
    bars = []

    class FakeBar:
        def __init__(self, total, initial, **kwargs):
            self.total, self.n, self.postfixes, self.closed = total, initial, [], False
            bars.append(self)

        def set_postfix(self, postfix, refresh=False):
            self.postfixes.append(dict(postfix))

        def update(self, n):
            self.n += n

        def close(self):
            self.closed = True

    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", FakeBar)
    losses = iter([1.0, 3.0, 0.5, 0.25, 2.0, 4.0])
    engine = Engine(lambda e, batch: {"loss": next(losses)})

    @engine.on(Events.EPOCH_COMPLETED)
    def _validate(e):
        e.state.metrics["val_mean_dice"] = 0.1 * e.state.epoch

    EpochProgress().attach(engine)
    engine.run(range(2), max_epochs=3)
    assert len(bars) == 1, "one bar for the whole run"
    bar = bars[0]
    assert bar.total == 3 and bar.n == 3 and bar.closed
    assert [p["loss"] for p in bar.postfixes] == ["2.0000", "0.3750", "3.0000"]  # the epoch means
    # the progress handler was attached after the validation: it shows that epoch's metric
    assert [p["val_mean_dice"] for p in bar.postfixes] == ["0.1000", "0.2000", "0.3000"]


def test_disabled_attaches_nothing():
    engine = Engine(lambda e, batch: {"loss": 1.0})
    before = sum(len(engine._event_handlers[ev]) for ev in engine._event_handlers)
    EpochProgress(enabled=False).attach(engine)
    assert sum(len(engine._event_handlers[ev]) for ev in engine._event_handlers) == before


def test_one_summary_line_per_validation(monkeypatch):
    lines = []

    class FakeBar:
        fp = None

        def __init__(self, total, initial, **kwargs):
            self.n = initial

        def set_postfix(self, postfix, refresh=False):
            pass

        def update(self, n):
            self.n += n

        def write(self, line, file=None):
            lines.append(line)

        def close(self):
            pass

    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", FakeBar)
    trainer = Engine(lambda e, batch: {"loss": 1.0})
    evaluator = Engine(lambda e, batch: None)
    scores = iter([0.5, 0.25])

    @evaluator.on(Events.EPOCH_COMPLETED)
    def _score(e):
        e.state.metrics = {"val_mean_dice": next(scores), "note": "text is skipped"}
        best = max(getattr(e.state, "best_metric", -1.0), e.state.metrics["val_mean_dice"])
        if best != getattr(e.state, "best_metric", None):
            e.state.best_metric, e.state.best_metric_epoch = best, trainer.state.epoch

    @trainer.on(Events.EPOCH_COMPLETED(every=2))
    def _validate(e):
        evaluator.run(range(1))

    EpochProgress(evaluator=evaluator).attach(trainer)
    trainer.run(range(2), max_epochs=4)
    assert lines == ["epoch 2/4: val_mean_dice 0.5000 (best 0.5000 at epoch 2)",
                     "epoch 4/4: val_mean_dice 0.2500 (best 0.5000 at epoch 2)"]


def test_summary_lines_are_thinned_to_max_lines(monkeypatch):
    lines = []

    class FakeBar:
        fp = None

        def __init__(self, total, initial, **kwargs):
            pass

        def set_postfix(self, postfix, refresh=False):
            pass

        def update(self, n):
            pass

        def write(self, line, file=None):
            lines.append(line)

        def close(self):
            pass

    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", FakeBar)
    trainer = Engine(lambda e, batch: {"loss": 1.0})
    evaluator = Engine(lambda e, batch: None)

    @evaluator.on(Events.EPOCH_COMPLETED)
    def _score(e):
        e.state.metrics = {"acc": 0.5}

    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run(range(1)))  # val_interval=1
    EpochProgress(evaluator=evaluator, max_lines=4).attach(trainer)
    trainer.run(range(1), max_epochs=10)
    # every ceil(10 / 4) = 3 epochs from the first, and the last epoch
    assert [int(line.split()[1].split("/")[0]) for line in lines] == [1, 4, 7, 10]


def test_case_progress_one_bar_over_the_cases():
    from ignite.engine import Engine, Events

    from medrefine.handlers import CaseProgress

    engine = Engine(lambda e, batch: batch)
    progress = CaseProgress(desc="inference")
    progress.attach(engine)
    seen = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append((progress.bar.n, progress.bar.total)))
    engine.run(list(range(5)), max_epochs=1)
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert progress.bar is None  # closed at the end


def test_case_progress_lets_an_error_through():
    from ignite.engine import Engine

    from medrefine.handlers import CaseProgress

    def step(engine, batch):
        if batch == 2:
            raise ValueError("case 2 is bad")
        return batch

    engine = Engine(step)
    progress = CaseProgress()
    progress.attach(engine)
    with pytest.raises(ValueError, match="case 2 is bad"):
        engine.run(list(range(4)), max_epochs=1)
    assert progress.bar is None

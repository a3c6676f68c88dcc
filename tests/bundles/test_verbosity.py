"""medrefine.bundle.verbosity: MONAI's own stdout loggers held back in a quiet run, untouched with -v."""

from __future__ import annotations

import logging

from medrefine.bundle.verbosity import run_verbosity


def _emitted(name: str, level: int) -> bool:
    logger = logging.getLogger(name)
    record = logger.makeRecord(name, level, __file__, 0, "message", (), None)
    return logger.isEnabledFor(level) and logger.filter(record)


def test_quiet_holds_monai_and_ignite_and_restores_them():
    from monai.apps.utils import get_logger

    stats = get_logger("monai.handlers.StatsHandler")  # MONAI sets INFO each time it builds a StatsHandler
    ignite = logging.getLogger("ignite")
    ignite_before = ignite.level
    with run_verbosity(False):
        get_logger("monai.handlers.StatsHandler")  # ... inside the run too
        assert not _emitted("monai.handlers.StatsHandler", logging.INFO)
        assert _emitted("monai.handlers.StatsHandler", logging.WARNING)
        assert not _emitted("ignite.engine.engine.SupervisedTrainer", logging.ERROR)
    assert _emitted("monai.handlers.StatsHandler", logging.INFO) and stats.handlers  # MONAI's handler kept
    assert ignite.level == ignite_before
    with run_verbosity(True):
        assert _emitted("monai.handlers.StatsHandler", logging.INFO)

"""How much a bundle run prints: one progress bar and a line per validation, or (``-v``) everything.

A bundle's ``configs/logging.conf`` sets the root logger to INFO, and MONAI's loggers
(``monai.apps.utils.get_logger``: the bundle runner's "Setting logging properties", the
``StatsHandler``'s two lines per validation, the image writer's line per file) carry their own
stdout handler at INFO, so a 50-epoch run printed over a hundred lines around its progress bar.
:func:`run_verbosity` keeps the level the caller chose (``medrefine`` sets WARNING, ``-v`` INFO,
``-vv`` DEBUG) across the config's logging set-up: at WARNING those loggers are held at WARNING
and MONAI's deprecation notices are not shown; at INFO and below nothing changes.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from collections.abc import Iterator

__all__ = ["MONAI_LOGGERS", "QUIET_LOGGERS", "hold_quiet", "is_verbose", "run_verbosity"]

#: Loggers MONAI gives their own stdout handler at INFO (``monai.apps.utils.get_logger``, which
#: sets INFO again each time it is called): a quiet run filters their records below WARNING.
MONAI_LOGGERS = ("monai.bundle.workflows", "monai.bundle.scripts", "monai.handlers.StatsHandler",
                 "monai.data.image_writer")
#: Every logger a quiet run holds back: MONAI's, and ignite's (its engines log to ``ignite.*``).
QUIET_LOGGERS = (*MONAI_LOGGERS, "ignite")


class _AtLeast(logging.Filter):
    """Pass records at ``level`` or above (a logger filter survives ``get_logger``'s ``setLevel``)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


_QUIET = _AtLeast(logging.WARNING)


# MONAI notices that say nothing the user can act on (argument-default deprecations, the
# config-parsing and hash notices of monai.bundle)
_NOTICES = (
    (FutureWarning, r".*Current default value of argument"),
    (UserWarning, r".*parsing config_file"),
    (UserWarning, r".*No hash value provided"),
    (UserWarning, r".*StatsHandler may not output logs"),
)


def is_verbose() -> bool:
    """Whether the caller asked for INFO output (``medrefine -v``): the root logger's level is INFO or lower."""
    return logging.getLogger().getEffectiveLevel() <= logging.INFO


def hold_quiet(level: int) -> None:
    """Put the root logger back at ``level`` and, above INFO, hold MONAI's loggers at WARNING and
    ignite's at CRITICAL (its "Engine run is terminating due to exception" repeats the error the
    run ends with); at INFO and below, let MONAI's through again and leave ignite's to logging.conf.

    Call it after anything that sets up logging on its own (a config's ``logging.conf``)."""
    logging.getLogger().setLevel(level)
    quiet = level > logging.INFO
    for name in MONAI_LOGGERS:
        logger = _monai_logger(name)
        if quiet:
            logger.addFilter(_QUIET)  # once: filters are a set-like list without duplicates
        else:
            logger.removeFilter(_QUIET)
    if quiet:
        logging.getLogger("ignite").setLevel(logging.CRITICAL)


def _monai_logger(name: str) -> logging.Logger:
    """MONAI's logger ``name``, created as MONAI creates it (stdout handler) when it does not exist
    yet: a logger made by ``logging.getLogger`` first would never get MONAI's handler."""
    if not isinstance(logging.root.manager.loggerDict.get(name), logging.Logger):
        try:
            importlib.import_module(name)  # a module that makes its logger on import (monai.data.image_writer)
        except ImportError:
            pass
    if not isinstance(logging.root.manager.loggerDict.get(name), logging.Logger):
        from monai.apps.utils import get_logger

        get_logger(name)  # the StatsHandler's, made when the first one is built
    return logging.getLogger(name)


@contextlib.contextmanager
def run_verbosity(verbose: bool | None = None) -> Iterator[int]:
    """Keep a bundle run at the caller's verbosity; yields the root level to re-apply with :func:`hold_quiet`.

    Args:
        verbose: None (default) follows the root logger (:func:`is_verbose`); True leaves
            everything as the bundle's ``logging.conf`` and MONAI set it; False quiets.

    The root and ignite levels are restored, and MONAI's loggers let through again, on exit.
    """
    root = logging.getLogger()
    level = root.level if verbose is None else (logging.INFO if verbose else logging.WARNING)
    if level == logging.NOTSET:
        level = logging.WARNING
    ignite_level = logging.getLogger("ignite").level
    root_level = root.level
    with warnings.catch_warnings():
        if level > logging.INFO:
            for category, message in _NOTICES:
                warnings.filterwarnings("ignore", message=message, category=category)
        hold_quiet(level)
        try:
            yield level
        finally:
            for name in MONAI_LOGGERS:
                logging.getLogger(name).removeFilter(_QUIET)
            logging.getLogger("ignite").setLevel(ignite_level)
            root.setLevel(root_level)

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
import logging
import warnings
from collections.abc import Iterator

__all__ = ["QUIET_LOGGERS", "hold_quiet", "is_verbose", "run_verbosity"]

#: Loggers MONAI gives their own stdout handler at INFO; held at WARNING in a quiet run.
QUIET_LOGGERS = ("monai.bundle.workflows", "monai.bundle.scripts", "monai.handlers.StatsHandler",
                 "monai.data.image_writer", "ignite")

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
    """Put the root logger back at ``level`` and, above INFO, hold :data:`QUIET_LOGGERS` at WARNING
    (ignite's at CRITICAL: its "Engine run is terminating due to exception" repeats the error the
    run ends with).

    Call it after anything that sets up logging on its own (a config's ``logging.conf``, a
    ``StatsHandler`` built by the config parser)."""
    logging.getLogger().setLevel(level)
    if level > logging.INFO:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL if name == "ignite" else max(logging.WARNING, level))


@contextlib.contextmanager
def run_verbosity(verbose: bool | None = None) -> Iterator[int]:
    """Keep a bundle run at the caller's verbosity; yields the root level to re-apply with :func:`hold_quiet`.

    Args:
        verbose: None (default) follows the root logger (:func:`is_verbose`); True leaves
            everything as the bundle's ``logging.conf`` and MONAI set it; False quiets.

    The levels of the root logger and :data:`QUIET_LOGGERS` are restored on exit.
    """
    root = logging.getLogger()
    level = root.level if verbose is None else (logging.INFO if verbose else logging.WARNING)
    if level == logging.NOTSET:
        level = logging.WARNING
    saved = {name: logging.getLogger(name).level for name in ("", *QUIET_LOGGERS)}
    with warnings.catch_warnings():
        if level > logging.INFO:
            for category, message in _NOTICES:
                warnings.filterwarnings("ignore", message=message, category=category)
        hold_quiet(level)
        try:
            yield level
        finally:
            for name, old in saved.items():
                logging.getLogger(name).setLevel(old)

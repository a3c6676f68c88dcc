"""Exceptions raised by medrefine for bad input.

Every error about a file names the file, says what was expected and what was found. The CLI turns
:class:`MedrefineError` into an ``Error: ...`` message and exit code :data:`INPUT_ERROR_EXIT_CODE`
instead of a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["MedrefineError", "InputError", "GeometryError", "did_you_mean", "INPUT_ERROR_EXIT_CODE"]

#: Exit code of the ``medrefine`` command when it refuses an input (1 is left to unexpected
#: failures, 2 is click's usage error), so scripts can tell "fix your data" from "a bug".
INPUT_ERROR_EXIT_CODE = 3


class MedrefineError(Exception):
    """Base class of every error medrefine raises on purpose."""


class InputError(MedrefineError, ValueError):
    """A file, folder or argument is missing, unreadable or holds values we cannot use."""


class GeometryError(InputError):
    """Two volumes that must share a voxel grid (shape, spacing, affine) do not."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""

"""Read a JSON file with an error that names it (datalists, class tables, point files, ...)."""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import Any

from medrefine.errors import InputError

__all__ = ["read_json"]


def read_json(path: str | PathLike, *, what: str = "JSON file") -> Any:
    """The decoded content of ``path``.

    Args:
        path: the file.
        what: what the file is, for the message when it is missing (``"class table"``).

    Raises:
        InputError: ``"<path>: <what> not found"`` or ``"<path>: could not read as JSON (not a valid <what> JSON: <reason>)"``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: could not read as JSON (not a valid {what} JSON: {type(err).__name__}: {err})") from None

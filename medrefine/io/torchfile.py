"""Read a PyTorch file (weights, checkpoint) as plain data only, never running code from it.

``torch.load`` unpickles: with ``weights_only=False`` a file can run any code it names (a model
shared with a bundle, a checkpoint planted in a resume folder). medrefine writes only tensors,
numbers, strings, lists and dicts, so every read goes through :func:`load_plain`
(``weights_only=True``) and a file that needs more is refused in one line naming it.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

from medrefine.errors import InputError

__all__ = ["load_plain"]


def load_plain(path: str | PathLike, *, map_location: Any = "cpu", what: str = "PyTorch weights file") -> Any:
    """The content of a ``torch.save`` file holding tensors and plain values only.

    Args:
        path: the file.
        map_location: passed to ``torch.load``. Default ``"cpu"``.
        what: what the file is, for the messages (``"checkpoint"``).

    Returns:
        What the file holds (usually a dict of state dicts).

    Raises:
        InputError: ``<path>: expected a <what> holding tensors and plain values only, found
            content that cannot be loaded without running code (...); refused`` for a pickle
            payload (nothing in it is executed), or ``... found unreadable content`` for a
            truncated or foreign file.

    Example:
        >>> state = load_plain("models/model.pt")  # doctest: +SKIP
    """
    import pickle
    import re

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's weights-only unpickler refuses globals (code) and unknown opcodes alike; never retried unsafely
        found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(err))
        detail = found.group(1).strip() if found else "not a weights-only pickle"
        raise InputError(f"{path}: expected a {what} holding tensors and plain values only, found "
                         f"content that cannot be loaded without running code ({detail[:120]}); refused") from None
    except (RuntimeError, OSError, EOFError, ValueError, AttributeError, ImportError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: expected a {what}, found unreadable content ({type(err).__name__}: {first[:160]})") from None

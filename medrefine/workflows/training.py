"""What a bundle's training needs besides bookkeeping: the CPU thread count.

Checkpoints, resume, the history CSV and its plot are handlers in :mod:`medrefine.handlers`.
"""

from __future__ import annotations

import torch

__all__ = ["set_num_threads"]


def set_num_threads(num_threads: int | None) -> int:
    """Set torch's CPU threads (``None``/0: leave them) and return the previous count, to restore in ``finalize``."""
    before = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    return before

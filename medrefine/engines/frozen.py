"""Run a block with a network frozen: no parameter gradients, eval mode, both restored afterwards.

Latent/code fitting (:func:`medrefine.engines.near_fit.fit_latent`,
:func:`medrefine.engines.nimosef_fit.fit_codes`) optimises only a code; the network must come out
exactly as it went in, flags and mode included, also when the block raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["frozen"]


@contextlib.contextmanager
def frozen(network: nn.Module) -> Iterator[nn.Module]:
    """Freeze ``network`` (``requires_grad=False``, ``eval()``) inside the block; restore both after it."""
    flags = [p.requires_grad for p in network.parameters()]
    was_training = network.training
    try:
        for p in network.parameters():
            p.requires_grad_(False)
        network.eval()
        yield network
    finally:
        for p, flag in zip(network.parameters(), flags):
            p.requires_grad_(flag)
        network.train(was_training)

"""One process of tests/engines/test_distributed.py: run under ``torchrun`` (or alone for the reference).

Trains NeAR's auto-decoder for one iteration on four blob cases (global batch 4) and writes this
process's loss and its parameters after the step to ``<out>/rank<r>.pt``; the history CSV goes to
``<out>/history.csv``. Each process seeds the network's initial weights with its own rank, so
equal weights after the step show that the engine started every process from rank 0's weights.
The loss is NeAR's without the batch Dice and class weights: plain cross-entropy (every case has
the same number of points) plus the latent term, a mean over cases, so the processes' mean loss
and averaged gradients are exactly the global batch's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_blob_case  # noqa: E402

from medrefine.engines import AutoDecoderTrainer  # noqa: E402
from medrefine.handlers import HistoryCSV  # noqa: E402
from medrefine.losses import NeARLoss  # noqa: E402
from medrefine.networks import ImplicitRefiner  # noqa: E402

TINY = {"latent_dim": 8, "grid_channels": (6, 4), "grid_sizes": (2, 4), "hidden_channels": (16,), "grid_refine": False}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    distributed = "LOCAL_RANK" in __import__("os").environ
    if distributed:
        torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank() if distributed else 0
    cases = [make_blob_case(seed, size=12) for seed in range(4)]
    torch.manual_seed(rank)
    net = ImplicitRefiner(len(cases), 3, **TINY)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    trainer = AutoDecoderTrainer(net, opt, cases, NeARLoss(3, lambda_dice=0.0), max_epochs=1, batch_size=4, train_resolution=6, num_points=100)
    HistoryCSV(out / "history.csv").attach(trainer)
    trainer.run()
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    torch.save({"loss": float(trainer.state.output["loss"]), "params": flat}, out / f"rank{rank}.pt")
    if distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

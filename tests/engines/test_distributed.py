"""Tests of medrefine.engines.distributed: two gloo processes train NeAR's auto-decoder as one process does."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medrefine.engines.distributed import rank_share

WORKER = Path(__file__).with_name("_distributed_worker.py")


@pytest.mark.parametrize(("size", "rank", "world", "expected"), [
    (4, 0, 2, [0, 2]), (4, 1, 2, [1, 3]), (5, 1, 2, [1, 3]), (1, 1, 2, [0]), (2, 2, 3, [0]), (3, 0, 1, [0, 1, 2]),
])
def test_rank_share(size, rank, world, expected):
    assert rank_share(size, rank, world) == expected


def test_rank_share_refuses_a_rank_outside_the_world():
    with pytest.raises(ValueError, match="rank=2, world=2"):
        rank_share(4, 2, 2)


def _run(out: Path, nproc: int) -> list[dict]:
    out.mkdir()
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, *launcher, str(WORKER), str(out)], capture_output=True, text=True,
                          env=env, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(nproc)]


@pytest.mark.slow
def test_two_processes_take_one_step_as_one_process(tmp_path):
    """Same global batch of 4 cases: the mean of the two processes' losses is the one-process loss, and after one
    SGD step both processes hold the one-process weights, though each process seeded its initial weights
    differently (rank 0's are broadcast). Were the share's query points drawn per process, or a case seen by both
    processes, the losses would differ by percents; float32 reductions in another order differ by ~1e-7."""
    single = _run(tmp_path / "one", 1)[0]
    ranks = _run(tmp_path / "two", 2)
    assert sum(r["loss"] for r in ranks) / 2 == pytest.approx(single["loss"], rel=1e-5)
    assert ranks[0]["loss"] != pytest.approx(ranks[1]["loss"], rel=1e-3)  # the shares hold different cases
    torch.testing.assert_close(ranks[0]["params"], ranks[1]["params"], rtol=0, atol=0)
    torch.testing.assert_close(ranks[0]["params"], single["params"], rtol=1e-5, atol=1e-6)
    with open(tmp_path / "two" / "history.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))  # written once, by rank 0
    assert float(row["train_loss"]) == pytest.approx(single["loss"], rel=1e-5)  # the mean over both processes


@pytest.mark.parametrize(("batch", "world", "share"), [(8, 2, 4), (8, 1, 8), (6, 4, 2), (1, 2, 1), (5, 2, 3)])
def test_per_process_batch_makes_the_global_batch(batch, world, share, caplog):
    """``batch_size`` is global: N processes load ceil(batch / N) each, and say so when N does not divide it."""
    from medrefine.engines.distributed import per_process_batch

    with caplog.at_level("WARNING", logger="medrefine.engines.distributed"):
        assert per_process_batch(batch, world) == share
    assert ("not divisible" in caplog.text) == (batch % world != 0)


def test_per_process_batch_without_a_process_group_is_the_whole_batch():
    from medrefine.engines.distributed import per_process_batch

    assert per_process_batch(6) == 6
    with pytest.raises(ValueError, match="at least 1"):
        per_process_batch(0, 2)

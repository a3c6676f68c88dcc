"""``medrefine run ... --nproc N``: which command it starts, and its refusals (no processes started here;
tests/bundles/test_sharded_inference.py runs two for real)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from medrefine.cli import cli

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


@pytest.fixture
def started(monkeypatch) -> list[list[str]]:
    """The torchrun commands ``subprocess.run`` was asked to start (each returns exit code 0; others run)."""
    calls: list[list[str]] = []
    real_run = subprocess.run

    def fake_run(cmd, *args, **kwargs):
        if "torch.distributed.run" not in list(cmd):
            return real_run(cmd, *args, **kwargs)  # e.g. platform's `uname -p`
        calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    return calls


@pytest.mark.parametrize("mode,distributed", [("inference", "multi_gpu_inference"), ("train", "multi_gpu_train"),
                                              ("multi_gpu_inference", "multi_gpu_inference")])
def test_nproc_relaunches_under_torchrun_with_the_distributed_mode(started, tmp_path, mode, distributed):
    res = CliRunner().invoke(cli, ["run", "multiorgan_ct_segmentation", mode, "--nproc", "3", "--work-dir", str(tmp_path / "w"),
                                   "--config", "smoke", "--set", "dataset_dir=cohort", "--set", "epochs=1", "--debug"])
    assert res.exit_code == 0, res.output
    (cmd,) = started
    assert cmd[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=3", "-m"]
    assert cmd[6:9] == ["medrefine", "run", str(BUNDLES / "multiorgan_ct_segmentation")] and cmd[9] == distributed
    rest = cmd[10:]
    assert rest == ["--set", "dataset_dir=cohort", "--set", "epochs=1", "--config", "smoke",
                    "--work-dir", str(tmp_path / "w"), "--debug"]
    assert "--nproc" not in cmd  # the processes run the distributed mode themselves, no recursion


def test_nproc_one_runs_in_this_process(started, tmp_path):
    res = CliRunner().invoke(cli, ["run", "multiorgan_ct_segmentation", "inference", "--nproc", "1",
                                   "--work-dir", str(tmp_path), "--set", "dataset_dir=" + str(tmp_path / "missing")])
    assert not started and res.exit_code != 0  # ran here (and refused the missing dataset), started nothing


def test_nproc_refuses_a_mode_without_a_distributed_variant(started):
    res = CliRunner().invoke(cli, ["run", "multiorgan_ct_segmentation", "evaluate", "--nproc", "2"])
    assert res.exit_code == 2 and not started
    assert "--nproc 2: mode 'evaluate' does not run across processes; expected one of train, stage2, inference" in res.output


def test_nproc_names_the_missing_distributed_config(started):
    res = CliRunner().invoke(cli, ["run", "multiorgan_ct_segmentation", "stage2", "--nproc", "2"])
    assert res.exit_code == 1 and not started
    assert res.output.strip() == ("Error: --nproc 2: bundle 'multiorgan_ct_segmentation' has no configs/multi_gpu_stage2.json, "
                                  "so mode 'stage2' runs in one process only (run it with --nproc 1)")


def test_nproc_must_be_positive(started):
    res = CliRunner().invoke(cli, ["run", "multiorgan_ct_segmentation", "inference", "--nproc", "0"])
    assert res.exit_code == 2 and "0 is not in the range x>=1" in res.output


def test_failed_processes_give_one_line_and_exit_1(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda cmd, *a, **k: subprocess.CompletedProcess(cmd, 7))
    res = CliRunner().invoke(cli, ["run", "multiorgan_ct_segmentation", "inference", "--nproc", "2"])
    assert res.exit_code == 1 and "Error: 2 processes of inference: exit code 7" in res.output

"""``medrefine run`` as a user meets it: writes under ./medrefine_runs, quiet, resumes only its own model.

One subprocess per command, from a temporary current directory, on the multiorgan bundle (the
fastest to train) with its smoke config and the tiny phantom cohort.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medrefine.bundle import find_bundle

NAME = "multiorgan_ct_segmentation"
BUNDLE = find_bundle(NAME)
REPO = Path(__file__).resolve().parents[2]


def _medrefine(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``python -m medrefine ARGS``; stdout/stderr as written (bytes decoded, ``\r`` kept: a bar's
    updates are carriage returns on one line, text mode would turn each into a line)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "medrefine", *args], cwd=cwd, env=env, capture_output=True, timeout=600)
    done.stdout, done.stderr = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    return done


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from medrefine.data.phantoms import make_cardiac_cohort

    out = tmp_path_factory.mktemp("run_data") / "cohort"
    make_cardiac_cohort(out, cases=3, size=32, noise="moderate", seed=3)
    return out


@pytest.mark.slow
def test_train_then_inference_write_under_the_work_dir_quietly(tmp_path, cohort):
    before = _tree(BUNDLE.path)
    smoke = str(BUNDLE.path / "configs" / "smoke.json")
    common = ("--config", smoke, "--set", f"dataset_dir={cohort}", "--set", "device=cpu")
    # a 50-epoch training, validated every 10 epochs as the bundle's own recipe does
    train = _medrefine(tmp_path, "run", NAME, "train", *common, "--set", "epochs=50", "--set", "val_interval=10")
    output = train.stdout + train.stderr
    assert train.returncode == 0, output[-3000:]
    lines = output.split("\n")  # the lines a terminal keeps (a bar redraws itself after \r)
    assert len(lines) < 30, output
    summaries = [line.split("\r")[-1] for line in lines if "val_mean_dice" in line and ": val_mean_dice" in line]
    assert [s.split(":")[0] for s in summaries] == [f"epoch {e}/50" for e in (10, 20, 30, 40, 50)]  # one per validation
    assert not any("Key metric" in line or "Epoch[" in line for line in lines)  # not MONAI's two lines each
    assert output.count("/50 [") > 10 and sum(line.count("0/50 [") for line in lines if "training:" in line) >= 1

    run = tmp_path / "medrefine_runs" / NAME / "default"
    assert (run / "models" / "model.pt").is_file() and (run / "models" / "model.json").is_file()
    assert (run / "logs" / "history.csv").is_file()

    infer = _medrefine(tmp_path, "run", NAME, "inference", *common)  # finds the model train wrote
    assert infer.returncode == 0, (infer.stdout + infer.stderr)[-3000:]
    assert len(list((run / "inference").glob("*_seg.nii.gz"))) == 3
    assert _tree(BUNDLE.path) == before, "the run wrote into the bundle"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["medrefine_runs"]

    # another network in the same work dir: refused before training, in one line, with the way out
    other = _medrefine(tmp_path, "run", NAME, "train", *common, "--set", "epochs=2", "--set", "channels=[8,16,32]")
    assert other.returncode == 3, other.stdout + other.stderr
    error = [line for line in other.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and error[0].startswith(f"Error: {run / 'models'}: holds a checkpoint (latest_checkpoint_epoch=50.pt) of "), other.stderr
    assert "channels [4, 8, 16] there, [8, 16, 32] here" in error[0] and "--run NEW" in error[0]
    said = [line for line in (other.stdout + other.stderr).split("\n") if line.strip() and "it/s]" not in line]
    assert said == error, said  # the error, once: no ignite "terminating" line, no state-dict listing

    # --run starts a second run beside the first
    fresh = _medrefine(tmp_path, "run", NAME, "train", *common, "--run", "wide", "--set", "epochs=1",
                       "--set", "channels=[8,16,32]")
    assert fresh.returncode == 0, (fresh.stdout + fresh.stderr)[-3000:]
    assert (tmp_path / "medrefine_runs" / NAME / "wide" / "models" / "model.pt").is_file()
    assert _tree(BUNDLE.path) == before


def test_work_dir_and_run_are_exclusive(tmp_path):
    from click.testing import CliRunner

    from medrefine.cli import cli

    res = CliRunner().invoke(cli, ["run", NAME, "train", "--work-dir", str(tmp_path), "--run", "x"])
    assert res.exit_code == 2 and "give --work-dir or --run, not both" in res.output


def test_default_work_dir(tmp_path):
    from medrefine.bundle import default_work_dir, trained_model_dir
    from medrefine.errors import InputError

    assert default_work_dir(NAME, base=tmp_path) == str(tmp_path / "medrefine_runs" / NAME / "default")
    assert default_work_dir(NAME, "b-2.x", base=tmp_path).endswith("/medrefine_runs/multiorgan_ct_segmentation/b-2.x")
    with pytest.raises(InputError, match=r"run_name '\.\./x': expected a name of letters"):
        default_work_dir(NAME, "../x")
    shipped = tmp_path / "installed" / NAME
    (shipped / "models").mkdir(parents=True)
    work = tmp_path / "work"
    assert trained_model_dir(work, shipped) == str(work / "models")  # nothing anywhere: where train writes
    (shipped / "models" / "model.json").write_text("{}")
    assert trained_model_dir(work, shipped) == str(shipped / "models")  # an installed model-zoo bundle
    (work / "models").mkdir(parents=True)
    assert trained_model_dir(work, shipped) == str(work / "models")  # the run's own model first

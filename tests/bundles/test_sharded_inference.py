"""Inference sharded across two torchrun processes (gloo on CPU) writes what one process writes.

For each bundle: a tiny model is trained once (train + smoke, in this process), inference runs
once in one process and once as ``inference + multi_gpu_inference`` under
``python -m torch.distributed.run --nproc_per_node=2`` on an odd number of cases; every case
must have exactly one output, the outputs must equal the single-process ones, and the merged
tables (``changes.csv``, ``predictions.csv``, ``codes.json``) must hold each case once, in
datalist order, with no part files left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
NAMES = ["annotation_refinement", "multiorgan_ct_segmentation", "point_supervised_segmentation",
         "lesion_classification", "cardiac_motion"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> dict[str, Path]:
    """3 cardiac phantoms; lesion phantoms of 6 patients (training) and of 3 (11 lesions, inference);
    5 cine subjects."""
    from medrefine.data.cine_phantoms import make_cine_cohort
    from medrefine.data.lesion_phantoms import make_lesion_cohort
    from medrefine.data.phantoms import make_cardiac_cohort

    root = tmp_path_factory.mktemp("shard_data")
    make_cardiac_cohort(root / "cohort", cases=3, size=32, noise="moderate", seed=3)
    return {
        "cohort": root / "cohort",
        "lesions_train": make_lesion_cohort(root / "lesions_train", patients=6, seed=3),
        "lesions": make_lesion_cohort(root / "lesions", patients=3, seed=4),
        "cine": make_cine_cohort(root / "cine", subjects=5, size=(16, 16), slices=6, frames=4,
                                 spacing=(9.0, 9.0, 13.0), seed=3),
    }


def _data(name: str, cohorts: dict[str, Path]) -> tuple[Path, Path]:
    """(training data, inference data) of bundle ``name``."""
    if name == "lesion_classification":
        return cohorts["lesions_train"], cohorts["lesions"]
    if name == "cardiac_motion":
        return cohorts["cine"], cohorts["cine"]
    return cohorts["cohort"], cohorts["cohort"]


@pytest.fixture(scope="module", params=NAMES)
def trained(request, cohorts, tmp_path_factory) -> tuple[str, Path, Path]:
    """(bundle name, bundle copy holding a tiny trained model and single-process outputs in single/, inference data)."""
    from medrefine.bundle import run_workflow

    name = request.param
    root = tmp_path_factory.mktemp("shard") / name
    shutil.copytree(BUNDLES / name, root, ignore=shutil.ignore_patterns("models", "eval", "__pycache__"))
    train_data, infer_data = _data(name, cohorts)
    smoke = [root / "configs" / "smoke.json"]
    run_workflow(root, "train", {"dataset_dir": str(train_data), "device": "cpu", "work_dir": str(root)}, extra_configs=smoke)
    run_workflow(root, "inference", {"dataset_dir": str(infer_data), "device": "cpu", "work_dir": str(root),
                                     "output_dir": str(root / "single")}, extra_configs=smoke)
    return name, root, infer_data


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _expected_cases(name: str, data: Path) -> list[str]:
    """The case ids in datalist order, read as the bundles read them."""
    if name == "lesion_classification":
        from medrefine.workflows.lesion import load_lesion_cohort

        return load_lesion_cohort(data, unlabelled=True).case_ids
    if name == "cardiac_motion":
        from medrefine.workflows.nimosef import check_cine

        return [str(c["case"]) for c in check_cine(data, use_label=False)]
    from medrefine.workflows.segmentation import inference_cases

    return [c["case"] for c in inference_cases(data)]


def _case_outputs(name: str, folder: Path, cases: list[str]) -> None:
    """Every case has exactly its outputs, and the merged table holds each case once, in order."""
    import pandas as pd

    files = set(_files(folder))
    assert not [f for f in files if ".part" in f], files  # the part tables were merged and removed
    if name in ("multiorgan_ct_segmentation", "point_supervised_segmentation"):
        assert files == {f"{c}_seg.nii.gz" for c in cases} | {"label_map.json"}
    elif name == "annotation_refinement":
        assert files == {f"{kind}/{c}.nii.gz" for c in cases for kind in ("refined", "uncertainty", "changes")} | {"changes.csv"}
        table = pd.read_csv(folder / "changes.csv")
        per_case = len(table) // len(cases)
        assert per_case >= 1 and table["case"].tolist() == [c for c in cases for _ in range(per_case)]
    elif name == "lesion_classification":
        assert files == {"predictions.csv"}
        assert pd.read_csv(folder / "predictions.csv", dtype=str)["case"].tolist() == cases
    else:
        assert {f for f in files if f.endswith("_seg.nii.gz")} == {f"{c}_seg.nii.gz" for c in cases}
        assert list(json.loads((folder / "codes.json").read_text())) == cases


def _same_outputs(single: Path, sharded: Path) -> None:
    import nibabel as nib
    import pandas as pd

    assert _files(single) == _files(sharded)
    for rel in _files(single):
        a, b = single / rel, sharded / rel
        if rel.endswith(".nii.gz"):
            x, y = np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj)
            assert x.dtype == y.dtype and x.shape == y.shape, rel
            if np.issubdtype(x.dtype, np.integer):
                assert np.array_equal(x, y), rel  # labels: identical
            else:
                np.testing.assert_allclose(x, y, atol=1e-5, err_msg=rel)
            np.testing.assert_allclose(nib.load(a).affine, nib.load(b).affine, err_msg=rel)
        elif rel.endswith(".csv"):
            x, y = pd.read_csv(a), pd.read_csv(b)
            assert list(x.columns) == list(y.columns) and len(x) == len(y), rel
            numeric = x.select_dtypes("number").columns
            np.testing.assert_allclose(x[numeric].to_numpy(float), y[numeric].to_numpy(float), atol=1e-5, err_msg=rel)
            other = [c for c in x.columns if c not in numeric]
            assert x[other].fillna("").astype(str).equals(y[other].fillna("").astype(str)), rel
        elif rel.endswith(".json"):
            x, y = json.loads(a.read_text()), json.loads(b.read_text())
            assert list(x) == list(y), rel
            for key in x:
                np.testing.assert_allclose(np.asarray(x[key], dtype=float) if not isinstance(x[key], str) else 0,
                                           np.asarray(y[key], dtype=float) if not isinstance(y[key], str) else 0,
                                           atol=1e-5, err_msg=f"{rel}: {key}")
                assert isinstance(x[key], str) == isinstance(y[key], str) and (not isinstance(x[key], str) or x[key] == y[key])


@pytest.mark.slow
def test_two_process_inference_writes_each_case_once_as_one_process_does(trained):
    name, root, data = trained
    configs = root / "configs"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run",
        "--config_file", str([str(configs / f) for f in ("inference.json", "multi_gpu_inference.json", "smoke.json")]),
        "--meta_file", str(configs / "metadata.json"),
        "--bundle_root", str(root), "--work_dir", str(root), "--dataset_dir", str(data),
        "--output_dir", str(root / "sharded"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cases = _expected_cases(name, data)
    assert len(cases) % 2 == 1  # an odd number: the ranks hold different counts
    assert "rank 0 of 2" in proc.stderr + proc.stdout and "rank 1 of 2" in proc.stderr + proc.stdout
    _case_outputs(name, root / "single", cases)
    _case_outputs(name, root / "sharded", cases)
    _same_outputs(root / "single", root / "sharded")
    if name == "multiorgan_ct_segmentation":  # the same through `medrefine run ... --nproc 2`
        _cli_two_processes(root, data)


def _cli_two_processes(root: Path, data: Path) -> None:
    from medrefine.workflows.segmentation import inference_cases

    out = root / "cli"
    cmd = [sys.executable, "-m", "medrefine", "run", str(root), "inference", "--nproc", "2", "--work-dir", str(root),
           "--config", "smoke", "--set", f"dataset_dir={data}", "--set", f"output_dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "starting 2 processes:" in proc.stderr and "multi_gpu_inference" in proc.stderr
    _case_outputs("multiorgan_ct_segmentation", out, [c["case"] for c in inference_cases(data)])
    _same_outputs(root / "single", out)

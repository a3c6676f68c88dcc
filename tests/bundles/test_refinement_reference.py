"""No reference label chooses anything in the refinement bundle: it is read for reporting only."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from medrefine.bundle import find_bundle, run_workflow


@pytest.mark.slow
def test_changing_the_reference_changes_no_exported_weight(tmp_path):
    from medrefine.data.phantoms import make_cardiac_cohort

    cohort = tmp_path / "cohort"
    make_cardiac_cohort(cohort, cases=3, size=24, noise="moderate", seed=5)
    datalist = json.loads((cohort / "datalist.json").read_text())
    # a second cohort whose "reference" is another case's clean label: a different, wrong reference
    other = tmp_path / "other"
    shutil.copytree(cohort, other)
    entries = datalist["training"]
    shifted = [e["label_clean"] for e in entries[1:] + entries[:1]]
    for entry, ref in zip(entries, shifted):
        entry["label_clean"] = ref
    (other / "datalist.json").write_text(json.dumps(datalist))

    bundle = find_bundle("annotation_refinement")
    weights, histories = [], []
    for name, data in (("a", cohort), ("b", other)):
        root = tmp_path / f"bundle_{name}"
        shutil.copytree(bundle.path, root, ignore=shutil.ignore_patterns("models", "logs", "eval"))
        run_workflow(root, "train", {"dataset_dir": str(data), "device": "cpu", "val_interval": 1, "work_dir": str(root)},
                     extra_configs=[root / "configs" / "smoke.json"])
        weights.append(torch.load(root / "models" / "model.pt", weights_only=True))
        histories.append((root / "logs" / "history.csv").read_text())
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), f"{key} depends on the reference label"
    # the reference was read (reported in the history), so the test would see it if it chose anything
    assert "val_dice_clean" in histories[0] and histories[0] != histories[1]

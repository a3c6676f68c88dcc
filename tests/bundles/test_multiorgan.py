"""The multiorgan_ct_segmentation bundle beyond the harness: network/formulation variants,
inference geometry on a non-RAS input, and the helpers of medrefine.workflows.segmentation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medrefine.bundle import find_bundle, run_workflow
from medrefine.workflows import segmentation as seg
from medrefine.networks import build_segmentation_network

BUNDLE = find_bundle("multiorgan_ct_segmentation")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from medrefine.data.phantoms import make_cardiac_cohort

    out = tmp_path_factory.mktemp("multiorgan") / "cohort"
    make_cardiac_cohort(out, cases=3, size=32, noise="none", seed=5)
    return out


def _run(root: Path, mode: str, dataset_dir: Path, **overrides) -> None:
    run_workflow(root, mode, {"dataset_dir": str(dataset_dir), "device": "cpu", "work_dir": str(root), **overrides},
                 extra_configs=[root / "configs" / "smoke.json"])


def _copy_bundle(tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    shutil.copytree(BUNDLE.path, root, ignore=shutil.ignore_patterns("models", "eval", "inference", "logs"))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("network_name, formulation", [("unet2d", "multiclass"), ("attention_unet", "multilabel")])
def test_variant_trains_and_infers(cohort, tmp_path, network_name, formulation):
    root = _copy_bundle(tmp_path)
    keys = {"network_name": network_name, "formulation": formulation}
    _run(root, "train", cohort, epochs=1, early_stopping=True, early_stop_patience=1, **keys)
    assert (root / "models" / "model.pt").is_file()
    history = (root / "logs" / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,iteration,train_loss,lr,seconds,val_mean_dice" and len(history) == 2
    assert (root / "logs" / "training_curve.png").stat().st_size > 0
    if network_name == "unet2d":  # a second run resumes from the latest checkpoint
        _run(root, "train", cohort, epochs=2, **keys)
        assert [p.name for p in (root / "models").glob("latest*.pt")] == ["latest_checkpoint_epoch=2.pt"]
        epochs = [row.split(",")[0] for row in (root / "logs" / "history.csv").read_text().splitlines()[1:]]
        assert epochs == ["1", "2"]
    _run(root, "inference", cohort, one_file_per_structure=True, **keys)
    out = root / "inference"
    assert json.loads((out / "label_map.json").read_text())["1"] == "myocardium"
    pred = nib.load(str(out / "case_000_seg.nii.gz"))
    image = nib.load(str(cohort / "images" / "case_000.nii.gz"))
    assert pred.shape == image.shape
    assert set(np.unique(np.asarray(pred.dataobj))) <= set(range(11))
    assert len(list((out / "case_000_seg_structures").glob("*.nii.gz"))) == 10


@pytest.mark.slow
def test_inference_restores_original_geometry_of_non_ras_input(tmp_path):
    """Output has the input's shape, spacing and affine although the input is LPI, permuted and resampled;
    the low-memory inferer gives the same labels."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    shape = (21, 26, 17)
    # voxel axes: i -> posterior (y), j -> left (x), k -> inferior (z); anisotropic spacing
    affine = np.array([[0.0, -0.8, 0.0, 40.0], [1.3, 0.0, 0.0, -20.0], [0.0, 0.0, -2.2, 55.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(rng.normal(0, 300, shape).astype(np.float32), affine), str(data / "images" / "s1.nii.gz"))
    (data / "classes.json").write_text(json.dumps({"0": "background", "1": "liver", "2": "spleen"}))

    root = _copy_bundle(tmp_path)
    (root / "models").mkdir()
    smoke = json.loads((root / "configs" / "smoke.json").read_text())
    net = build_segmentation_network("unet", out_channels=3, channels=smoke["channels"], num_res_units=smoke["num_res_units"])
    from medrefine.workflows.models import save_model

    save_model(net, root / "models", classes={0: "background", 1: "liver", 2: "spleen"},
               preprocessing={"pixdim": [1.5, 1.5, 1.5], "hu_window": [-500.0, 500.0], "roi_size": smoke["roi_size"]},
               extra={"formulation": "multiclass", "network_name": "unet"})
    for low_memory in (False, True):
        _run(root, "inference", data / "images", pixdim=[1.5, 1.5, 1.5], hu_window=[-500.0, 500.0],
             low_memory=low_memory, output_dir=str(root / f"inference_{low_memory}"))
    out = nib.load(str(root / "inference_False" / "s1_seg.nii.gz"))
    low = nib.load(str(root / "inference_True" / "s1_seg.nii.gz"))
    np.testing.assert_array_equal(np.asarray(low.dataobj), np.asarray(out.dataobj))
    np.testing.assert_allclose(low.affine, affine, atol=1e-4)
    assert out.shape == shape
    np.testing.assert_allclose(out.affine, affine, atol=1e-4)
    np.testing.assert_allclose(out.header.get_zooms(), (1.3, 0.8, 2.2), atol=1e-4)
    assert set(np.unique(np.asarray(out.dataobj))) == {0, 1, 2}  # a random network: all classes appear


def test_select_structures_keeps_values_and_suggests():
    classes = {0: "background", 1: "spleen", 5: "liver", 7: "aorta"}
    assert seg.select_structures(classes, ["liver", "spleen"]) == {0: "background", 1: "spleen", 5: "liver"}
    with pytest.raises(ValueError, match="did you mean 'liver'"):
        seg.select_structures(classes, ["livre"])


def test_unknown_network_name_suggests():
    with pytest.raises(ValueError, match="did you mean 'unet2d'"):
        seg.build_network("unet_2d", out_channels=2)


@pytest.mark.parametrize(
    "formulation, logits, expected",
    [
        ("multiclass", [[0.0, 0.0], [3.0, -1.0], [1.0, 2.0]], [1, 7]),  # channels = background, spleen, liver
        ("multilabel", [[3.0, -3.0], [1.0, -2.0]], [1, 0]),  # channels = spleen, liver; below 0.5 -> 0
    ],
)
def test_to_label_map_uses_original_values(formulation, logits, expected):
    convert = seg.to_label_map(formulation, {0: "background", 1: "spleen", 7: "liver"})
    out = convert(torch.tensor(logits)[:, :, None])
    assert out.shape == (1, 2, 1) and out.flatten().tolist() == expected


def test_label_target_multilabel_channels():
    label = torch.tensor([[[0, 1, 2]]])
    target = seg.label_target("multilabel", 3)(label)
    assert target.shape == (2, 1, 3) and target[:, 0, :].tolist() == [[0, 1, 0], [0, 0, 1]]


def test_split_cases():
    cases = [{"case": str(i)} for i in range(4)]
    assert [c["case"] for c in seg.split_cases(cases, "val", num_val=1)] == ["3"]
    assert [c["case"] for c in seg.split_cases(cases[:1], "train")] == ["0"]


@pytest.mark.slow
def test_totalsegmentator_folders_with_structure_subset(tmp_path):
    """TotalSegmentator case folders, two of three structures chosen by name: train, evaluate."""
    data = tmp_path / "totalseg"
    rng = np.random.default_rng(1)
    affine = np.diag([2.0, 2.0, 2.5, 1.0])
    for case in ("s0", "s1"):
        (data / case / "segmentations").mkdir(parents=True)
        ct = rng.normal(0, 50, (24, 24, 20)).astype(np.float32)
        masks = {name: np.zeros(ct.shape, np.uint8) for name in ("aorta", "liver", "spleen")}
        masks["liver"][2:12, 3:15, 4:16] = 1
        masks["spleen"][14:22, 5:12, 6:14] = 1
        masks["aorta"][10:13, 17:20, :] = 1
        for name, mask in masks.items():
            ct[mask > 0] += {"liver": 100, "spleen": 60, "aorta": 250}[name]
            nib.save(nib.Nifti1Image(mask, affine), str(data / case / "segmentations" / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(ct, affine), str(data / case / "ct.nii.gz"))
    root = _copy_bundle(tmp_path)
    keys = {"structures": ["spleen", "liver"], "epochs": 1}
    _run(root, "train", data, **keys)
    assert json.loads((root / "models" / "model.json").read_text())["classes"] == {"0": "background", "1": "spleen", "2": "liver"}
    cached = nib.load(str(data / ".multilabel" / "labels" / "s1.nii.gz"))
    assert set(np.unique(np.asarray(cached.dataobj))) == {0, 1, 2}  # aorta left out
    _run(root, "evaluate", data, **keys)
    metrics = (root / "eval" / "metrics.csv").read_text()
    assert "spleen" in metrics and "liver" in metrics and "aorta" not in metrics
    assert (root / "eval" / "s1_seg.nii.gz").is_file() and (root / "eval" / "report" / "report.html").is_file()
    sources = json.loads((root / "eval" / "metrics.sources.json").read_text())
    assert sorted(sources["cases"]) == ["s1"] and sources["cases"]["s1"]["image"].endswith("ct.nii.gz")
    page = (root / "eval" / "report" / "report.html").read_text()
    assert 'id="mesh3d"' in page and "segmentation" in page  # the 3D view of a case, from the sources

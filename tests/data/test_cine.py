from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from medrefine.data.cine import load_cine_cases, load_cine_subject
from medrefine.data.cine_phantoms import CinePhantom, draw_cine_phantom
from medrefine.errors import InputError


@pytest.fixture(scope="module")
def cine(tmp_path_factory):
    from medrefine.cli import cli

    out = tmp_path_factory.mktemp("cine") / "cine"
    result = CliRunner().invoke(cli, ["phantom", "cine", "--subjects", "3", "--size", "16", "16", "--slices", "4",
                                      "--frames", "4", "--spacing", "9", "9", "16", "--misalignment-mm", "1",
                                      "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    return out


def test_phantom_motion_is_invertible_and_volumes_match_counts():
    p = draw_cine_phantom(np.random.default_rng(1), field_of_view_mm=(144, 144, 80))
    pts = np.random.default_rng(2).uniform(-40, 10, (200, 3))
    assert np.abs(p.to_ed(p.from_ed(pts, 0.3), 0.3) - pts).max() < 1e-9
    assert np.abs(p.displacement_mm(p.to_world(pts), 0.0)).max() < 1e-9
    assert CinePhantom.from_dict(p.to_dict()) == p
    ef = p.ejection_fractions(10)
    assert 25 < ef["lv_ef"] < 80 and 10 < ef["rv_ef"] < 80


def test_reader_opens_the_phantom_layout(cine):
    cases = load_cine_cases(cine, require_transform=True)
    assert [c["case"] for c in cases] == ["sub-000", "sub-001", "sub-002"]
    subject = load_cine_subject(cases[0], num_classes=4, require_transform=True)
    assert subject.image.shape == (16, 16, 4, 4) and subject.label.shape == (16, 16, 4, 4)
    import json

    truth = json.loads((cine / "derivatives/phantom_truth/sub-000/sub-000_truth.json").read_text())
    assert np.allclose(subject.local_to_world, CinePhantom.from_dict(truth["phantom"]).local_to_world())


def test_bad_input_is_refused_in_one_line(cine, tmp_path):
    from medrefine.io import save_nifti

    cases = load_cine_cases(cine)
    flat = save_nifti(np.zeros((16, 16, 4), np.float32), tmp_path / "flat.nii.gz", affine=np.eye(4))
    with pytest.raises(InputError, match=r"flat\.nii\.gz: expected a 4D cine \(X, Y, Z, T\).*found shape \(16, 16, 4\)"):
        load_cine_subject({**cases[0], "image": str(flat)})
    short = save_nifti(np.zeros((16, 16, 4, 3), np.uint8), tmp_path / "short.nii.gz", affine=np.eye(4))
    with pytest.raises(InputError, match=r"short\.nii\.gz: expected 4 frames like .*found 3"):
        load_cine_subject({**cases[0], "label": str(short)})
    (cine / "derivatives/sa_coordinates/sub-001/sa_axis_affine.tfm").rename(tmp_path / "moved.tfm")
    try:
        with pytest.raises(InputError, match=r"sa_axis_affine\.tfm: expected the subject's short-axis transform"):
            load_cine_cases(cine, require_transform=True)
        assert "transform" not in load_cine_cases(cine)[1]
    finally:
        (tmp_path / "moved.tfm").rename(cine / "derivatives/sa_coordinates/sub-001/sa_axis_affine.tfm")


def test_preprocessing_writes_tables_and_a_stable_split(cine, tmp_path):
    import pandas as pd

    from medrefine.data.cine_implicit import load_split, preprocess_cine, read_manifest

    path = preprocess_cine(cine, tmp_path / "derivatives", seed=1)
    manifest = read_manifest(path)
    assert sorted(sum(manifest["splits"].values(), [])) == ["sub-000", "sub-001", "sub-002"]
    table = pd.read_parquet(tmp_path / "derivatives/implicit/sub-000.parquet")
    assert list(table.columns) == ["x", "y", "z", "u", "v", "w", "t", "frame", "intensity", "label"]
    assert len(table) == 16 * 16 * 4 * 4 and table["intensity"].between(0, 1).all()
    assert read_manifest(preprocess_cine(cine, tmp_path / "derivatives", seed=1))["splits"] == manifest["splits"]
    train = load_split(manifest, "train")
    assert train[0]["image"].shape == (16, 16, 4, 4) and train[0]["local_mm"].shape == (16, 16, 4, 3)


def test_validate_reads_the_cine_layout_and_a_4d_datalist(cine, tmp_path):
    """`medrefine validate` checks a cine cohort as 4D (BIDS-like folder or datalist): 3D images and
    labels with another frame count are errors, transforms are read."""
    import json
    import shutil

    from medrefine.data.cohort import load_cohort
    from medrefine.data.validate import validate_dataset
    from medrefine.io import load_image, save_nifti

    copy = tmp_path / "cine"
    shutil.copytree(cine, copy)
    assert load_cohort(copy).layout == "cine" and validate_dataset(copy).empty
    entries = [{"image": f"sub-00{i}/anat/sub-00{i}_short_axis.nii.gz",
                "label": f"derivatives/sa_segmentation/sub-00{i}/sub-00{i}_sa_seg.nii.gz",
                "transform": f"derivatives/sa_coordinates/sub-00{i}/sa_axis_affine.tfm"} for i in range(3)]
    (copy / "list.json").write_text(json.dumps({"training": entries}))
    assert validate_dataset(copy / "list.json").empty  # most images 4D: a cine datalist
    label = load_image(copy / entries[1]["label"])
    save_nifti(label.array[..., :3], copy / entries[1]["label"], affine=label.affine)
    image = load_image(copy / entries[2]["image"])
    save_nifti(image.array[..., 0], copy / entries[2]["image"], affine=image.affine)
    (copy / entries[0]["transform"]).write_text("not a transform\n")
    for source in (copy, copy / "list.json"):
        problems = validate_dataset(source).set_index("file")["problem"]
        assert problems[entries[1]["label"]] == "expected 4 frames like the image (sub-001_short_axis.nii.gz), found 3"
        assert problems[entries[2]["image"]] == "expected a 4D image, found an array of shape (16, 16, 4)"
        assert problems[entries[0]["transform"]].startswith("expected a 3D affine ITK transform, found an unreadable one")


def test_nan_policy_zero_reads_nan_voxels_as_zero(cine, tmp_path):
    from medrefine.io import load_image, save_nifti

    case = load_cine_cases(cine)[0]
    image = load_image(case["image"])
    array = image.array.copy()
    array[1, 1, 1, 1] = np.nan
    path = save_nifti(array, tmp_path / "nan.nii.gz", affine=image.affine)
    with pytest.raises(InputError, match=r"nan\.nii\.gz: expected finite voxel values"):
        load_cine_subject({**case, "image": str(path)})
    subject = load_cine_subject({**case, "image": str(path)}, nan_policy="zero")
    assert np.isfinite(subject.image).all() and subject.image[1, 1, 1, 1] == 0

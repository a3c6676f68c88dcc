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

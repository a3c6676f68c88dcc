"""The parts of medrefine.workflows.segment_pipeline that need no trained model."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.errors import InputError
from medrefine.io import Volume, save_nifti
from medrefine.workflows import segment_pipeline as sp


def test_logits_bytes_by_hand():
    # 2 x (41 channels + count map) x 10^6 voxels x 4 bytes
    assert sp.logits_bytes((100, 100, 100), 41) == 2 * 42 * 10**6 * 4


@pytest.mark.parametrize("available, expected", [(10**9, False), (6 * 10**8, True)])
def test_needs_low_memory_against_half_the_free_memory(available, expected):
    # 336 MB of logits: under half of 1 GB, over half of 600 MB
    assert sp.needs_low_memory((100, 100, 100), 41, available_bytes=available) is expected


def test_resampled_shape_keeps_zero_axes():
    volume = Volume(np.zeros((100, 80, 30), np.float32), np.diag([0.8, 0.8, 5.0, 1.0]))
    assert sp._resampled_shape(volume, (1.6, 0.0, 2.5)) == (50, 80, 60)


def test_no_model_names_the_training_command():
    with pytest.raises(InputError, match=r"--model: .*medrefine run multiorgan_ct_segmentation train --set dataset_dir=DATA"):
        sp.resolve_model(None)


def test_unknown_model_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"(?i)--model multiorgan_ct_segmentaton: expected a model folder or a bundle name.*"
                                         r"did you mean 'multiorgan_ct_segmentation'"):
        sp.resolve_model("multiorgan_ct_segmentaton")


def test_a_single_unreadable_file_is_refused_naming_it(tmp_path):
    bad = tmp_path / "ct.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(InputError, match=r"ct\.nii\.gz"):
        sp.segment_inputs(bad)


def test_folder_inputs_are_listed_by_case(tmp_path):
    for name in ("b", "a"):
        save_nifti(np.ones((4, 4, 4), np.float32), tmp_path / "in" / f"{name}.nii.gz")
    cases = sp.segment_inputs(tmp_path / "in")
    assert [c["case"] for c in cases] == ["a", "b"] and cases[0]["image"].endswith("a.nii.gz")
    with pytest.raises(InputError, match="found the input folder itself"):
        sp._check_outputs(cases, (tmp_path / "in").resolve(), tmp_path / "in")
    sp._check_outputs(cases, (tmp_path / "in" / "seg").resolve(), tmp_path / "in")  # a new folder beside them: fine

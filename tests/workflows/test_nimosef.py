from __future__ import annotations

import numpy as np
import pytest
import torch

from medrefine.engines.nimosef import CineTensors
from medrefine.engines.nimosef_fit import fit_codes
from medrefine.networks.nimosef import nimosef_network


def _case(seed=0, frames=3):
    rng = np.random.default_rng(seed)
    shape = (8, 8, 3)
    label = np.zeros(shape + (frames,), np.uint8)
    label[2:6, 2:6, 1] = 2
    label[3:5, 3:5, 1] = 1
    affine = np.diag([2.0, 2.0, 6.0, 1.0])
    affine[:3, 3] = (-7.0, -7.0, -6.0)
    idx = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), -1)
    local = (idx @ affine[:3, :3].T + affine[:3, 3]).astype(np.float32)
    return {"case": f"s{seed}", "image": rng.random(shape + (frames,), dtype=np.float32), "label": label,
            "local_mm": local, "affine": affine, "local_to_world": np.eye(4), "ed_frame": 0}


def test_code_fitting_leaves_network_weights_unchanged():
    net = nimosef_network(num_cases=2, latent_dim=4, hidden_channels=8, num_layers=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    data = CineTensors([_case(0), _case(1)], scale_mm=20.0)
    codes, history = fit_codes(net, data, steps=5, num_points=64, use_label=True, return_history=True)
    assert codes.shape == (2, 4) and len(history) == 5
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.requires_grad for p in net.parameters()) and net.training
    assert not torch.equal(codes[0], net.mean_latent()[0])


def test_outputs_keep_geometry_and_have_the_parquet_columns(tmp_path):
    import nibabel as nib
    import pandas as pd

    from medrefine.workflows.nimosef import write_subject_outputs

    net = nimosef_network(num_cases=1, latent_dim=4, hidden_channels=8, num_layers=2)
    with torch.no_grad():  # make the background lose near the centre so boundaries exist
        net.seg_head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0]))
    case = _case()
    out = write_subject_outputs(net, net.mean_latent(), case, tmp_path, scale_mm=20.0, chunk_size=50)
    rec, seg = nib.load(tmp_path / "s0_rec.nii.gz"), nib.load(tmp_path / "s0_seg.nii.gz")
    assert rec.shape == (8, 8, 3, 3) and seg.shape == (8, 8, 3, 3)
    assert np.allclose(seg.affine, case["affine"])
    bounds = pd.read_parquet(tmp_path / "s0_pred_boundaries.parquet")
    assert list(bounds.columns) == ["x", "y", "z", "t", "frame", "label"]
    disp = pd.read_parquet(tmp_path / "s0_displacement.parquet")
    assert list(disp.columns) == ["x", "y", "z", "t", "frame", "label", "dx", "dy", "dz"]
    up = write_subject_outputs(net, net.mean_latent(), case, tmp_path / "up", scale_mm=20.0, res_factor_z=2,
                               write_parquet=False)
    hi = nib.load(tmp_path / "up" / "s0_seg.nii.gz")
    assert hi.shape == (8, 8, 6, 3) and up["seg"].shape == (8, 8, 6, 3)
    assert hi.affine[2, 2] == pytest.approx(3.0)
    # the slab is the same: first/last slice borders coincide with the input's
    lo_edge = case["affine"][2, 3] - 3.0
    assert hi.affine[2, 3] - 1.5 == pytest.approx(lo_edge)


def test_label_consistency_teaches_the_displacement_only():
    import torch.nn.functional as F

    from medrefine.engines.nimosef import label_consistency

    net = nimosef_network(num_cases=1, latent_dim=4, hidden_channels=8, num_layers=2, seed=3)
    data = CineTensors([_case(0)], scale_mm=20.0)
    idx = torch.arange(0, data.coords[0].shape[0], 3)
    latent = net.latents(torch.tensor([0]))
    value = label_consistency(net, latent, data, 0, 1, idx)
    # the value is the cross-entropy of the segmentation at the moved points against the ED labels
    pts = data.coords[0][idx].unsqueeze(0)
    with torch.no_grad():
        moved = pts + net.decode(latent, pts, torch.full((1, idx.numel()), 1 / 3), torch.zeros(1), heads=("displacement",))["displacement"]
        logits = net.decode(latent, moved, torch.full((1, idx.numel()), 1 / 3), torch.zeros(1), heads=("seg",))["seg"][0]
    assert float(value) == pytest.approx(float(F.cross_entropy(logits, data.labels[0][0][idx])), rel=1e-5)
    value.backward()
    assert net.seg_head.weight.grad is None and net.intensity_head.weight.grad is None
    assert net.displacement_head.weight.grad is not None and float(net.displacement_head.weight.grad.abs().sum()) > 0
    # the code enters the displacement, so it may learn through it, but not through the segmentation path
    assert net.latents.weight.grad is not None


def test_decoding_no_points_gives_empty_frames():
    # a prediction with no foreground has no boundary points; writing its parquet must not fail
    from medrefine.inferers.nimosef import decode_frames

    net = nimosef_network(num_cases=1, latent_dim=4, hidden_channels=8, num_layers=2)
    out = decode_frames(net, net.mean_latent(), torch.zeros(0, 3), [0.0, 0.5], 0.0,
                        heads=("seg", "intensity", "displacement", "probabilities"))
    assert out["seg"].shape == (2, 0) and out["seg"].dtype == torch.int64
    assert out["displacement"].shape == (2, 0, 3) and out["probabilities"].shape == (2, 0, 4)

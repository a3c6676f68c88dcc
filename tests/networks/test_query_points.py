"""Boundary voxels and the points drawn on them (class-border sampling for the auto-decoder)."""

import pytest
import torch

from medrefine.networks.query_points import boundary_voxels, sample_boundary_points, sample_labels


def _two_cases() -> torch.Tensor:
    lab = torch.zeros(2, 8, 10, 12, dtype=torch.long)
    lab[0, 2:5, 3:6, 4:9] = 1  # a box: its shell and the background around it are boundary
    return lab  # case 1: background only


def test_boundary_voxels_are_exactly_the_voxels_next_to_another_class():
    lab = _two_cases()
    idx, counts = boundary_voxels(lab)
    assert counts.tolist()[1] == 0
    # the 3x3x3 dilation of the box minus its 3x3x3 erosion (interior 1x1x3 voxels)
    dil = torch.zeros(8, 10, 12, dtype=torch.bool)
    dil[1:6, 2:7, 3:10] = True
    ero = torch.zeros_like(dil)
    ero[3:4, 4:5, 5:8] = True
    expected = torch.nonzero((dil & ~ero).flatten()).flatten()
    assert int(counts[0]) == expected.numel() == 5 * 5 * 7 - 3
    assert torch.equal(idx[0, : int(counts[0])], expected)


def test_boundary_points_land_on_boundary_voxels_and_see_both_classes():
    lab = _two_cases()
    idx, counts = boundary_voxels(lab)
    gen = torch.Generator().manual_seed(0)
    pts = sample_boundary_points(idx, counts, torch.tensor([0, 0]), 2000, (8, 10, 12), generator=gen)
    assert pts.shape == (2, 2000, 3) and float(pts.abs().max()) <= 1.0
    # nearest voxel of every point is within one voxel of a boundary voxel: inside the dilated box
    size = torch.tensor([12, 10, 8])
    ijk = torch.round((pts + 1) * 0.5 * (size - 1)).long()
    assert bool(((ijk[..., 2] >= 1) & (ijk[..., 2] <= 5) & (ijk[..., 1] >= 2) & (ijk[..., 1] <= 6)).all())
    target = sample_labels(lab[[0, 0]], pts)
    frac = float(target.float().mean())
    assert 0.15 < frac < 0.4  # both sides of the border are drawn (45 box voxels of 172 in the shell)


def test_case_without_boundary_gets_uniform_points():
    lab = _two_cases()
    idx, counts = boundary_voxels(lab)
    pts = sample_boundary_points(idx, counts, torch.tensor([1]), 500, (8, 10, 12), generator=torch.Generator().manual_seed(1))
    assert float(pts.std()) > 0.4  # spread over the volume, not collapsed on the padding index


def test_trainer_boundary_fraction_mixes_points_and_is_checked():
    from medrefine.engines import AutoDecoderTrainer
    from medrefine.networks import ImplicitRefiner

    lab = _two_cases()[:1]
    cases = [{"image": torch.rand(1, 8, 10, 12).numpy(), "label": lab[0].numpy()}]
    net = ImplicitRefiner(num_cases=1, out_channels=2, latent_dim=8, grid_channels=(4,), grid_sizes=(2,), hidden_channels=(8,))
    opt = torch.optim.Adam(net.parameters())
    with pytest.raises(ValueError, match="boundary_fraction"):
        AutoDecoderTrainer(net, opt, cases, boundary_fraction=1.0)
    plain = AutoDecoderTrainer(net, opt, cases, train_resolution=8, num_points=400)
    edge = AutoDecoderTrainer(net, opt, cases, train_resolution=8, num_points=400, boundary_fraction=0.75)
    _, _, t_plain = plain.sample_batch(torch.tensor([0]), 1)
    pts, _, t_edge = edge.sample_batch(torch.tensor([0]), 1)
    assert pts.shape == (1, 400, 3)
    # the box is 5% of the volume and 26% of its border shell: 3/4 of the points there -> ~4x as many in it
    assert float(t_edge.float().mean()) > 2.5 * float(t_plain.float().mean())

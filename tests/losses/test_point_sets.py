from __future__ import annotations

import pytest
import torch

from medrefine.losses.point_sets import chamfer_distance, knn


def test_knn_matches_brute_force_in_chunks():
    gen = torch.Generator().manual_seed(0)
    q, r = torch.rand(37, 3, generator=gen), torch.rand(23, 3, generator=gen)
    d2, idx = knn(q, r, 4, chunk_size=5)
    brute = ((q[:, None] - r[None]) ** 2).sum(-1)
    ref_d, ref_i = brute.sort(dim=1)
    assert torch.allclose(d2, ref_d[:, :4], atol=1e-5)
    assert torch.equal(idx, ref_i[:, :4])


def test_knn_graph_excludes_self():
    p = torch.rand(10, 3)
    _, idx = knn(p, p, 2, chunk_size=3, exclude_self=True)
    assert not (idx == torch.arange(10)[:, None]).any()


@pytest.mark.parametrize("bidirectional", [True, False])
def test_chamfer_matches_brute_force(bidirectional):
    a, b = torch.rand(2, 11, 3), torch.rand(2, 7, 3)
    d = ((a[:, :, None] - b[:, None]) ** 2).sum(-1)
    ref = d.min(2).values.mean() + (d.min(1).values.mean() if bidirectional else 0.0)
    assert torch.allclose(chamfer_distance(a, b, bidirectional=bidirectional, chunk_size=4), ref, atol=1e-6)
    ref_sqrt = d.sqrt().min(2).values.mean() + (d.sqrt().min(1).values.mean() if bidirectional else 0.0)
    assert torch.allclose(chamfer_distance(a, b, bidirectional=bidirectional, squared=False), ref_sqrt, atol=1e-5)


def test_chamfer_has_gradients_and_checks_shapes():
    a = torch.rand(5, 3, requires_grad=True)
    chamfer_distance(a, torch.rand(6, 3)).backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    with pytest.raises(ValueError, match="share batch and dimension"):
        knn(torch.rand(4, 3), torch.rand(4, 2))
    with pytest.raises(ValueError, match="`k` must lie in"):
        knn(torch.rand(4, 3), torch.rand(2, 3), k=3)

from __future__ import annotations

import pytest
import torch

from medrefine.losses.jacobian import (
    folding_penalty,
    folding_share,
    jacobian,
    jacobian_determinant,
    volume_penalty,
)
from medrefine.losses.nimosef import NimosefLoss, laplacian_smoothness

A = torch.tensor([[0.1, 0.2, 0.0], [0.0, -0.3, 0.05], [0.1, 0.0, 0.2]], dtype=torch.float64)


@pytest.mark.parametrize("method", ["autograd", "finite_difference"])
def test_jacobian_of_an_affine_displacement(method):
    pts = torch.rand(1, 9, 3, dtype=torch.float64)
    grad = jacobian(lambda p: p @ A.T + 0.5, pts, method=method, step=1e-4)
    assert torch.allclose(grad, A.expand(1, 9, 3, 3), atol=1e-6)
    det = jacobian_determinant(grad)
    assert torch.allclose(det, torch.linalg.det(torch.eye(3, dtype=torch.float64) + A).expand(1, 9))


def test_folding_and_volume_penalties():
    det = torch.tensor([1.0, 1.0, -0.5, 2.0])
    assert float(folding_penalty(det)) == pytest.approx(0.125)
    assert float(folding_share(det)) == pytest.approx(0.25)
    assert float(volume_penalty(torch.ones(5))) == 0.0
    with pytest.raises(ValueError, match="`method` must be one of"):
        jacobian(lambda p: p, torch.rand(2, 3), method="spline")


def test_laplacian_is_zero_for_a_constant_field_and_warmup_scales_motion():
    pts = torch.rand(30, 3)
    assert float(laplacian_smoothness(pts, torch.ones(30, 3) * 0.2, k=4)) == pytest.approx(0.0, abs=1e-12)
    assert float(laplacian_smoothness(pts, torch.randn(30, 3), k=4)) > 0
    loss = NimosefLoss(motion_warmup_epochs=10)
    terms = {"intensity": torch.tensor(1.0), "chamfer": torch.tensor(1.0)}
    early, late = float(loss.total(terms, 0)), float(loss.total(terms, 10))
    assert early == pytest.approx(1.0 + 10.0 * loss.motion_weight(0)) and late == pytest.approx(11.0)

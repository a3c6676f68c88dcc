"""Jacobian determinant of a displacement field given as a function, and the penalties built on it.

For a map ``x -> x + u(x)`` the determinant ``det(I + du/dx)`` is the local volume change: ``<= 0``
is folding (the map turns space inside out), ``1`` preserves volume. NIMOSEF (Banus et al., MICCAI
2025) penalises both; MONAI's ``BendingEnergyLoss``/``DiffusionLoss`` act on dense displacement
grids, whereas here ``u`` is an implicit function queried at scattered points, so the derivative
is taken by autograd or by forward finite differences of the function itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["folding_penalty", "folding_share", "jacobian", "jacobian_determinant", "volume_penalty"]

METHODS = ("autograd", "finite_difference")


def jacobian(displacement: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, *,
             method: str = "finite_difference", step: float = 1e-3) -> torch.Tensor:
    """``du/dx`` at ``points``.

    Args:
        displacement: ``(*, N, 3) -> (*, N, 3)``, pointwise (output ``n`` depends only on point ``n``).
        points: ``(*, N, 3)``.
        method: ``"autograd"`` (exact, differentiable with ``create_graph``) or
            ``"finite_difference"`` (forward differences, 3 extra calls). Defaults to the latter.
        step: finite-difference step in the units of ``points``. Defaults to 1e-3.

    Returns:
        ``(*, N, 3, 3)`` with ``[..., i, j] = du_i / dx_j``.

    Raises:
        ValueError: unknown ``method``, non-positive ``step`` or points not ``(..., 3)``.

    Example:
        >>> a = torch.tensor([[0.1, 0.0, 0.0], [0.0, -0.2, 0.0], [0.0, 0.0, 0.3]])
        >>> j = jacobian(lambda p: p @ a.T, torch.rand(4, 3))
        >>> bool(torch.allclose(j, a.expand(4, 3, 3), atol=1e-4))
        True
    """
    if points.shape[-1] != 3:
        raise ValueError(f"`points` must be (..., N, 3), got shape {tuple(points.shape)}")
    if method == "autograd":
        x = points if points.requires_grad else points.detach().requires_grad_(True)
        u = displacement(x)
        rows = [torch.autograd.grad(u[..., i].sum(), x, create_graph=torch.is_grad_enabled())[0] for i in range(3)]
        return torch.stack(rows, dim=-2)
    if method != "finite_difference":
        raise ValueError(f"`method` must be one of {list(METHODS)}, got {method!r}")
    if step <= 0:
        raise ValueError(f"`step` must be > 0, got {step}")
    shifted = [points] + [points + step * torch.eye(3, dtype=points.dtype, device=points.device)[j] for j in range(3)]
    stacked = displacement(torch.cat(shifted, dim=-2))
    n = points.shape[-2]
    base = stacked[..., :n, :]
    cols = [(stacked[..., (j + 1) * n : (j + 2) * n, :] - base) / step for j in range(3)]
    return torch.stack(cols, dim=-1)


def jacobian_determinant(grad_u: torch.Tensor) -> torch.Tensor:
    """``det(I + du/dx)`` of ``(*, 3, 3)`` displacement gradients."""
    eye = torch.eye(3, dtype=grad_u.dtype, device=grad_u.device)
    return torch.linalg.det(eye + grad_u)


def folding_penalty(det: torch.Tensor) -> torch.Tensor:
    """Mean of ``relu(-det)``: zero unless the map folds."""
    return torch.relu(-det).mean()


def folding_share(det: torch.Tensor) -> torch.Tensor:
    """Share of points with ``det <= 0`` (a metric, no gradient)."""
    return (det.detach() <= 0).float().mean()


def volume_penalty(det: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of ``log(det)²``: zero for a volume-preserving map (myocardium is near incompressible)."""
    return torch.log(det.clamp_min(eps)).pow(2).mean()

"""NIMOSEF's implicit function: segmentation, intensity and displacement of a cine MR over the cycle.

Banus et al., "NIMOSEF: Neural implicit motion and segmentation functions", MICCAI 2025. One
network, conditioned on a per-subject shape code (auto-decoder), maps a point ``(x, y, z)`` in the
subject's normalised cardiac axes and a phase ``t`` of the cycle to

- ``seg``: class logits (background, LV, myocardium, RV);
- ``intensity``: the MR intensity in ``[0, 1]`` (sigmoid);
- ``displacement``: where the end-diastolic point ``x`` has moved at ``t``, bounded by
  ``tanh * max_displacement`` (normalised units).

Beyond the reference implementation: time enters through a periodic encoding
(``sin``/``cos`` of ``2πkt``, so ``t`` and ``t + 1`` are the same phase, and of ``2πk(t - t_ed)``)
with the end-diastolic phase ``t_ed`` as an explicit input instead of assuming frame 0; the
activation is a constructor key: ``"wire"`` (real Gabor wavelets, as NIMOSEF), ``"siren"`` (sine
with SIREN initialisation) or ``"fourier"`` (random Fourier features, then ReLU). MONAI has no
coordinate network of this kind, hence plain torch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from medrefine.errors import did_you_mean
from medrefine.networks.describe import records_init_args

__all__ = ["ACTIVATIONS", "NimosefNetwork", "nimosef_network", "time_encoding"]

ACTIVATIONS = ("wire", "siren", "fourier")


def time_encoding(t: torch.Tensor, t_ed: torch.Tensor, harmonics: int = 2) -> torch.Tensor:
    """Periodic encoding of the phase ``t`` and of the phase since end-diastole, ``t - t_ed``.

    Args:
        t: phases ``(*shape)`` in cycles (any real; 1 cycle = 1).
        t_ed: end-diastolic phase, broadcastable to ``t``.
        harmonics: number ``H`` of harmonics ``k = 1..H``. Defaults to 2.

    Returns:
        ``(*shape, 4H + 2)``: ``sin, cos(2πkt)``, ``sin, cos(2πk(t - t_ed))`` and ``sin, cos(2π t_ed)``.

    Example:
        >>> t = torch.tensor([0.25]); bool(torch.allclose(time_encoding(t, t * 0), time_encoding(t + 1, t * 0)))
        True
    """
    if int(harmonics) < 1:
        raise ValueError(f"`harmonics` must be >= 1, got {harmonics}")
    t = torch.as_tensor(t)
    t_ed = torch.as_tensor(t_ed, dtype=t.dtype, device=t.device).expand_as(t)
    k = torch.arange(1, int(harmonics) + 1, dtype=t.dtype, device=t.device)
    phase = 2.0 * math.pi * t.unsqueeze(-1) * k
    since = 2.0 * math.pi * (t - t_ed).unsqueeze(-1) * k
    ed = 2.0 * math.pi * t_ed.unsqueeze(-1)
    return torch.cat([phase.sin(), phase.cos(), since.sin(), since.cos(), ed.sin(), ed.cos()], dim=-1)


class _Gabor(nn.Module):
    """Real Gabor wavelet ``cos(ω z) exp(-(s z)²)`` of a linear map (WIRE, Saragadam et al. CVPR 2023)."""

    def __init__(self, in_features: int, out_features: int, omega: float, scale: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.omega, self.scale = float(omega), float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        return torch.cos(self.omega * z) * torch.exp(-((self.scale * z) ** 2))


class _Sine(nn.Module):
    """``sin(ω0 z)`` of a linear map with SIREN's initialisation (Sitzmann et al., NeurIPS 2020)."""

    def __init__(self, in_features: int, out_features: int, omega: float, first: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.omega = float(omega)
        bound = 1.0 / in_features if first else math.sqrt(6.0 / in_features) / self.omega
        nn.init.uniform_(self.linear.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega * self.linear(x))


class _ReLU(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x))


class NimosefNetwork(nn.Module):
    """Auto-decoder over ``(x, y, z, t)`` with segmentation, intensity and displacement heads.

    Args:
        num_cases: number of training subjects (rows of the code table).
        latent_dim: code size. Defaults to 64 (NIMOSEF: 128).
        hidden_channels: width of every layer. Defaults to 128.
        num_layers: layers of the trunk (the first, then residual ones). Defaults to 4.
        activation: one of :data:`ACTIVATIONS`. Defaults to ``"wire"``.
        num_classes: segmentation classes, background included. Defaults to 4.
        max_displacement: bound of each displacement component (normalised units). Defaults to 0.3.
        time_harmonics: harmonics of :func:`time_encoding`. Defaults to 2.
        omega: frequency of the Gabor/sine activations. Defaults to 10.
        gabor_scale: Gaussian width factor of the Gabor activation. Defaults to 3.
        fourier_features: random Fourier features (``"fourier"`` only). Defaults to 64.
        fourier_sigma: their frequency scale. Defaults to 3.
        latent_init_std: codes start from ``N(0, std²)``. Defaults to 0.01.

    Raises:
        ValueError: for non-positive sizes or an unknown activation (with a did-you-mean).

    Example:
        >>> net = NimosefNetwork(num_cases=2, latent_dim=8, hidden_channels=16, num_layers=2)
        >>> out = net(torch.tensor([0, 1]), torch.zeros(2, 5, 3), torch.zeros(2, 5), torch.zeros(2))
        >>> out["seg"].shape, out["displacement"].shape
        (torch.Size([2, 5, 4]), torch.Size([2, 5, 3]))
    """

    def __init__(self, num_cases: int, latent_dim: int = 64, hidden_channels: int = 128, num_layers: int = 4,
                 activation: str = "wire", num_classes: int = 4, max_displacement: float = 0.3,
                 time_harmonics: int = 2, omega: float = 10.0, gabor_scale: float = 3.0, fourier_features: int = 64,
                 fourier_sigma: float = 3.0, latent_init_std: float = 0.01) -> None:
        super().__init__()
        for name, value in (("num_cases", num_cases), ("latent_dim", latent_dim), ("hidden_channels", hidden_channels),
                            ("num_layers", num_layers), ("num_classes", num_classes), ("time_harmonics", time_harmonics),
                            ("fourier_features", fourier_features)):  # fmt: skip
            if int(value) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}")
        if float(max_displacement) <= 0:
            raise ValueError(f"`max_displacement` must be > 0, got {max_displacement}")
        key = str(activation).lower()
        if key not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {list(ACTIVATIONS)}, got {activation!r}.{did_you_mean(key, ACTIVATIONS)}")
        self.num_cases, self.latent_dim = int(num_cases), int(latent_dim)
        self.num_classes, self.activation = int(num_classes), key
        self.max_displacement, self.time_harmonics = float(max_displacement), int(time_harmonics)
        self.latents = nn.Embedding(self.num_cases, self.latent_dim)
        nn.init.normal_(self.latents.weight, std=float(latent_init_std))
        coords = 3 + 4 * self.time_harmonics + 2
        width = int(hidden_channels)
        if key == "fourier":
            self.register_buffer("frequencies", torch.randn(coords, int(fourier_features)) * float(fourier_sigma))
            coords = 2 * int(fourier_features)
        else:
            self.frequencies = None

        def layer(n_in: int, first: bool) -> nn.Module:
            if key == "wire":
                return _Gabor(n_in, width, omega, gabor_scale)
            if key == "siren":
                return _Sine(n_in, width, omega, first)
            return _ReLU(n_in, width)

        self.first = layer(coords + self.latent_dim, True)
        self.layers = nn.ModuleList(layer(width, False) for _ in range(int(num_layers) - 1))
        self.seg_head = nn.Linear(width, self.num_classes)
        self.intensity_head = nn.Linear(width, 1)
        self.displacement_head = nn.Linear(width, 3)
        nn.init.uniform_(self.displacement_head.weight, -1e-3, 1e-3)
        nn.init.zeros_(self.displacement_head.bias)

    def features(self, latent: torch.Tensor, points: torch.Tensor, t: torch.Tensor, t_ed: torch.Tensor) -> torch.Tensor:
        """Trunk features ``(B, N, hidden)`` of codes ``(B, L)``, points ``(B, N, 3)``, phases ``(B, N)``, ``t_ed (B,)``."""
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"`points` must be (B, N, 3), got shape {tuple(points.shape)}")
        b, n = points.shape[:2]
        if latent.shape != (b, self.latent_dim):
            raise ValueError(f"`latent` must be (B={b}, {self.latent_dim}), got shape {tuple(latent.shape)}")
        t = torch.as_tensor(t, dtype=points.dtype, device=points.device)
        t = t.view(b, 1).expand(b, n) if t.dim() <= 1 else t
        if t.shape != (b, n):
            raise ValueError(f"`t` must be (B={b},) or (B, N={n}), got shape {tuple(t.shape)}")
        t_ed = torch.as_tensor(t_ed, dtype=points.dtype, device=points.device).reshape(-1, 1).expand(b, n)
        x = torch.cat([points, time_encoding(t, t_ed, self.time_harmonics)], dim=-1)
        if self.frequencies is not None:
            proj = 2.0 * math.pi * x @ self.frequencies
            x = torch.cat([proj.sin(), proj.cos()], dim=-1)
        h = self.first(torch.cat([x, latent.unsqueeze(1).expand(b, n, self.latent_dim)], dim=-1))
        for layer in self.layers:
            h = h + layer(h)
        return h

    def decode(self, latent: torch.Tensor, points: torch.Tensor, t: torch.Tensor, t_ed: torch.Tensor,
               heads: tuple[str, ...] = ("seg", "intensity", "displacement")) -> dict[str, torch.Tensor]:
        """The requested heads for explicit codes (see :meth:`forward`)."""
        h = self.features(latent, points, t, t_ed)
        out: dict[str, torch.Tensor] = {}
        if "seg" in heads:
            out["seg"] = self.seg_head(h)
        if "intensity" in heads:
            out["intensity"] = torch.sigmoid(self.intensity_head(h)).squeeze(-1)
        if "displacement" in heads:
            out["displacement"] = torch.tanh(self.displacement_head(h)) * self.max_displacement
        return out

    def forward(self, case_idx: torch.Tensor, points: torch.Tensor, t: torch.Tensor,
                t_ed: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heads for training subjects.

        Args:
            case_idx: ``(B,)`` rows of the code table.
            points: ``(B, N, 3)`` normalised local coordinates.
            t: ``(B,)`` or ``(B, N)`` phases (cycles).
            t_ed: ``(B,)`` end-diastolic phases.

        Returns:
            ``{"seg": (B, N, K), "intensity": (B, N), "displacement": (B, N, 3)}``.
        """
        case_idx = torch.as_tensor(case_idx, device=self.latents.weight.device).long().view(-1)
        if case_idx.numel() and (int(case_idx.min()) < 0 or int(case_idx.max()) >= self.num_cases):
            raise ValueError(f"`case_idx` must lie in [0, {self.num_cases}), got {case_idx.tolist()}")
        return self.decode(self.latents(case_idx), points, t, t_ed)

    @torch.no_grad()
    def mean_latent(self) -> torch.Tensor:
        """Mean of the trained codes ``(1, latent_dim)``: the start of code fitting."""
        return self.latents.weight.mean(dim=0, keepdim=True).clone()

    def extra_repr(self) -> str:
        return f"num_cases={self.num_cases}, latent_dim={self.latent_dim}, activation={self.activation!r}"


@records_init_args("medrefine.networks.nimosef.nimosef_network")
def nimosef_network(num_cases: int, latent_dim: int = 64, hidden_channels: int = 128, num_layers: int = 4,
                    activation: str = "wire", num_classes: int = 4, max_displacement: float = 0.3,
                    time_harmonics: int = 2, omega: float = 10.0, gabor_scale: float = 3.0,
                    fourier_features: int = 64, fourier_sigma: float = 3.0, latent_init_std: float = 0.01,
                    seed: int = 0) -> NimosefNetwork:
    """Build a :class:`NimosefNetwork` from a seed (same seed, same initial weights) that remembers its arguments.

    Example:
        >>> net = nimosef_network(num_cases=12, activation="siren")
        >>> net.init_args["_target_"]
        'medrefine.networks.nimosef.nimosef_network'
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return NimosefNetwork(num_cases, latent_dim, hidden_channels, num_layers, activation, num_classes,
                              max_displacement, time_harmonics, omega, gabor_scale, fourier_features, fourier_sigma,
                              latent_init_std)

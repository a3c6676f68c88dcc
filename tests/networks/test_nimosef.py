from __future__ import annotations

import pytest
import torch

from medrefine.networks.nimosef import NimosefNetwork, nimosef_network, time_encoding


def test_time_encoding_is_periodic():
    t = torch.rand(7)
    t_ed = torch.full((7,), 0.1)
    assert torch.allclose(time_encoding(t, t_ed, 3), time_encoding(t + 1.0, t_ed, 3), atol=1e-5)
    assert torch.allclose(time_encoding(t, t_ed), time_encoding(t, t_ed + 1.0), atol=1e-5)
    assert time_encoding(t, t_ed, 3).shape == (7, 14)


@pytest.mark.parametrize("activation", ["wire", "siren", "fourier"])
def test_heads_shapes_and_bounded_displacement(activation):
    net = NimosefNetwork(num_cases=3, latent_dim=4, hidden_channels=16, num_layers=2, activation=activation,
                         max_displacement=0.05)
    with torch.no_grad():
        net.displacement_head.weight.mul_(1e4)  # saturate: the bound must still hold
    with torch.no_grad():
        out = net(torch.tensor([0, 2]), torch.rand(2, 50, 3) * 4 - 2, torch.rand(2, 50), torch.zeros(2))
    assert out["seg"].shape == (2, 50, 4) and out["intensity"].shape == (2, 50)
    assert float(out["displacement"].abs().max()) <= 0.05 + 1e-7
    assert 0.0 <= float(out["intensity"].min()) and float(out["intensity"].max()) <= 1.0


def test_same_phase_one_cycle_later_gives_same_output():
    net = NimosefNetwork(num_cases=1, latent_dim=4, hidden_channels=16, num_layers=2)
    pts, t = torch.rand(1, 20, 3), torch.rand(1, 20)
    a = net(torch.tensor([0]), pts, t, torch.zeros(1))
    b = net(torch.tensor([0]), pts, t + 1.0, torch.zeros(1))
    assert torch.allclose(a["seg"], b["seg"], atol=1e-4)


def test_builder_records_its_arguments_and_is_seeded():
    a = nimosef_network(num_cases=2, latent_dim=4, hidden_channels=8, num_layers=2, seed=5)
    b = nimosef_network(num_cases=2, latent_dim=4, hidden_channels=8, num_layers=2, seed=5)
    assert a.init_args["_target_"] == "medrefine.networks.nimosef.nimosef_network"
    assert a.init_args["hidden_channels"] == 8
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="Did you mean 'siren'"):
        NimosefNetwork(num_cases=1, activation="sirne")
    with pytest.raises(ValueError, match="`case_idx` must lie in"):
        NimosefNetwork(num_cases=1, latent_dim=2, hidden_channels=4)(torch.tensor([3]), torch.rand(1, 2, 3),
                                                                      torch.rand(1), torch.zeros(1))

"""Tests of medrefine.engines.near_fit (inductive refinement of an unseen case)."""

from __future__ import annotations

import pytest
import torch

from medrefine.engines import create_autodecoder_trainer, fit_latent
from medrefine.inferers import decode_volume
from medrefine.networks import ImplicitRefiner


@pytest.fixture(scope="module")
def trained(blob_cases):
    torch.manual_seed(0)
    net = ImplicitRefiner(2, 3, latent_dim=8, grid_channels=(8, 4), grid_sizes=(4, 8), hidden_channels=(16,),
                          grid_refine=False)  # fmt: skip
    torch.set_num_threads(1)
    create_autodecoder_trainer(net, blob_cases[:2], lr=1e-2, max_epochs=40, batch_size=2, train_resolution=8).run()
    return net


@pytest.mark.parametrize("init", ["mean", "zeros"])
def test_fit_latent_reduces_loss_and_freezes_decoder(trained, blob_cases, init):
    case = blob_cases[2]  # never seen in training
    trained.train()
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    flags = [p.requires_grad for p in trained.parameters()]
    z, history = fit_latent(trained, case["image"], case["label"], steps=40, lr=5e-2, resolution=8,
                            init=init, return_history=True)  # fmt: skip
    assert z.shape == (1, 8) and not z.requires_grad
    assert min(history[-5:]) < history[0]
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    assert [p.requires_grad for p in trained.parameters()] == flags and trained.training
    probs = decode_volume(trained, z, torch.as_tensor(case["image"]), out_shape=(8, 8, 8))
    assert probs.shape == (1, 3, 8, 8, 8)


def test_fit_latent_errors(trained, blob_cases):
    case = blob_cases[2]
    with pytest.raises(ValueError, match="Did you mean 'zeros'"):
        fit_latent(trained, case["image"], case["label"], init="zero")
    with pytest.raises(ValueError, match="`steps` must be >= 1"):
        fit_latent(trained, case["image"], case["label"], steps=0)
    with pytest.raises(ValueError, match="`appearance` is required"):
        fit_latent(trained, None, case["label"], steps=1)
    with pytest.raises(ValueError, match=r"`noisy_label` must lie in \[0, 3\)"):
        fit_latent(trained, case["image"], case["label"] * 2, steps=1)
    with pytest.raises(ValueError, match="on the label grid"):
        fit_latent(trained, case["image"][:, :4], case["label"], steps=1)

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


@pytest.mark.parametrize("init", ["nearest", "mean", "zeros"])
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
    with pytest.raises(ValueError, match="`schedule` must be one of \\['cosine', 'constant'\\]"):
        fit_latent(trained, case["image"], case["label"], schedule="linear")
    with pytest.raises(ValueError, match="`steps` must be >= 1"):
        fit_latent(trained, case["image"], case["label"], steps=0)
    with pytest.raises(ValueError, match="`appearance` is required"):
        fit_latent(trained, None, case["label"], steps=1)
    with pytest.raises(ValueError, match=r"`noisy_label` must lie in \[0, 3\)"):
        fit_latent(trained, case["image"], case["label"] * 2, steps=1)
    with pytest.raises(ValueError, match="on the label grid"):
        fit_latent(trained, case["image"][:, :4], case["label"], steps=1)


def test_nearest_init_starts_from_the_trained_code_that_fits_best(trained, blob_cases):
    """Case 0's own code decodes its label; the other code pushed far away decodes nonsense, and the mean too."""
    import copy

    net = copy.deepcopy(trained)
    with torch.no_grad():
        net.latents.weight[1] += 25.0
    case = blob_cases[0]

    def start(init):
        return fit_latent(net, case["image"], case["label"], steps=1, lr=1e-12, resolution=8, init=init,
                          schedule="constant")[0]

    own, far, mean = net.latents.weight[0].detach(), net.latents.weight[1].detach(), net.mean_latent()[0].detach()
    assert torch.allclose(start("nearest"), own, atol=1e-6)
    assert torch.allclose(start("mean"), mean, atol=1e-6) and not torch.allclose(mean, own, atol=1e-3)
    assert not torch.allclose(far, own, atol=1e-3)

"""Tests of medrefine.inferers.near (chunked decoding, entropy, change map)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medrefine.inferers import change_map, decode_volume, entropy
from medrefine.networks import ImplicitRefiner, grid_points


@pytest.fixture
def net() -> ImplicitRefiner:
    torch.manual_seed(0)
    return ImplicitRefiner(3, 4, latent_dim=8, grid_channels=(6, 4), grid_sizes=(2, 4), hidden_channels=(16,))


@pytest.mark.parametrize("chunk_size", [1, 7, 100])
def test_chunked_equals_unchunked(net, chunk_size):
    img = torch.randn(1, 5, 6, 7)
    full = decode_volume(net, 1, img, chunk_size=10**6)
    assert full.shape == (1, 4, 5, 6, 7)
    torch.testing.assert_close(decode_volume(net, 1, img, chunk_size=chunk_size), full)
    lab, ent = decode_volume(net, 1, img, chunk_size=chunk_size, return_probabilities=False)
    assert torch.equal(lab, full.argmax(1))
    torch.testing.assert_close(ent, entropy(full))


def test_decode_equals_forward_on_grid_points(net):
    img = torch.randn(1, 1, 4, 5, 6)
    probs = decode_volume(net, 2, img)
    logits = net(torch.tensor([2]), grid_points((4, 5, 6)).unsqueeze(0), img)
    ref = torch.softmax(logits, -1).transpose(1, 2).reshape(1, 4, 4, 5, 6)
    torch.testing.assert_close(probs, ref)


def test_latent_and_case_index_agree_and_batch(net):
    img = torch.randn(1, 4, 4, 4)
    by_idx = decode_volume(net, [0, 2], img)
    by_code = decode_volume(net, net.latents.weight[[0, 2]].detach(), img)
    torch.testing.assert_close(by_idx, by_code)
    torch.testing.assert_close(decode_volume(net, net.latents.weight[2].detach(), img), by_idx[1:])


def test_out_shape_other_than_image(net):
    probs = decode_volume(net, 0, torch.randn(1, 4, 4, 4), out_shape=(8, 6, 5), chunk_size=33)
    assert probs.shape == (1, 4, 8, 6, 5)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 8, 6, 5))


def test_training_mode_restored(net):
    net.train()
    decode_volume(net, 0, torch.randn(1, 3, 3, 3))
    assert net.training


def test_decode_errors(net):
    img = torch.randn(1, 3, 3, 3)
    with pytest.raises(ValueError, match=r"case indices must lie in \[0, 3\)"):
        decode_volume(net, 3, img)
    with pytest.raises(ValueError, match=r"must be \(B, 8\)"):
        decode_volume(net, torch.zeros(1, 5), img)
    with pytest.raises(ValueError, match="`chunk_size` must be >= 1"):
        decode_volume(net, 0, img, chunk_size=0)
    shape_only = ImplicitRefiner(1, 2, latent_dim=4, grid_channels=(2,), grid_sizes=(2,), appearance_channels=0)
    with pytest.raises(ValueError, match="`out_shape` is required"):
        decode_volume(shape_only, 0, None)
    assert decode_volume(shape_only, 0, None, (2, 2, 2)).shape == (1, 2, 2, 2, 2)


def test_entropy_values():
    uniform = torch.full((1, 4, 2, 2, 2), 0.25)
    torch.testing.assert_close(entropy(uniform), torch.full((1, 2, 2, 2), math.log(4)))
    torch.testing.assert_close(entropy(uniform, normalize=True), torch.ones(1, 2, 2, 2))
    onehot = torch.zeros(1, 3, 2)
    onehot[:, 1] = 1
    torch.testing.assert_close(entropy(onehot), torch.zeros(1, 2))


def test_change_map_hand_example():
    noisy = np.array([[0, 1], [2, 2]])
    refined = np.array([[1, 1], [2, 0]])
    out = change_map(noisy, refined, 3)
    assert out.dtype == np.int8 and out.shape == (3, 2, 2)
    assert out[0].tolist() == [[-1, 0], [0, 1]]
    assert out[1].tolist() == [[1, 0], [0, 0]]
    assert out[2].tolist() == [[0, 0], [0, -1]]
    assert (out != 0).any(0).tolist() == (noisy != refined).tolist()
    as_torch = change_map(torch.as_tensor(noisy), torch.as_tensor(refined), 3)
    assert isinstance(as_torch, torch.Tensor) and as_torch.tolist() == out.tolist()


def test_change_map_property_sums_to_zero():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, (6, 6, 6)), rng.integers(0, 5, (6, 6, 6))
    out = change_map(a, b, 5)
    # every changed voxel leaves exactly one class and joins exactly one
    assert np.all(out.sum(0) == 0)
    assert np.all((out == 1).sum(0) == (a != b))


def test_change_map_errors():
    with pytest.raises(ValueError, match="same shape"):
        change_map(np.zeros((2, 2)), np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match=r"`refined` must lie in \[0, 2\)"):
        change_map(np.zeros((2,), int), np.array([0, 2]), 2)

"""Lesion classifiers: shapes and gradients of every option, routing respected, model.json round trip."""

from __future__ import annotations

import pytest
import torch

from medrefine.networks.crn import CorrelationRoutingNetwork, to_slices
from medrefine.networks.lesion import build_lesion_classifier, split_logits

ROUTING = [[0, 0, 1], [1, 0, 1], [0, 1, 1], [0, 1, 1]]  # T1 -> none; ART -> t0; DWI, ADC -> t1; all -> t2


@pytest.mark.parametrize("name, size", [("resnet18", 16), ("resnet34", 16), ("densenet121", 32), ("crn", 16)])
@pytest.mark.parametrize("spatial", ["3d", "2.5d"])
def test_shapes_and_gradients(name, size, spatial):
    torch.manual_seed(0)
    net = build_lesion_classifier(name, 4, [3, 2, 2], spatial=spatial, widen_factor=0.25,
                                  routing=ROUTING if name == "crn" else None)
    image = torch.randn(2, 5, size, size, size, requires_grad=True)
    out = net(image, torch.ones(2, 4))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    assert net.init_args["name"] == name and net.init_args["_target_"] == "medrefine.networks.lesion.build_lesion_classifier"


@pytest.mark.parametrize("gating, disease", [("fixed", False), ("learned", True)])
def test_crn_options(gating, disease):
    net = CorrelationRoutingNetwork(4, [3, 2, 2], routing=ROUTING, gating=gating, disease_head=disease,
                                    stem_channels=4, branch_channels=8, token_size=16)
    explained = net.explain(torch.randn(2, 5, 16, 16, 16), torch.ones(2, 4))
    assert explained["logits"].shape == (2, 7) and explained["attention"].shape == (1, 2, 3, 3)
    weights = net.routing_weights()
    assert weights.shape == (4, 3)
    assert float(weights[0, 0]) == 0.0  # a learned gate never opens a route the matrix closes
    if gating == "learned":
        assert 0 < float(weights[1, 0].detach()) < 1 and weights.requires_grad


def test_fixed_routing_is_respected():
    """A target's logits do not change when a modality not routed to it changes (eval mode)."""
    torch.manual_seed(1)
    net = CorrelationRoutingNetwork(4, [3, 2, 2], routing=ROUTING, stem_channels=4, branch_channels=8,
                                    token_size=16).eval()
    image = torch.randn(3, 5, 16, 16, 16)
    presence = torch.ones(3, 4)
    changed = image.clone()
    changed[:, 2:4] = torch.randn(3, 2, 16, 16, 16)  # DWI and ADC: routed to targets 1 and 2 only
    dropped = presence.clone()
    dropped[:, 3] = 0.0
    with torch.no_grad():
        base = split_logits(net(image, presence), [3, 2, 2])
        other = split_logits(net(changed, dropped), [3, 2, 2])
        t1 = image.clone()
        t1[:, 0] = 5.0  # T1 feeds target 2 only
        same = net(t1, presence)
        reference = net(image, presence)
    assert torch.allclose(base[0], other[0], atol=1e-6)  # enhancement reads ART only
    assert not torch.allclose(base[1], other[1])  # diffusion does read DWI/ADC
    assert torch.allclose(same[:, :5], reference[:, :5], atol=1e-6)
    assert not torch.allclose(same[:, 5:], reference[:, 5:])


def test_presence_flag_is_seen():
    torch.manual_seed(2)
    for name in ("resnet18", "crn"):
        net = build_lesion_classifier(name, 2, [2], widen_factor=0.25).eval()
        image = torch.zeros(1, 3, 16, 16, 16)
        with torch.no_grad():
            assert not torch.allclose(net(image, torch.ones(1, 2)), net(image, torch.tensor([[1.0, 0.0]])))


def test_lesion_pooling_reads_inside_and_around_the_mask():
    """Lesion pooling: the means inside the mask and over the rest, separately, at the feature grid."""
    net = CorrelationRoutingNetwork(1, [2], pooling="lesion")
    features = torch.zeros(1, 2, 4, 4, 4)
    features[:, :, 1:3, 1:3, 1:3] = torch.tensor([3.0, -1.0]).reshape(1, 2, 1, 1, 1)
    mask = torch.zeros(1, 1, 16, 16, 16)
    mask[..., 4:12, 4:12, 4:12] = 1.0  # the same 8 central feature voxels at 1/4 resolution
    assert torch.allclose(net._pool(features, mask), torch.tensor([[3.0, -1.0, 0.0, 0.0]]))
    assert torch.allclose(CorrelationRoutingNetwork(1, [2], pooling="global")._pool(features, mask),
                          torch.tensor([[3.0, -1.0]]) / 8)
    with pytest.raises(ValueError, match="`pooling` must be"):
        CorrelationRoutingNetwork(1, [2], pooling="max")


def test_resnet_lesion_pooling_reads_the_mask_channel():
    """Early fusion with lesion pooling: moving the lesion mask changes the output (global pooling
    of an image that is zero everywhere but in the mask channel would too, so compare the pool's
    two halves directly), and the pool forgets the mask after each forward."""
    from medrefine.networks.lesion import LesionPool

    torch.manual_seed(3)
    net = build_lesion_classifier("resnet18", 1, [2], widen_factor=0.25, pooling="lesion").eval()
    assert isinstance(net.backbone.avgpool, LesionPool)
    image = torch.randn(1, 2, 16, 16, 16)
    image[:, 1] = 0.0
    image[:, 1, 6:10, 6:10, 6:10] = 1.0
    with torch.no_grad():
        out = net(image)
    assert net.backbone.avgpool.mask is None and out.shape == (1, 2)
    pool = LesionPool()
    pool.mask = torch.zeros(1, 1, 8, 8, 8)
    pool.mask[..., :4, :, :] = 1.0
    features = torch.cat([torch.full((1, 1, 4, 8, 8), 2.0), torch.full((1, 1, 4, 8, 8), -1.0)], 2)
    assert torch.allclose(pool(features).flatten(), torch.tensor([2.0, -1.0]))
    with pytest.raises(ValueError, match="`pooling` must be"):
        build_lesion_classifier("resnet18", 1, [2], pooling="lesoin")


def test_model_json_round_trip(tmp_path):
    from medrefine.workflows.models import read_model, save_model

    net = build_lesion_classifier("crn", 4, [3, 2], routing=[[1, 0], [1, 0], [0, 1], [0, 1]], gating="learned",
                                  widen_factor=0.25)
    save_model(net, tmp_path, classes={0: "a=0", 1: "a=1", 2: "a=2", 3: "b=0", 4: "b=1"})
    loaded = read_model(tmp_path).load_network()
    image = torch.randn(1, 5, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(image), net.eval()(image))


def test_errors():
    with pytest.raises(ValueError, match="`name` must be one of .* Did you mean 'resnet18'"):
        build_lesion_classifier("resnet81", 2, [2])
    with pytest.raises(ValueError, match=r"`routing` must be an \(2, 2\) 0/1 matrix"):
        CorrelationRoutingNetwork(2, [2, 2], routing=[[1, 0], [1, 0]])
    with pytest.raises(ValueError, match="2.5D input must be"):
        to_slices(torch.zeros(1, 1, 4, 4, 3), 5)


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "crn"])
def test_group_norm_makes_a_sample_independent_of_its_batch(name):
    """norm='group': in training mode a lesion's logits do not depend on the other lesions of the batch
    (what lets several processes without synchronised BatchNorm take the one-process step); with
    BatchNorm they do."""
    torch.manual_seed(0)
    size = 32 if name == "densenet121" else 16  # DenseNet121 pools 5 times
    x, presence = torch.randn(4, 3, size, size, size), torch.ones(4, 2)
    for norm, independent in (("group", True), ("batch", False)):
        net = build_lesion_classifier(name, 2, [3, 2], widen_factor=0.25, norm=norm).train()
        whole = net(x, presence)[:2]
        half = net(x[:2], presence[:2])
        assert torch.allclose(whole, half, atol=1e-5) == independent, (name, norm)
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()) == independent


def test_unknown_norm_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"`norm` must be one of \['batch', 'group'\], got 'instance'"):
        build_lesion_classifier("crn", 2, [2], norm="instance")

"""Self-describing models: model.pt (weights only) + model.json (what they are)."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from monai.networks.nets import UNet

from medrefine.errors import InputError
from medrefine.networks import ImplicitRefiner
from medrefine.workflows.models import (
    check_config,
    component_spec,
    load_weights,
    read_model,
    record_init_args,
    save_model,
)


def _unet() -> torch.nn.Module:
    args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2], "num_res_units": 0}
    torch.manual_seed(0)
    return record_init_args(UNet(**args), "monai.networks.nets.UNet", args)


def test_round_trip_rebuilds_the_same_network(tmp_path):
    net = _unet()
    save_model(net, tmp_path, classes={0: "background", 1: "liver", 2: "spleen"},
               preprocessing={"window": [-175.0, 250.0], "pixdim": (1.5, 1.5, 2.0)}, extra={"formulation": "multiclass"})
    data = json.loads((tmp_path / "model.json").read_text())
    assert data["network"]["_target_"] == "monai.networks.nets.UNet"
    assert data["classes"] == {"0": "background", "1": "liver", "2": "spleen"}
    assert data["preprocessing"]["pixdim"] == [1.5, 1.5, 2.0]
    model = read_model(tmp_path)
    assert model.num_classes == 3 and model.value("formulation") == "multiclass" and model.value("channels") == [4, 8]
    loaded = model.load_network(device="cpu")
    assert not loaded.training
    x = torch.rand(1, 1, 8, 8, 8)
    net.eval()
    assert torch.equal(loaded(x), net(x))
    # a network built from a description remembers it (so it can be saved again)
    assert component_spec(loaded) == component_spec(net)


def test_implicit_refiner_describes_itself(tmp_path):
    net = ImplicitRefiner(3, 4, latent_dim=8, grid_channels=(8,), grid_sizes=(2,), hidden_channels=(16,), act="gelu")
    save_model(net, tmp_path, cases=["b", "a", "c"])
    model = read_model(tmp_path / "model.json")
    assert model.cases == ["b", "a", "c"] and model.num_classes == 4
    rebuilt = model.build_network()
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in net.parameters()]
    assert rebuilt.init_args["act"] == "gelu"


def test_check_config_names_key_both_values_and_file(tmp_path):
    save_model(_unet(), tmp_path, preprocessing={"window": [-175.0, 250.0]})
    model = read_model(tmp_path)
    check_config(model, window=[-175, 250], num_classes=3, unknown_key=7, pixdim=None)  # agree / not recorded / unset
    with pytest.raises(InputError, match=r"model\.json: config key `window` is \[0, 1\] but the model was trained with "
                                         r"\[-175\.0, 250\.0\]"):
        check_config(model, window=[0, 1])
    with pytest.raises(InputError, match=r"config key `num_classes` is 5 but the model was trained with 3"):
        check_config(model, num_classes=5)


def test_description_may_only_name_networks(tmp_path):
    save_model(_unet(), tmp_path)
    data = json.loads((tmp_path / "model.json").read_text())
    data["network"] = {"_target_": "os.system", "command": "touch pwned"}
    (tmp_path / "model.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"`_target_` must name a class or builder under .*got 'os.system'"):
        read_model(tmp_path).build_network()
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content, match", [
    ("not json", "expected a JSON model description"),
    ('{"classes": {}}', "expected a 'network' entry with a '_target_'"),
    ('{"format": 9, "network": {"_target_": "torch.nn.Linear"}}', "format 9 is not supported"),
])
def test_bad_description_is_one_line(tmp_path, content, match):
    (tmp_path / "model.json").write_text(content)
    with pytest.raises(InputError, match=match):
        read_model(tmp_path)


def test_missing_description_tells_how_to_get_one(tmp_path):
    with pytest.raises(InputError, match=r"model\.json: model description not found; train the bundle first"):
        read_model(tmp_path)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_weights_that_would_run_code_are_refused_not_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "model.pt"
    with open(path, "wb") as fh:
        pickle.dump({"model": _Payload(str(marker))}, fh)
    with pytest.raises(InputError, match=r"model\.pt: expected a PyTorch weights file holding tensors .*refused"):
        load_weights(_unet(), path)
    assert not marker.exists()


def test_weights_that_do_not_fit_name_the_file(tmp_path):
    save_model(_unet(), tmp_path)
    other = UNet(spatial_dims=3, in_channels=1, out_channels=5, channels=[4, 8], strides=[2], num_res_units=0)
    with pytest.raises(InputError, match=r"model\.pt: does not fit the network \(Error\(s\) in loading state_dict"):
        load_weights(other, tmp_path / "model.pt")
    (tmp_path / "broken.pt").write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match=r"broken\.pt: expected a PyTorch weights file"):
        load_weights(_unet(), tmp_path / "broken.pt")


def test_checkpoint_entry_is_unwrapped(tmp_path):
    net = _unet()
    torch.save({"model": net.state_dict()}, tmp_path / "ckpt.pt")
    fresh = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=[4, 8], strides=[2], num_res_units=0)
    load_weights(fresh, tmp_path / "ckpt.pt")
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), net.state_dict().values()))


def test_undescribed_network_is_refused():
    with pytest.raises(InputError, match="cannot describe Linear: it has no `init_args`"):
        component_spec(torch.nn.Linear(2, 2))

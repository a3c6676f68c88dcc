"""medrefine.bundle.netcheck: every bundle's network on a tensor shaped from its network_data_format.

Each bundle under ``bundles/`` is covered by being there: its network is built from its train
config with its smoke override on a tiny cohort, described in a ``model.json`` as training would,
and run through the ``verify_net_in_out`` check of ``medrefine bundle verify``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medrefine.bundle import list_bundles
from medrefine.bundle.discovery import bundles_root
from medrefine.bundle.netcheck import NetCheck, _export_round_trip, check_network, plain_tensor_input
from medrefine.errors import InputError
from medrefine.workflows.models import read_model, save_model

BUNDLES = list_bundles(bundles_root())


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> dict[str, Path]:
    from medrefine.data.lesion_phantoms import make_lesion_cohort
    from medrefine.data.phantoms import make_cardiac_cohort

    base = tmp_path_factory.mktemp("netcheck_data")
    make_cardiac_cohort(base / "cohort", cases=2, size=32, noise="moderate", seed=3)
    return {"cohort": base / "cohort", "lesions": make_lesion_cohort(base / "lesions", patients=6, seed=3)}


def _describe(bundle, data: Path, models: Path):
    """Build ``network_def`` of train + smoke on ``data`` and write it as models/model.pt + model.json."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(bundle.path / "configs" / "train.json"), str(bundle.path / "configs" / "smoke.json")])
    parser.update({"dataset_dir": str(data), "bundle_root": str(models.parent), "work_dir": str(models.parent), "device": "cpu"})
    save_model(parser.get_parsed_content("network_def"), models)
    return read_model(models)


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_network_runs_on_network_data_format(bundle, cohorts, tmp_path):
    meta = json.loads((bundle.path / "configs" / "metadata.json").read_text())
    plain = plain_tensor_input(meta)
    if isinstance(plain, str):  # said, not run: the auto-decoder, or a network of query points (cardiac motion)
        inputs = meta["network_data_format"]["inputs"]
        if "case_index" in inputs:
            assert "needs a training case's index" in plain
        else:
            assert "not a plain tensor" in plain and any(f"'{name}'" in plain or name in plain for name in inputs), plain
        assert check_network(None, meta) == plain
        return
    smoke = json.loads((bundle.path / "configs" / "smoke.json").read_text())
    model = _describe(bundle, cohorts[smoke.get("smoke_cohort", "cohort")], tmp_path / "models")
    result = check_network(model, meta, export=False)
    assert isinstance(result, NetCheck)
    key, shape, dtype = plain
    assert result.run.startswith(f"model.json: {key} {(1, *shape)} {dtype} -> ")


def test_output_that_contradicts_the_metadata_is_refused(cohorts, tmp_path):
    bundle = next(b for b in BUNDLES if b.name == "multiorgan_ct_segmentation")
    model = _describe(bundle, cohorts["cohort"], tmp_path / "models")
    meta = json.loads((bundle.path / "configs" / "metadata.json").read_text())
    meta["network_data_format"]["inputs"]["image"]["spatial_shape"] = [16, 16, 16]
    meta["network_data_format"]["outputs"]["pred"]["spatial_shape"] = [8, 8, 8]
    with pytest.raises(InputError, match=r"model\.json: expected output 'pred' of shape \(1, \d+, 8, 8, 8\) for input \(1, 1, 16, 16, 16\), found \(1, \d+, 16, 16, 16\)$"):
        check_network(model, meta, export=False)
    meta["network_data_format"]["outputs"]["pred"]["spatial_shape"] = [16, 16, 16]
    meta["network_data_format"]["outputs"]["pred"]["dtype"] = "float16"
    with pytest.raises(InputError, match=r"expected output 'pred' of dtype float16, found torch\.float32$"):
        check_network(model, meta, export=False)
    meta["network_data_format"]["inputs"]["image"]["num_channels"] = 3
    with pytest.raises(InputError, match=r"model\.json: expected the network to run on 'image' of shape \(1, 3, 16, 16, 16\) \(float32\) from network_data_format, found RuntimeError"):
        check_network(model, meta, export=False)


class _Unscriptable(torch.nn.Module):
    """TorchScript cannot compile ``*args``; torch.export traces it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 2, 1)

    def forward(self, *inputs):
        return self.conv(inputs[0]) * 2


def test_export_falls_back_to_torch_export_and_compares_outputs():
    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 2, 3, padding=1).eval()
    sample = torch.rand(1, 1, 4, 4, 4)
    with torch.no_grad():
        reference = net(sample)
    assert _export_round_trip(net, sample, reference).startswith("TorchScript round trip: saved, loaded, same output")
    with pytest.raises(InputError, match=r"TorchScript round trip: expected the eager output, found a difference of"):
        _export_round_trip(net, sample, reference + 1)
    odd = _Unscriptable().eval()
    with torch.no_grad():
        reference = odd(sample)
    assert _export_round_trip(odd, sample, reference).startswith("torch.export round trip: saved, loaded, same output")

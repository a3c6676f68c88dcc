"""``medrefine bundles`` / ``medrefine run`` and the bundle helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medrefine.bundle import config_files, find_bundle, list_bundles, parse_overrides, verify_bundle_metadata
from medrefine.cli import cli
from medrefine.errors import InputError


def _fake_bundle(root: Path, name: str = "toy", *, with_eval: bool = True) -> Path:
    path = root / name
    (path / "configs").mkdir(parents=True)
    meta = {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": "first"},
        "monai_version": "1.6.1",
        "pytorch_version": "2.13.0",
        "numpy_version": "2.4",
        "task": "toy task",
        "description": "a toy bundle that writes a file",
        "authors": "medrefine",
        "copyright": "medrefine",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield", "num_channels": 1, "spatial_shape": [16, 16, 16],
                                 "dtype": "float32", "value_range": [], "is_patch_data": False}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 2, "spatial_shape": [16, 16, 16],
                                 "dtype": "float32", "value_range": [0, 1], "is_patch_data": False,
                                 "channel_def": {"0": "background", "1": "fg"}}},
        },
    }
    (path / "configs" / "metadata.json").write_text(json.dumps(meta))
    target = str(root / f"{name}_out.txt")
    required = {"device": "cpu", "dataset_dir": ".", "train": {"trainer": {"max_epochs": 1}, "dataset": [], "inferer": None},
                "dataset": [], "evaluator": None, "network_def": None, "inferer": None}  # MONAI's required properties
    train = {"out_file": target, "message": "trained", "run": ["$open(@out_file, 'w').write(@message)"], **required}
    (path / "configs" / "train.json").write_text(json.dumps(train))
    if with_eval:
        (path / "configs" / "evaluate.json").write_text(json.dumps({"message": "evaluated"}))
    return path


def test_parse_overrides_json_and_plain():
    got = parse_overrides(["epochs=2", "lr=1e-3", "dataset_dir=/data/x", "net#ch=[8,16]", "flag=true", "name=\"a b\""])
    assert got == {"epochs": 2, "lr": 1e-3, "dataset_dir": "/data/x", "net#ch": [8, 16], "flag": True, "name": "a b"}
    with pytest.raises(InputError, match="key=value"):
        parse_overrides(["epochs"])


def test_list_find_and_layers(tmp_path):
    _fake_bundle(tmp_path, "toy")
    _fake_bundle(tmp_path, "other", with_eval=False)
    names = [b.name for b in list_bundles(tmp_path)]
    assert names == ["other", "toy"]
    toy = find_bundle("toy", tmp_path)
    assert toy.modes == ("train", "evaluate")
    assert [f.name for f in config_files(toy, "evaluate")] == ["train.json", "evaluate.json"]
    with pytest.raises(InputError, match="Did you mean 'toy'"):
        find_bundle("tyo", tmp_path)
    with pytest.raises(InputError, match="no configs/inference.json"):
        config_files(toy, "inference")


def test_verify_metadata_offline(tmp_path):
    path = _fake_bundle(tmp_path)
    verify_bundle_metadata(path / "configs" / "metadata.json")
    meta = json.loads((path / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    (path / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="channel_def"):
        verify_bundle_metadata(path / "configs" / "metadata.json")


def test_cli_bundles_and_run(tmp_path):
    _fake_bundle(tmp_path, "toy")
    runner = CliRunner()
    res = runner.invoke(cli, ["bundles", "--root", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "toy" in res.output and "a toy bundle" in res.output
    res = runner.invoke(cli, ["run", "toy", "evaluate", "--root", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "toy_out.txt").read_text() == "evaluated"
    res = runner.invoke(cli, ["run", "toy", "train", "--root", str(tmp_path), "--set", "message=\"custom\""])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "toy_out.txt").read_text() == "custom"
    res = runner.invoke(cli, ["run", "toy", "inference", "--root", str(tmp_path)])
    assert res.exit_code == 3 and "no configs/inference.json" in res.output
    res = runner.invoke(cli, ["run", "nope", "--root", str(tmp_path)])
    assert res.exit_code == 3 and "no bundle 'nope'" in res.output


def test_cli_run_refuses_an_unknown_key_before_running(tmp_path):
    _fake_bundle(tmp_path, "toy")
    res = CliRunner().invoke(cli, ["run", "toy", "train", "--root", str(tmp_path), "--set", "mesage=hi"])
    assert res.exit_code == 3, res.output
    assert res.output.strip().splitlines() == [
        "Error: --set mesage: bundle 'toy' mode 'train' (train.json) has no key 'mesage'. Did you mean 'message'? "
        "(to add a new key on purpose write --set +mesage=...)"]
    assert not (tmp_path / "toy_out.txt").exists()  # nothing ran
    res = CliRunner().invoke(cli, ["run", "toy", "train", "--root", str(tmp_path), "--set", "train#trainer#max_epoch=2"])
    assert res.exit_code == 3 and "has no key 'max_epoch' under 'train#trainer'. Did you mean 'max_epochs'?" in res.output


def test_cli_run_reads_python_lists_and_new_keys(tmp_path):
    _fake_bundle(tmp_path, "toy")
    res = CliRunner().invoke(cli, ["run", "toy", "train", "--root", str(tmp_path),
                                   "--set", "+words=['liver','spleen']", "--set", "message=$'+'.join(@words)"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "toy_out.txt").read_text() == "liver+spleen"  # a list of two, not the string "['liver'..."
    res = CliRunner().invoke(cli, ["run", "toy", "train", "--root", str(tmp_path), "--set", "message='a b'"])
    assert res.exit_code == 0 and (tmp_path / "toy_out.txt").read_text() == "a b"
    assert "+KEY=VALUE" in CliRunner().invoke(cli, ["run", "--help"]).output


def test_cli_help_lists_commands():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0, res.output
    for name in ("phantom", "prepare", "validate", "evaluate", "report", "bundles", "run", "demo"):
        assert name in res.output


def test_cli_help_is_fast():
    """`medrefine --help` must not import torch, MONAI or ITK (they cost seconds)."""
    import subprocess
    import sys

    code = (
        "import sys; from click.testing import CliRunner; from medrefine.cli import cli; "
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
        "heavy = [m for m in ('torch', 'monai', 'itk', 'SimpleITK', 'pandas', 'matplotlib') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"`medrefine --help` imported heavy modules: {out}"

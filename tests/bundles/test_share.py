"""Sharing a trained bundle: ``medrefine bundle pack | verify | install`` (medrefine.bundle.archive,
manifest, verify).

One tiny multiorgan_ct_segmentation model (the fastest bundle with a ``models/model.pt``) is
trained once with its smoke config; the tests pack it, install it elsewhere and compare the
installed bundle's inference with the original's, voxel for voxel, through ``medrefine run`` and
``python -m monai.bundle run``; then tamper with the archive and try to escape the destination.
"""

from __future__ import annotations

import json
import re
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import medrefine
from medrefine.bundle import find_bundle, install_bundle, pack_bundle, run_workflow, verify_bundle
from medrefine.bundle.manifest import MANIFEST_FILE
from medrefine.cli import cli
from medrefine.errors import InputError

NAME = "multiorgan_ct_segmentation"
SOURCE = find_bundle(NAME)
VERSION = json.loads((SOURCE.path / "configs" / "metadata.json").read_text())["version"]


def _copy(dest: Path) -> Path:
    shutil.copytree(SOURCE.path, dest, ignore=shutil.ignore_patterns("models", "eval", "logs", "inference", "__pycache__"))
    return dest


def _infer(root: Path, cohort: Path, output: Path) -> None:
    run_workflow(root, "inference", {"dataset_dir": str(cohort), "device": "cpu", "output_dir": str(output), "work_dir": str(root)},
                 extra_configs=[root / "configs" / "smoke.json"])


@pytest.fixture(scope="module")
def cohort(tiny_cohort) -> Path:
    return tiny_cohort


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cohort) -> Path:
    """The bundle trained for one smoke epoch, with the inference of the cohort in ``<root>/../original``."""
    root = _copy(tmp_path_factory.mktemp("share_work") / NAME)
    run_workflow(root, "train", {"dataset_dir": str(cohort), "device": "cpu", "epochs": 1, "work_dir": str(root)},
                 extra_configs=[root / "configs" / "smoke.json"])
    _infer(root, cohort, root.parent / "original")
    return root


@pytest.fixture(scope="module")
def packed(trained, tmp_path_factory) -> Path:
    return pack_bundle(trained, tmp_path_factory.mktemp("share_out"))


def _segmentations(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import nibabel as nib

    found = {}
    for path in sorted(folder.glob("*.nii.gz")):
        image = nib.load(path)
        found[path.name] = (np.asarray(image.dataobj), image.affine)
    assert found, f"no segmentation written in {folder}"
    return found


def _assert_identical(a: Path, b: Path) -> None:
    first, second = _segmentations(a), _segmentations(b)
    assert first.keys() == second.keys()
    for name, (array, affine) in first.items():
        assert array.dtype == second[name][0].dtype and np.array_equal(array, second[name][0]), name
        assert np.array_equal(affine, second[name][1]), name


def _rewrite(archive: Path, out: Path, change) -> Path:
    """Copy ``archive`` member by member; ``change(name, data)`` returns the bytes to write (or None to drop)."""
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for member in src.infolist():
            data = change(member.filename, src.read(member))
            if data is not None:
                dst.writestr(member, data)
    return out


# ---------------------------------------------------------------------------------- pack


def test_pack_holds_configs_docs_license_models_and_manifest(packed, trained):
    assert packed.name == f"{NAME}_{VERSION}.zip"
    with zipfile.ZipFile(packed) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read(f"{NAME}/{MANIFEST_FILE}"))
        assert {m.date_time for m in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert names == sorted(names[:-1]) + [f"{NAME}/{MANIFEST_FILE}"]
    files = manifest["files"]
    assert {"configs/train.json", "configs/metadata.json", "docs/README.md", "LICENSE",
            "models/model.pt", "models/model.json"} <= set(files)
    assert not [f for f in files if f.startswith(("logs/", "inference", "models/latest_"))], files
    assert files["models/model.pt"]["size"] == (trained / "models" / "model.pt").stat().st_size
    assert (manifest["name"], manifest["version"]) == (NAME, VERSION)


def test_pack_is_deterministic(packed, trained, tmp_path):
    again = pack_bundle(trained, tmp_path / "again.zip")
    assert again.read_bytes() == packed.read_bytes()
    res = CliRunner().invoke(cli, ["bundle", "pack", str(trained), "--out", f"{tmp_path / 'new'}/"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "new" / packed.name).read_bytes() == packed.read_bytes()


def test_pack_takes_the_models_of_a_work_dir(packed, trained, tmp_path):
    """The bundle folder holds no model (runs write under their work dir): the same archive, byte for byte."""
    bare = _copy(tmp_path / NAME)
    assert pack_bundle(bare, tmp_path / "a.zip", models_dir=trained / "models").read_bytes() == packed.read_bytes()
    res = CliRunner().invoke(cli, ["bundle", "pack", str(bare), "--work-dir", str(trained), "--out", str(tmp_path / "b.zip")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b.zip").read_bytes() == packed.read_bytes()
    res = CliRunner().invoke(cli, ["bundle", "pack", str(bare), "--run", "nothing_here", "--out", str(tmp_path / "c.zip")])
    assert res.exit_code == 3 and "nothing_here/models: expected a trained model" in res.output


def test_pack_refuses_no_model_and_a_version_outside_the_changelog(tmp_path):
    root = _copy(tmp_path / NAME)
    with pytest.raises(InputError, match=r"models: expected a trained model .* found none; .*--no-weights"):
        pack_bundle(root, tmp_path)
    configs_only = pack_bundle(root, tmp_path, weights=False)
    with zipfile.ZipFile(configs_only) as archive:
        assert not [n for n in archive.namelist() if "/models/" in n]
    meta_file = root / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "version": "9.0.0"}))
    with pytest.raises(InputError, match=r"metadata\.json: expected version '9\.0\.0' to have a changelog entry"):
        pack_bundle(root, tmp_path, weights=False)
    meta_file.write_text(json.dumps({**meta, "changelog": {"9.0.0": "newer", **meta["changelog"]}}))
    with pytest.raises(InputError, match=rf"expected version '{re.escape(VERSION)}' to be the newest in the changelog, found '9\.0\.0'"):
        pack_bundle(root, tmp_path, weights=False)


# ---------------------------------------------------------------------- verify + install


def test_round_trip_installed_bundle_gives_identical_outputs(packed, trained, cohort, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["bundle", "verify", str(packed)])
    assert res.exit_code == 0, res.output
    with zipfile.ZipFile(packed) as archive:
        count = len(archive.namelist()) - 1  # all but the manifest
    assert f"ok  files: {count} match manifest.json (sha256 and size), none unlisted" in res.output
    assert "network: model.json: image (1, 1, 96, 96, 96) float32 -> pred (1, " in res.output
    assert "export: model.json: TorchScript round trip: saved, loaded, same output" in res.output
    assert "configs/inference.json:\n" in res.output and "  network_def: $@model.build_network()" in res.output

    res = runner.invoke(cli, ["bundle", "install", str(packed), "--to", str(tmp_path / "installed")])
    assert res.exit_code == 0, res.output
    root = tmp_path / "installed" / NAME
    assert sorted(p.name for p in (tmp_path / "installed").iterdir()) == [NAME]  # no staging folder left
    assert verify_bundle(root, export=False).checks[0].startswith("files: ")

    # medrefine run, in this process
    res = runner.invoke(cli, ["run", str(root), "inference", "--config", str(root / "configs" / "smoke.json"),
                              "--set", f"dataset_dir={cohort}", "--set", "device=cpu",
                              "--set", f"output_dir={tmp_path / 'by_medrefine'}"])
    assert res.exit_code == 0, res.output
    _assert_identical(trained.parent / "original", tmp_path / "by_medrefine")

    # MONAI's own runner, in a fresh process
    configs = root / "configs"
    env = {**os.environ, "PYTHONPATH": str(Path(medrefine.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run",
         "--config_file", str([str(configs / "inference.json"), str(configs / "smoke.json")]),
         "--meta_file", str(configs / "metadata.json"), "--bundle_root", str(root), "--work_dir", str(root),
         "--dataset_dir", str(cohort), "--device", "cpu", "--output_dir", str(tmp_path / "by_monai")],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_identical(trained.parent / "original", tmp_path / "by_monai")

    # monai.bundle.load finds DIR/<name>/models/model.pt
    import torch
    from monai.bundle import load

    from medrefine.workflows.models import read_model

    network = load(NAME, bundle_dir=str(tmp_path / "installed"), model=read_model(root / "models").build_network(),
                   device="cpu", source="github")
    original = torch.load(trained / "models" / "model.pt", weights_only=True)
    assert all(torch.equal(v, original[k]) for k, v in network.state_dict().items())


@pytest.mark.parametrize("member", ["configs/inference.json", "models/model.pt"])
def test_one_changed_byte_is_refused_by_verify_and_install(packed, tmp_path, member):
    def flip(name: str, data: bytes) -> bytes:
        if name != f"{NAME}/{member}":
            return data
        return data[:100] + bytes([data[100] ^ 1]) + data[101:]

    tampered = _rewrite(packed, tmp_path / "tampered.zip", flip)
    expected = rf"tampered\.zip: {member}: expected sha256 [0-9a-f]{{16}}\.\.\., found [0-9a-f]{{16}}\.\.\. \(changed since it was packed\); refused$"
    with pytest.raises(InputError, match=expected):
        verify_bundle(tampered)
    with pytest.raises(InputError, match=expected):
        install_bundle(tampered, tmp_path / "to")
    assert list((tmp_path / "to").iterdir()) == []  # nothing put in place, no staging folder left
    res = CliRunner().invoke(cli, ["bundle", "install", str(tampered), "--to", str(tmp_path / "to")])
    assert res.exit_code == 3 and res.output.count("\n") == 1 and f": {member}: expected sha256" in res.output, res.output


def test_missing_and_unlisted_files_are_refused(packed, tmp_path):
    dropped = _rewrite(packed, tmp_path / "dropped.zip", lambda n, d: None if n.endswith("docs/README.md") else d)
    with pytest.raises(InputError, match=r"dropped\.zip: docs/README\.md: expected a file of \d+ bytes \(listed in the manifest\), found none"):
        verify_bundle(dropped, export=False)

    extra = Path(shutil.copyfile(packed, tmp_path / "extra.zip"))
    with zipfile.ZipFile(extra, "a") as archive:
        archive.writestr(f"{NAME}/configs/site.json", '{"device": "$__import__(\'os\').system(\'true\')"}')
    with pytest.raises(InputError, match=r"extra\.zip: configs/site\.json: expected only the files the manifest lists"):
        install_bundle(extra, tmp_path / "to")


def _evil_archive(path: Path, name: str, *, link: bool = False, data: bytes = b"x") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{NAME}/configs/metadata.json", "{}")
        member = zipfile.ZipInfo(name)
        if link:
            member.create_system = 3
            member.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(member, data)
    return path


@pytest.mark.parametrize("name, link, found", [
    (f"{NAME}/../../escaped.txt", False, "a '..' component"),
    ("/tmp/escaped.txt", False, "an absolute path"),
    ("C:/escaped.txt", False, "an absolute path"),
    (f"{NAME}/configs/evil_link", True, "a symbolic link"),
    ("other_bundle/configs/x.json", False, f"a member outside {NAME}/"),
])
def test_escaping_members_are_refused(tmp_path, name, link, found):
    archive = _evil_archive(tmp_path / "evil.zip", name, link=link, data=b"/etc/passwd" if link else b"x")
    dest = tmp_path / "dest" / "inner"
    for call in (lambda: install_bundle(archive, dest), lambda: verify_bundle(archive)):
        with pytest.raises(InputError, match=rf"evil\.zip: {name}: expected .*, found {re.escape(found)}.*; refused$"):
            call()
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "dest" / "escaped.txt").exists()
    assert not dest.exists() or list(dest.iterdir()) == []


def test_oversized_member_is_refused(tmp_path):
    archive = _evil_archive(tmp_path / "big.zip", f"{NAME}/models/model.pt", data=b"\0" * (2 << 20))
    with pytest.raises(InputError, match=rf"big\.zip: {NAME}/models/model\.pt: expected members of at most 1 MiB, found 2097152 bytes; refused"):
        install_bundle(archive, tmp_path / "to", max_member_mb=1)
    res = CliRunner().invoke(cli, ["bundle", "verify", str(archive), "--max-member-mb", "1"])
    assert res.exit_code == 3 and "found 2097152 bytes; refused" in res.output


def test_install_refuses_an_installed_bundle_unless_forced(packed, tmp_path):
    first = install_bundle(packed, tmp_path)
    (first / "marker").write_text("old")
    with pytest.raises(InputError, match=rf"{NAME}: expected a free destination, found bundle '{NAME}' already installed; pass --force"):
        install_bundle(packed, tmp_path)
    again = install_bundle(packed, tmp_path, force=True)
    assert again == first and not (again / "marker").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]

"""The bundles ship inside the package: a wheel carries them and an installed medrefine finds them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from medrefine.bundle import discovery

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.name for p in (REPO / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())


def test_an_installed_copy_comes_before_the_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDREFINE_BUNDLES", raising=False)
    assert discovery.bundles_root() == REPO / "bundles"  # a checkout: no medrefine/bundles in the package
    packaged = tmp_path / "site" / "medrefine" / "bundles"
    (packaged / "toy" / "configs").mkdir(parents=True)
    monkeypatch.setattr(discovery, "packaged_bundles", lambda: packaged)
    assert discovery.bundles_root() == packaged
    monkeypatch.setenv("MEDREFINE_BUNDLES", str(tmp_path))
    assert discovery.bundles_root() == tmp_path


def test_packaged_bundles_is_inside_the_imported_package():
    import medrefine

    assert discovery.packaged_bundles() == Path(medrefine.__file__).parent / "bundles"


@pytest.mark.slow
def test_wheel_carries_every_bundle_and_the_installed_package_finds_them(tmp_path):
    source = tmp_path / "src"  # build from a copy: pip builds in the tree (build/, *.egg-info)
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "models", "logs", "eval", "inference")
    shutil.copytree(REPO / "medrefine", source / "medrefine", ignore=ignore)
    shutil.copytree(REPO / "bundles", source / "bundles", ignore=ignore)
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("medrefine-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for bundle in SHIPPED:
        for part in ("configs/metadata.json", "configs/train.json", "configs/inference.json", "configs/logging.conf",
                     "docs/README.md", "LICENSE"):
            assert f"medrefine/bundles/{bundle}/{part}" in names, f"{wheel.name} lacks {bundle}/{part}"
    assert not [n for n in names if "/models/" in n or n.endswith(".pt")]

    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                              str(site), str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    probe = ("import medrefine; from medrefine.bundle import bundles_root, list_bundles, config_files; "
             "print(medrefine.__file__); print(bundles_root()); print(','.join(b.name for b in list_bundles())); "
             "print(config_files('annotation_refinement', 'evaluate')[-1])")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEDREFINE_BUNDLES")}
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={**env, "PYTHONPATH": str(site)},
                           capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr[-3000:]
    module, root, listed, evaluate = found.stdout.split("\n")[:4]
    assert Path(module).is_relative_to(site)
    assert Path(root) == site / "medrefine" / "bundles"
    assert listed.split(",") == SHIPPED
    assert Path(evaluate) == site / "medrefine" / "bundles" / "annotation_refinement" / "configs" / "evaluate.json"

"""Build hook: ship the bundles inside the package.

The bundles live at the repository's top (``bundles/<name>/``), where the README's
``python -m monai.bundle run --config_file bundles/...`` commands find them. A wheel built from
``pyproject.toml`` alone would hold none of them, so this ``build_py`` copies each bundle's
shareable parts (``configs/``, ``docs/``, ``LICENSE``) into ``medrefine/bundles/<name>/`` of the
build, where :func:`medrefine.bundle.discovery.bundles_root` looks in an installed package.
Trained models, logs and outputs never enter the wheel. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHARED_PARTS = ("configs", "docs", "LICENSE")


def bundle_sources(root: Path = HERE / "bundles") -> list[tuple[Path, str]]:
    """``(file, path inside medrefine/bundles)`` for every shareable file of every bundle."""
    found: list[tuple[Path, str]] = []
    for bundle in sorted(p for p in root.glob("*") if (p / "configs" / "metadata.json").is_file()):
        for part in SHARED_PARTS:
            path = bundle / part
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
            found += [(f, f.relative_to(root).as_posix()) for f in files
                      if "__pycache__" not in f.parts and not f.name.startswith(".")]
    return found


class BuildWithBundles(build_py):
    """``build_py`` that also copies the bundles into ``<build>/medrefine/bundles``."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "medrefine" / "bundles"
        for source, rel in bundle_sources():
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)


setup(cmdclass={"build_py": BuildWithBundles})

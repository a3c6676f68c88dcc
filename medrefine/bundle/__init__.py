"""Finding, checking and running medrefine's MONAI bundles.

Every workflow ships as a MONAI bundle under ``bundles/``; this subpackage lists them, composes
their config layers for a mode (train, evaluate, inference, ...), checks their metadata, and runs
them through MONAI's own bundle runner (writing under a work directory, see
:mod:`medrefine.bundle.workdir`), and packs, verifies and installs trained bundles for
sharing (sha256 manifests, safe extraction).
"""

from __future__ import annotations

from medrefine.bundle.archive import extract_bundle, install_bundle, pack_bundle
from medrefine.bundle.discovery import BundleInfo, bundles_root, config_files, find_bundle, list_bundles
from medrefine.bundle.overrides import parse_overrides
from medrefine.bundle.runner import run_bundle, run_workflow
from medrefine.bundle.verify import BundleReport, verify_bundle, verify_bundle_metadata
from medrefine.bundle.workdir import default_work_dir, trained_model_dir

__all__ = [
    "BundleInfo",
    "BundleReport",
    "bundles_root",
    "config_files",
    "default_work_dir",
    "extract_bundle",
    "find_bundle",
    "install_bundle",
    "list_bundles",
    "pack_bundle",
    "parse_overrides",
    "run_bundle",
    "run_workflow",
    "trained_model_dir",
    "verify_bundle",
    "verify_bundle_metadata",
]

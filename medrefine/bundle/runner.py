"""Run a bundle mode through MONAI's bundle runner (``monai.bundle.run``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medrefine.bundle.discovery import BundleInfo, config_files, find_bundle
from medrefine.errors import InputError

__all__ = ["parse_overrides", "run_bundle", "run_workflow"]

logger = logging.getLogger(__name__)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["epochs=2", "device='cpu'", "net#channels=[8,16]"]`` -> ``{"epochs": 2, ...}``.

    The value is parsed as JSON when it is valid JSON (numbers, booleans, lists, quoted strings)
    and kept as a plain string otherwise, so ``dataset_dir=/data/x`` works unquoted.

    Raises:
        InputError: an item has no ``=`` or an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"override {item!r} must look like key=value (nested keys with '#', e.g. network_def#channels=[8,16])")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def run_bundle(
    bundle: BundleInfo | str | Path,
    mode: str = "train",
    overrides: dict[str, Any] | None = None,
    *,
    extra_configs: list[str | Path] | None = None,
    run_id: str = "run",
) -> None:
    """Run ``mode`` of a bundle the way ``python -m monai.bundle run`` would.

    Args:
        bundle: a bundle, its name under ``bundles/``, or its folder.
        mode: ``train``, ``evaluate``, ``inference``, ``multi_gpu_train`` or a config stem.
        overrides: config values to replace (``{"epochs": 2}``); ``bundle_root`` defaults to the
            bundle's folder.
        extra_configs: config files layered on top of the mode's.
        run_id: the config entry to run (MONAI's default ``run``).

    Example:
        >>> run_bundle("annotation_refinement", "train", {"epochs": 2})  # doctest: +SKIP
    """
    from monai.bundle import run

    info = bundle if isinstance(bundle, BundleInfo) else find_bundle(bundle)
    files = config_files(info, mode, extra_configs)
    meta = info.path / "configs" / "metadata.json"
    logging_conf = info.path / "configs" / "logging.conf"
    params = {"bundle_root": str(info.path), **(overrides or {})}
    logger.info("running %s %s with %s", info.name, mode, [f.name for f in files])
    run(
        run_id=run_id,
        meta_file=str(meta),
        config_file=[str(f) for f in files],
        logging_file=str(logging_conf) if logging_conf.is_file() else None,
        **params,
    )


def run_workflow(
    bundle: BundleInfo | str | Path,
    mode: str = "train",
    overrides: dict[str, Any] | None = None,
    *,
    extra_configs: list[str | Path] | None = None,
) -> Any:
    """Run ``mode`` of a bundle in this process through ``monai.bundle.ConfigWorkflow``.

    Like :func:`run_bundle`, but returns the finished workflow, so its parsed parts (``trainer``,
    ``network``, ...) can be inspected afterwards, as tests and notebooks want.

    Args:
        bundle: a bundle, its name under ``bundles/``, or its folder.
        mode: ``train``, ``evaluate``, ``inference``, ``multi_gpu_train`` or a config stem.
        overrides: config values to replace; ``bundle_root`` defaults to the bundle's folder.
        extra_configs: config files layered on top of the mode's (e.g. ``configs/smoke.json``).

    Returns:
        The ``ConfigWorkflow`` after ``initialize``, ``run`` and ``finalize``.
    """
    from monai.bundle import ConfigWorkflow

    info = bundle if isinstance(bundle, BundleInfo) else find_bundle(bundle)
    files = config_files(info, mode, extra_configs)
    logging_conf = info.path / "configs" / "logging.conf"
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in files],
        meta_file=str(info.path / "configs" / "metadata.json"),
        logging_file=str(logging_conf) if logging_conf.is_file() else None,
        workflow_type=None,
        **{"bundle_root": str(info.path), **(overrides or {})},
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow

"""Run a bundle mode through ``monai.bundle.ConfigWorkflow`` with MONAI's required-property check."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medrefine.bundle.discovery import BundleInfo, config_files, find_bundle, workflow_type
from medrefine.bundle.overrides import check_overrides, merged_config
from medrefine.bundle.verbosity import hold_quiet, run_verbosity
from medrefine.errors import InputError, MedrefineError

__all__ = ["create_workflow", "run_bundle", "run_workflow"]

logger = logging.getLogger(__name__)


#: Longest wait (s) for the worker threads a failed run left behind (CacheDataset's thread pool).
THREAD_GRACE_S = 30.0
# name parts of multiprocessing.pool.ThreadPool's threads ("Thread-3 (worker)", "Thread-1 (_handle_tasks)")
_POOL_THREADS = ("(worker)", "(_handle_")


def _join_new_threads(before: set[threading.Thread], timeout: float = THREAD_GRACE_S) -> None:
    """Wait for the threads started since ``before`` to end, up to ``timeout`` seconds in all.

    MONAI's ``CacheDataset`` fills its cache on a ``ThreadPool``; when one item raises, the pool is
    terminated but its threads finish the item they hold. If the process exits meanwhile, the
    interpreter is torn down under a thread running inside torch and the C++ runtime aborts
    (``terminate called without an active exception``, exit 134). Waiting for them first lets
    the error end the run cleanly.
    """
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread in before or thread is threading.current_thread() or not thread.is_alive():
            continue
        if any(part in thread.name for part in _POOL_THREADS):  # not tqdm's or TensorBoard's long-lived ones
            thread.join(max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def medrefine_errors() -> Iterator[None]:
    """Re-raise the medrefine error that MONAI's config machinery wrapped; let worker threads end first.

    MONAI reports a failing ``$`` expression or component as ``RuntimeError("Failed to evaluate
    ...")`` with the real error as its cause; a refused input (``InputError``: one line naming the
    file, what was expected and what was found) is raised as itself instead. On any error, the
    threads started inside the block are given :data:`THREAD_GRACE_S` seconds to finish (see
    :func:`_join_new_threads`).
    """
    before = set(threading.enumerate())
    try:
        yield
    except MedrefineError:
        _join_new_threads(before)
        raise
    except Exception as err:
        _join_new_threads(before)
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, MedrefineError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None


def _required_missing(workflow: Any) -> list[tuple[str, str]]:
    """``(property, config id)`` of every required property of the workflow type the config lacks."""
    from monai.utils import BundleProperty, BundlePropertyConfig

    from monai.bundle.utils import ID_SEP_KEY

    return [(name, prop[BundlePropertyConfig.ID].replace(ID_SEP_KEY, "#"))  # as configs write it: train#inferer
            for name, prop in (workflow.properties or {}).items()
            if prop.get(BundleProperty.REQUIRED, False) and prop[BundlePropertyConfig.ID] not in workflow.parser]


def create_workflow(
    bundle: BundleInfo | str | Path,
    mode: str = "train",
    overrides: dict[str, Any] | None = None,
    *,
    extra_configs: list[str | Path] | None = None,
    run_id: str = "run",
) -> Any:
    """An initialised ``monai.bundle.ConfigWorkflow`` for ``mode``, its required properties checked.

    The workflow type follows the mode (``train``/``multi_gpu_train``/``stage2``: ``"train"``;
    ``evaluate``/``inference``: ``"infer"``; see :data:`~medrefine.bundle.discovery.WORKFLOW_TYPES`),
    and MONAI's ``check_properties`` runs on the merged config before anything is run.

    Every override key must name an entry of the merged config (``#`` for nested keys) unless
    written ``+key`` (a new key on purpose); see :func:`~medrefine.bundle.overrides.check_overrides`.

    Raises:
        InputError: an override names a key the config lacks (with a did-you-mean); the merged
            config lacks a property MONAI requires of the workflow type, or
            names an optional one under a wrong id — one line naming the bundle, mode, config
            files and keys.
    """
    from monai.bundle import ConfigWorkflow

    info = bundle if isinstance(bundle, BundleInfo) else find_bundle(bundle)
    files = config_files(info, mode, extra_configs)
    logging_conf = info.path / "configs" / "logging.conf"
    kind = workflow_type(mode)
    where = f"bundle {info.name!r} mode {mode!r} ({', '.join(f.name for f in files)})"
    overrides = check_overrides(merged_config(files), overrides or {}, where=where)
    level = logging.getLogger().level or logging.WARNING  # the caller's; the config's logging.conf resets it
    hold_quiet(level)
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in files],
        meta_file=str(info.path / "configs" / "metadata.json"),
        logging_file=str(logging_conf) if logging_conf.is_file() else None,
        run_id=run_id,
        workflow_type=kind,
        **{"bundle_root": str(info.path), **overrides},
    )
    hold_quiet(level)
    missing = _required_missing(workflow)
    if missing:
        keys = ", ".join(f"{cid!r} ({name})" for name, cid in missing)
        raise InputError(f"{where}: the config lacks what MONAI requires of a {kind} workflow: {keys}")
    with medrefine_errors():
        workflow.initialize()
        hold_quiet(level)  # the StatsHandlers the config built set their loggers to INFO
        problems = workflow.check_properties()
    if problems:
        raise InputError(f"{where}: MONAI's property check of a {kind} workflow fails for {problems} "
                         "(an optional property under a wrong id)")
    return workflow


def run_bundle(
    bundle: BundleInfo | str | Path,
    mode: str = "train",
    overrides: dict[str, Any] | None = None,
    *,
    extra_configs: list[str | Path] | None = None,
    run_id: str = "run",
) -> None:
    """Run ``mode`` of a bundle the way ``python -m monai.bundle run`` would, with its properties checked.

    Args:
        bundle: a bundle, its name under ``bundles/``, or its folder.
        mode: ``train``, ``evaluate``, ``inference``, ``multi_gpu_train`` or a config stem.
        overrides: config values to replace (``{"epochs": 2}``); ``bundle_root`` defaults to the
            bundle's folder.
        extra_configs: config files layered on top of the mode's.
        run_id: the config entry to run (MONAI's default ``run``).

    Raises:
        InputError: see :func:`create_workflow`.

    Example:
        >>> run_bundle("annotation_refinement", "train", {"epochs": 2})  # doctest: +SKIP
    """
    info = bundle if isinstance(bundle, BundleInfo) else find_bundle(bundle)
    logger.info("running %s %s", info.name, mode)
    with run_verbosity():
        workflow = create_workflow(info, mode, overrides, extra_configs=extra_configs, run_id=run_id)
        with medrefine_errors():
            workflow.run()
            workflow.finalize()


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
        The ``ConfigWorkflow`` after ``initialize``, the property check, ``run`` and ``finalize``.

    Raises:
        InputError: see :func:`create_workflow`.
    """
    with run_verbosity():
        workflow = create_workflow(bundle, mode, overrides, extra_configs=extra_configs)
        with medrefine_errors():
            workflow.run()
            workflow.finalize()
    return workflow

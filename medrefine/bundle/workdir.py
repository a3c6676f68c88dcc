"""Where a bundle run writes: a work directory outside the bundle and the checkout.

A bundle's folder holds its configs and docs (``bundle_root``); what a run makes — ``models/``
(checkpoints, ``model.pt`` + ``model.json``), ``logs/``, ``eval/``, ``inference/`` — goes under
the run's ``work_dir``. The configs default it to ``./medrefine_runs/<bundle>/<run_name>`` of the
directory the run starts in (``run_name`` defaults to ``default``), so train, evaluate and
inference started from the same place share one model; ``medrefine run --work-dir DIR`` and
``python -m monai.bundle run --work_dir DIR`` name it instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from medrefine.errors import InputError

__all__ = ["DEFAULT_RUN", "RUNS_FOLDER", "default_work_dir", "trained_model_dir"]

#: Folder under the current directory that holds the runs of every bundle.
RUNS_FOLDER = "medrefine_runs"
#: The run name when none is given.
DEFAULT_RUN = "default"
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def default_work_dir(bundle: str, run_name: str = DEFAULT_RUN, base: str | Path | None = None) -> str:
    """``<base>/medrefine_runs/<bundle>/<run_name>`` as an absolute path (``base``: the current directory).

    Args:
        bundle: the bundle's name (its folder name).
        run_name: the run; letters, digits, ``.``, ``_``, ``-``. Defaults to ``"default"``.
        base: the folder holding ``medrefine_runs``; defaults to the current directory.

    Raises:
        InputError: ``run_name`` is empty or holds a path separator or other characters.

    Example:
        >>> default_work_dir("annotation_refinement", "smoke", base="/data")
        '/data/medrefine_runs/annotation_refinement/smoke'
    """
    name = str(run_name)
    if not _RUN_NAME.match(name):
        raise InputError(f"run_name {name!r}: expected a name of letters, digits, '.', '_' or '-' "
                         "(use --work-dir for a folder elsewhere)")
    return os.path.join(os.path.abspath(base if base is not None else os.getcwd()), RUNS_FOLDER, str(bundle), name)


def trained_model_dir(work_dir: str | Path, bundle_root: str | Path) -> str:
    """The model folder evaluate and inference read: the run's ``<work_dir>/models`` when it exists,
    else the bundle's own ``models/`` when it holds a model (an installed model-zoo bundle), else
    ``<work_dir>/models`` (so a missing model is reported where train would have written it).

    Example:
        >>> trained_model_dir("runs/default", "bundles/annotation_refinement")  # doctest: +SKIP
        'runs/default/models'
    """
    run_models = Path(work_dir) / "models"
    shipped = Path(bundle_root) / "models"
    if not run_models.is_dir() and shipped.is_dir() and any(shipped.glob("**/*.json")):
        return str(shipped)
    return str(run_models)

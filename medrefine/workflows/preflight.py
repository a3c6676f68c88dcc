"""Validate first, then write: what every bundle mode checks before its first output.

Each bundle config starts its ``initialize`` list with :func:`preflight`. Referencing ``@cases``
there makes the case loader run (and so :func:`medrefine.data.validate.require_valid`, the checks
of ``medrefine validate``) before anything is written; then the places the run will write to are
checked against the inputs it read:

- ``output_dir`` (or ``model_dir``) equal to a folder that holds an input file, or to the dataset
  folder, is refused unless the config sets ``write_into_input_folder: true``;
- an output file that would land on an input file is refused always (an empty
  ``output_postfix`` into the image folder would overwrite the images);
- ``model_dir`` inside the dataset folder is refused unless ``write_into_input_folder: true``
  (checkpoints in a dataset are read back as data by the next folder scan, or shipped with it);
  so are the other folders a training mode fills (``work_dirs``: pre-processed arrays, logs).

MONAI's ``SaveImaged`` and ``CheckpointSaver`` write where they are told; nothing in MONAI
compares an output location with the inputs, hence this module. It also holds
:func:`nonfinite_transform`, the transform a bundle's ``nan_policy`` key selects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medrefine.errors import InputError

__all__ = ["preflight", "input_files", "nonfinite_transform", "zero_nonfinite"]

logger = logging.getLogger(__name__)

_OPT_IN = "write_into_input_folder: true"


def input_files(cases: Iterable[Mapping[str, Any]]) -> list[Path]:
    """Every existing file a case list names (``image``, ``label``, ``points``, ``image_path``, ...), resolved."""
    found = []
    for case in cases:
        for value in case.values():
            if isinstance(value, (str, Path)) and str(value):
                path = Path(value)
                try:
                    if path.is_file():
                        found.append(path.resolve())
                except OSError:  # pragma: no cover - a name too long for the file system
                    continue
    return found


def _dataset_root(dataset_dir: str | Path | None) -> Path | None:
    if dataset_dir is None:
        return None
    path = Path(dataset_dir).expanduser()
    return (path if path.is_dir() else path.parent).resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _output_names(cases: Iterable[Mapping[str, Any]], output_dir: Path, postfix: str | None,
                  suffix: str) -> list[tuple[str, Path]]:
    """(case, file) the mode writes per case: ``<case>_<postfix><suffix>``, or ``<case><suffix>``."""
    names = []
    for case in cases:
        cid = str(case.get("case", ""))
        if cid:
            stem = f"{cid}_{postfix}" if postfix else cid
            names.append((cid, (output_dir / f"{stem}{suffix}").resolve()))
    return names


def preflight(
    cases: Sequence[Mapping[str, Any]],
    *,
    dataset_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    output_postfix: str | None = None,
    output_suffix: str = ".nii.gz",
    model_dir: str | Path | None = None,
    output_files: Sequence[str | Path] = (),
    work_dirs: Sequence[str | Path] = (),
    write_into_input_folder: bool = False,
) -> Sequence[Mapping[str, Any]]:
    """Refuse a run whose outputs would land among its inputs; return ``cases``.

    Args:
        cases: the mode's cases, already loaded and checked (the config passes ``@cases``, whose
            loader runs :func:`~medrefine.data.validate.require_valid`).
        dataset_dir: the dataset the cases come from (its folder is an input folder).
        output_dir: where the mode writes per-case files (None: it writes none).
        output_postfix: per-case files are ``<case>_<postfix><output_suffix>``; None when the
            mode names its files otherwise (sub-folders per output kind).
        output_suffix: suffix of the per-case files. Default ``".nii.gz"``.
        model_dir: where a training mode writes its checkpoints and model (None: it writes none).
        output_files: single files the mode writes besides (e.g. a predictions CSV); one that is
            an input file of the run is refused always.
        work_dirs: other folders a training mode writes into (pre-processed arrays, logs),
            refused inside the dataset as ``model_dir`` is.
        write_into_input_folder: allow ``output_dir``/``model_dir``/``work_dirs`` to be (in) an
            input folder (an output file on an input file is refused still).

    Returns:
        ``cases``, unchanged.

    Raises:
        InputError: one line naming the output path, what was expected and what was found.

    Example:
        >>> preflight(cases, dataset_dir="cohort", output_dir="cohort/images", output_postfix="seg")  # doctest: +SKIP
        InputError: .../cohort/images: expected an output folder apart from the inputs, found the folder of input case_000.nii.gz ...
    """
    inputs = input_files(cases)
    input_set = set(inputs)
    folders = {p.parent: p for p in inputs}
    root = _dataset_root(dataset_dir)
    if root is not None:
        folders.setdefault(root, root)
    for file in output_files:
        target = Path(file).expanduser().resolve()
        if target in input_set:
            raise InputError(f"{target}: expected a new output file, found an input file of the run there; "
                             "refusing to overwrite an input: set another output path")
    if output_dir is not None:
        out = Path(output_dir).expanduser().resolve()
        for cid, target in _output_names(cases, out, output_postfix, output_suffix) if output_postfix is not None else ():
            if target in input_set:
                raise InputError(
                    f"{target}: expected a new output file, found an input file of the run there (case {cid!r}); "
                    "refusing to overwrite an input: set another `output_dir` or a non-empty `output_postfix`"
                )
        if out in folders:
            if output_postfix == "":
                raise InputError(
                    f"{out}: expected an output folder apart from the inputs or a non-empty `output_postfix`, "
                    f"found an empty postfix into the folder of input {folders[out].name}"
                )
            if not write_into_input_folder:
                raise InputError(
                    f"{out}: expected an output folder apart from the inputs, found the folder of input "
                    f"{folders[out].name}; set another `output_dir` (or `{_OPT_IN}` to write beside the inputs)"
                )
    written = [(model_dir, "a model folder", "`model_dir`")] if model_dir is not None else []
    written += [(folder, "a working folder", "folder") for folder in work_dirs if folder is not None]
    for folder, what, setting in written if not write_into_input_folder else ():
        target = Path(folder).expanduser().resolve()
        holder = root if root is not None and _inside(target, root) else (target if target in folders else None)
        if holder is not None:
            raise InputError(
                f"{target}: expected {what} outside the dataset, found it inside the input folder {holder}; "
                f"set another {setting} (or `{_OPT_IN}`)"
            )
    return cases


def nonfinite_transform(nan_policy: str = "refuse", keys: str | Sequence[str] = "image") -> Any:
    """The transform a bundle's ``nan_policy`` selects, placed right after ``LoadImaged``.

    ``"refuse"`` (the default): the case loader has already refused NaN/Inf voxels, so this is
    MONAI's ``Identityd``. ``"zero"``: NaN and +-Inf voxels become 0 (``torch.nan_to_num``).

    Raises:
        InputError: an unknown policy (with a did-you-mean).
    """
    from monai.transforms import Identityd, Lambdad

    from medrefine.data.validate import refuses_nonfinite

    if refuses_nonfinite(nan_policy):
        return Identityd(keys=keys)
    return Lambdad(keys=keys, func=zero_nonfinite)


def zero_nonfinite(array: Any) -> Any:
    """``array`` with NaN and +-Inf replaced by 0 (a tensor or a NumPy array, type kept)."""
    import numpy as np
    import torch

    if isinstance(array, torch.Tensor):
        return torch.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    return np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)

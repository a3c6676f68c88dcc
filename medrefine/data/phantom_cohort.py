"""Write a phantom cohort to disk: images, clean and noisy labels, class table and datalist.

Both phantom families (:mod:`medrefine.data.phantoms`, :mod:`medrefine.data.heart_sdf`) write
the same layout, so every loader, bundle and benchmark reads either; only how a case is made
differs, and that is the caller's ``make_case``.

Layout (paths in the datalist are relative to it)::

    out_dir/images/case_000.nii.gz        CT (int16 HU)
    out_dir/labels/case_000.nii.gz        clean label (uint8)
    out_dir/labels_noisy/case_000.nii.gz  the label as an annotator drew it
    out_dir/classes.json                  {"0": "background", "1": ..., ...}
    out_dir/datalist.json                 {"training": [{"case", "image", "label" (noisy),
                                           "label_clean"}, ...], "labels": ..., ...}
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from medrefine.errors import InputError, did_you_mean

__all__ = ["NOISE_LEVELS", "PhantomCase", "building_folder", "check_noise_level", "check_output_folder",
           "write_phantom_cohort"]

logger = logging.getLogger(__name__)

#: Accepted ``noise`` names of the phantom cohorts (a float severity in [0, 1] is accepted too).
NOISE_LEVELS = ("none", "mild", "moderate", "severe")

#: What ``make_case(i)`` returns: ``(image HU, clean label, noisy label, affine)``.
PhantomCase = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def check_noise_level(noise: str | float) -> None:
    """Refuse a ``noise`` that is neither one of :data:`NOISE_LEVELS` nor a float in [0, 1] (did-you-mean)."""
    if isinstance(noise, str):
        if noise not in NOISE_LEVELS:
            raise InputError(f"`noise` must be one of {list(NOISE_LEVELS)} or a float in [0, 1], got {noise!r}."
                             f"{did_you_mean(noise, NOISE_LEVELS)}")
    elif isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= float(noise) <= 1.0:
        raise InputError(f"`noise` must be one of {list(NOISE_LEVELS)} or a float in [0, 1], got {noise!r}")


def check_output_folder(out_dir: str | Path, overwrite: bool) -> Path:
    """Refuse an output that is a file, or a non-empty folder without ``overwrite``; return it as a Path."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InputError(f"{out_dir}: exists and is not a folder; choose another output folder")
        if any(out_dir.iterdir()) and not overwrite:
            raise InputError(
                f"{out_dir}: output folder exists and is not empty; choose a new folder or pass "
                "overwrite=True (CLI: --overwrite) to replace it"
            )
    return out_dir


def _replace_folder(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        old = None
        if any(out_dir.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            old.rmdir()
            out_dir.rename(old)
        else:
            out_dir.rmdir()
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)


@contextlib.contextmanager
def building_folder(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir`` to fill; it replaces ``out_dir`` when the body ends
    without error and is deleted otherwise, so an interrupted run leaves nothing half-written.

    Raises:
        InputError: as :func:`check_output_folder`.
    """
    out_dir = check_output_folder(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        yield tmp
        _replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_phantom_cohort(
    out_dir: str | Path,
    cases: int,
    make_case: Callable[[int], PhantomCase],
    *,
    classes: Mapping[int, str],
    name: str,
    description: str,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write ``cases`` phantoms made by ``make_case(i)`` in the layout of the module docstring.

    The cohort is built in a temporary sibling folder and renamed into place at the end, so an
    interrupted run leaves nothing half-written.

    Args:
        out_dir: folder to create; it may exist only if empty, unless ``overwrite``.
        cases: number of cases (>= 1).
        make_case: ``i -> (image, clean label, noisy label, affine)`` of case ``i``.
        classes: the class table (``classes.json`` and the datalist's ``labels``).
        name: the datalist's ``name``.
        description: the datalist's ``description``.
        overwrite: replace a non-empty ``out_dir``.
        progress: tqdm progress bar on stderr.

    Returns:
        Path of ``datalist.json``.

    Raises:
        InputError: ``out_dir`` is a file or a non-empty folder (without ``overwrite``), or
            ``cases < 1``.
    """
    from medrefine.data.classes import save_classes
    from medrefine.data.datalist import write_datalist
    from medrefine.io import save_nifti

    if isinstance(cases, bool) or not isinstance(cases, (int, np.integer)) or cases < 1:
        raise InputError(f"`cases` must be a positive integer, got {cases!r}")
    out_dir = Path(out_dir)
    with building_folder(out_dir, overwrite) as tmp:
        entries = []
        iterator = range(int(cases))
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc=name, unit="case")
        for i in iterator:
            case = f"case_{i:03d}"
            image, label, noisy, affine = make_case(i)
            save_nifti(np.rint(image).clip(-1024, 3071).astype(np.int16), tmp / "images" / f"{case}.nii.gz",
                       affine=affine)
            save_nifti(label, tmp / "labels" / f"{case}.nii.gz", affine=affine)
            save_nifti(noisy, tmp / "labels_noisy" / f"{case}.nii.gz", affine=affine)
            entries.append({"case": case, "image": f"images/{case}.nii.gz", "label": f"labels_noisy/{case}.nii.gz",
                            "label_clean": f"labels/{case}.nii.gz"})
        save_classes(dict(classes), tmp / "classes.json")
        write_datalist({
            "name": name,
            "description": description,
            "labels": {str(k): v for k, v in classes.items()},
            "numTraining": len(entries),
            "training": entries,
            "test": [],
        }, tmp / "datalist.json")
    logger.info("wrote %d phantom cases (%s) to %s", cases, name, out_dir)
    return out_dir / "datalist.json"

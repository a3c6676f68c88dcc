"""Cohorts of SDF heart phantoms on disk, in the layout of :func:`~medrefine.data.phantoms.make_cardiac_cohort`.

The layout is the same as the first family's (``images/``, ``labels/`` (clean), ``labels_noisy/``,
``classes.json``, ``datalist.json`` with ``image``, ``label`` (noisy), ``label_clean``, ``case``), so
every reader, bundle and benchmark takes either family: tune a recipe on one, report it on the
other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medrefine.data.annotator_noise import NOISE_MODELS, annotate
from medrefine.data.heart_sdf import make_heart_sdf_phantom
from medrefine.data.phantom_cohort import NOISE_LEVELS
from medrefine.data.phantoms import CARDIAC_CLASSES, phantom_affine
from medrefine.errors import InputError, did_you_mean

__all__ = ["NOISE_LEVELS", "make_heart_sdf_cohort"]

logger = logging.getLogger(__name__)

def make_heart_sdf_cohort(
    out_dir: str | Path,
    *,
    cases: int = 8,
    size: int | Sequence[int] = 64,
    spacing_mm: float = 1.5,
    noise: str | float = "moderate",
    noise_model: str = "mixed",
    supersample: int = 3,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a cohort of SDF heart phantoms with clean and noisy labels, and its datalist.

    The layout of :mod:`medrefine.data.phantom_cohort` (``images/``, ``labels/`` clean,
    ``labels_noisy/`` after :func:`~medrefine.data.annotator_noise.annotate`, ``classes.json``,
    ``datalist.json`` with ``label`` = noisy and ``label_clean``).

    Built in a temporary sibling folder and renamed into place at the end. Case ``i`` uses the
    phantom seed ``SeedSequence([seed, i])`` and the noise seed ``SeedSequence([seed, i, 2])``.

    Args:
        out_dir: folder to create; it may exist only if empty, unless ``overwrite``.
        cases: number of cases (>= 1). Default 8.
        size: voxels per axis (int or 3 ints). Default 64.
        spacing_mm: voxel size in mm. Default 1.5 (96 mm field of view at 64^3).
        noise: ``"none"``, ``"mild"``, ``"moderate"``, ``"severe"`` or a severity in [0, 1].
        noise_model: one of :data:`~medrefine.data.annotator_noise.NOISE_MODELS`. Default
            ``"mixed"``.
        supersample: samples per voxel and axis of the image (odd). Default 3.
        seed: cohort seed. Default 0.
        overwrite: replace a non-empty ``out_dir``. Default False.
        progress: tqdm progress bar on stderr. Default False.

    Returns:
        Path of ``datalist.json``.

    Raises:
        InputError: ``out_dir`` is a file or a non-empty folder (without ``overwrite``); bad
            ``cases``, ``size``, ``spacing_mm``, ``noise`` or ``noise_model`` (did-you-mean).

    Example:
        >>> make_heart_sdf_cohort("sdf", cases=2, noise_model="slicewise")  # doctest: +SKIP
        PosixPath('sdf/datalist.json')
    """
    from medrefine.data.phantom_cohort import check_noise_level, write_phantom_cohort

    check_noise_level(noise)
    if noise_model not in NOISE_MODELS:
        raise InputError(f"`noise_model` must be one of {list(NOISE_MODELS)}, got {noise_model!r}."
                         f"{did_you_mean(noise_model, NOISE_MODELS)}")
    make_heart_sdf_phantom(8, spacing_mm=spacing_mm, supersample=supersample)  # argument checks, cheap

    def make_case(i: int):
        case_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        noise_seed = int(np.random.SeedSequence([seed, i, 2]).generate_state(1)[0])
        image, label, spacing = make_heart_sdf_phantom(size, seed=case_seed, spacing_mm=spacing_mm,
                                                       supersample=supersample)
        noisy = label.copy() if noise == "none" else annotate(label, model=noise_model, severity=noise, image=image,
                                                              spacing=spacing, seed=noise_seed)
        return image, label, noisy, phantom_affine(label.shape, spacing)

    edge = "x".join(map(str, (size,) * 3 if np.isscalar(size) else size))
    return write_phantom_cohort(
        out_dir, cases, make_case, classes=CARDIAC_CLASSES, name="medrefine SDF heart phantoms",
        description=(
            f"{cases} SDF cardiac CT phantoms ({edge} voxels, spacing {float(spacing_mm)} mm), annotation noise "
            f"{noise!r} ({noise_model}), seed {seed}; 'label' is the noisy label, 'label_clean' the reference"
        ),
        overwrite=overwrite, progress=progress,
    )  # fmt: skip

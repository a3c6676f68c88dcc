"""Multi-modal lesion phantoms in the RRMediCa folder layout, with targets of known modality origin.

Each patient has 1-4 lesions; each lesion folder holds one region-of-interest image per modality
(``T1``, ``ART`` arterial phase and ``DWI`` at 1.5 mm, the diffusion map ``ADC`` at 2.5 mm) and
an ``annotations.json`` (see :mod:`medrefine.data.lesions`). What each target can be read from is
known by construction:

=================  =======  =================================================================
target             classes  drawn from
=================  =======  =================================================================
``enhancement``    0, 1, 2  the lesion's contrast in ``ART`` alone (hypo / iso / hyper)
``diffusion``      0, 1     ``DWI`` and ``ADC`` together: 1 when their lesion contrasts have
                            opposite signs (restriction-like), 0 when equal; each sign is
                            drawn 50/50, so either map alone says nothing about it
``malignant``      0, 1     1 when hyper-enhancing and restricted (a "disease" target)
=================  =======  =================================================================

``T1`` shows every lesion with a random contrast and carries no target. Per lesion the diameter
(7-15 mm), ellipsoid axes, contrast magnitudes and texture vary; per patient and modality the
image is shifted by up to ``misregistration_mm`` (the annotated centres follow each modality, as
in the seed data), and each modality is missing with probability ``missing_rate`` (never all).
``cohort.json`` at the top records the modalities, the targets and their source modalities.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medrefine.errors import InputError

__all__ = ["LESION_MODALITIES", "LESION_TARGETS", "TARGET_SOURCES", "make_lesion_cohort"]

logger = logging.getLogger(__name__)

#: modality -> (voxel size mm, ROI voxels per axis, background mean, noise sd)
LESION_MODALITIES: dict[str, tuple[float, int, float, float]] = {
    "T1": (1.5, 24, 300.0, 25.0),
    "ART": (1.5, 24, 250.0, 25.0),
    "DWI": (2.5, 16, 120.0, 12.0),
    "ADC": (2.5, 16, 1.2, 0.12),
}
LESION_TARGETS: dict[str, list[str]] = {"enhancement": ["0", "1", "2"], "diffusion": ["0", "1"], "malignant": ["0", "1"]}
#: which modalities each target is readable from (the CRN's "true" routing)
TARGET_SOURCES: dict[str, list[str]] = {"enhancement": ["ART"], "diffusion": ["DWI", "ADC"],
                                        "malignant": ["ART", "DWI", "ADC"]}


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-8)


def _roi(rng: np.random.Generator, modality: str, centre: np.ndarray, axes_mm: np.ndarray,
         contrast: float, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One modality's ROI: image, affine, and the lesion centre's voxel index in it."""
    spacing, n, mean, sd = LESION_MODALITIES[modality]
    offset = rng.uniform(-3.0, 3.0, size=3)  # the ROI is not exactly centred on the lesion
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = centre + offset - spacing * (n - 1) / 2.0
    idx = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).astype(float)
    world = idx * spacing + affine[:3, 3]
    inside = (((world - centre) / (axes_mm / 2.0)) ** 2).sum(-1) <= 1.0
    image = mean + sd * (1.5 * _smooth_noise(rng, (n, n, n), 2.0) + rng.standard_normal((n, n, n)))
    texture = 1.0 + 0.25 * _smooth_noise(rng, (n, n, n), 1.0)
    image = image + inside * contrast * mean * texture
    voxel = (np.linalg.inv(affine) @ np.append(centre, 1.0))[:3]
    return (image * scale).astype(np.float32), affine, voxel


def _lesion(rng: np.random.Generator) -> dict[str, Any]:
    enhancement = int(rng.integers(0, 3))
    dwi_sign, adc_sign = rng.choice([-1.0, 1.0], size=2)
    diffusion = int(dwi_sign != adc_sign)
    return {
        "diameter": float(rng.uniform(7.0, 15.0)),
        "targets": {"enhancement": enhancement, "diffusion": diffusion,
                    "malignant": int(enhancement == 2 and diffusion == 1)},
        "contrast": {
            "T1": float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.5)),
            "ART": float((enhancement - 1) * rng.uniform(0.25, 0.6)),
            "DWI": float(dwi_sign * rng.uniform(0.25, 0.6)),
            "ADC": float(adc_sign * rng.uniform(0.25, 0.6)),
        },
    }


def make_lesion_cohort(
    out_dir: str | Path,
    *,
    patients: int = 80,
    lesions_per_patient: tuple[int, int] = (1, 4),
    misregistration_mm: float = 3.0,
    missing_rate: float = 0.08,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a lesion phantom cohort (layout and targets in the module docstring).

    Args:
        out_dir: folder to create (may exist only if empty, unless ``overwrite``).
        patients: number of patients (>= 1). Default 80 (about 200 lesions).
        lesions_per_patient: inclusive range of lesions per patient. Default ``(1, 4)``.
        misregistration_mm: largest shift of one modality against another, per axis. Default 3.
        missing_rate: probability that a patient lacks a modality. Default 0.08.
        seed: cohort seed (same seed, same files).
        overwrite: replace a non-empty ``out_dir``.
        progress: tqdm bar on stderr.

    Returns:
        The cohort folder.

    Raises:
        InputError: bad counts or rates, or an existing non-empty ``out_dir`` without ``overwrite``.

    Example:
        >>> make_lesion_cohort("lesions", patients=80, seed=0)  # doctest: +SKIP
    """
    from medrefine.data.phantom_cohort import building_folder
    from medrefine.io import atomic_write, save_nifti

    low, high = (int(v) for v in lesions_per_patient)
    if isinstance(patients, bool) or int(patients) < 1:
        raise InputError(f"`patients` must be a positive integer, got {patients!r}")
    if not 1 <= low <= high:
        raise InputError(f"`lesions_per_patient` must be (min, max) with 1 <= min <= max, got {lesions_per_patient!r}")
    if not 0.0 <= float(missing_rate) < 1.0 or float(misregistration_mm) < 0:
        raise InputError(f"`missing_rate` must be in [0, 1) and `misregistration_mm` >= 0, got {missing_rate!r}, "
                         f"{misregistration_mm!r}")
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    modalities = list(LESION_MODALITIES)
    count = 0
    with building_folder(out_dir, overwrite) as tmp:
        iterator = range(int(patients))
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="lesion phantoms", unit="patient")
        for p in iterator:
            patient = f"P{p:03d}"
            shifts = {m: rng.uniform(-misregistration_mm, misregistration_mm, 3) / 2.0 for m in modalities}
            missing = [m for m in modalities if rng.random() < missing_rate]
            if len(missing) == len(modalities):
                missing = missing[:-1]
            scale = {m: float(rng.uniform(0.7, 1.4)) for m in modalities}  # per-patient scanner gain
            for index in range(int(rng.integers(low, high + 1))):
                lesion = _lesion(rng)
                centre = rng.uniform(-40.0, 40.0, 3)
                axes = lesion["diameter"] * rng.uniform(0.85, 1.15, 3)
                folder = tmp / f"{patient}_lesion{index}_{lesion['diameter']:.1f}mm"
                files, phy, npl = [], [], []
                for m in modalities:
                    if m in missing:
                        continue
                    seen_at = centre + shifts[m]
                    image, affine, voxel = _roi(rng, m, seen_at, axes, lesion["contrast"][m], scale[m])
                    save_nifti(image, folder / f"{m}.nii.gz", affine=affine)
                    annotated = voxel + rng.normal(0.0, 0.3, 3)  # the annotator's click
                    world = (affine @ np.append(annotated, 1.0))[:3]
                    files.append(f"{m}.nii.gz")
                    phy.append([round(-world[0], 2), round(-world[1], 2), round(world[2], 2)])  # ITK LPS
                    npl.append([int(round(v)) for v in annotated[::-1]])
                roi = {"id": "0", "tag": patient, "patient": patient, "nifti_files": str(files),
                       "phy_loc_xyz": str(phy), "np_loc_zyx": str(npl), "distance": f"{lesion['diameter']:.1f} mm"}
                roi.update({t: str(v) for t, v in lesion["targets"].items()})
                with atomic_write(folder / "annotations.json") as path:
                    path.write_text(json.dumps({"0": roi}, indent=1) + "\n")
                count += 1
        description = {"name": "lesion phantoms", "patients": int(patients), "lesions": count,
                       "modalities": modalities, "targets": LESION_TARGETS, "target_sources": TARGET_SOURCES,
                       "seed": int(seed), "misregistration_mm": float(misregistration_mm),
                       "missing_rate": float(missing_rate)}
        with atomic_write(tmp / "cohort.json") as path:
            path.write_text(json.dumps(description, indent=1) + "\n")
    logger.info("wrote %d lesions of %d patients to %s", count, patients, out_dir)
    return out_dir

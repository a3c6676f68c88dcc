"""Cine MR cohorts: the BIDS-like layout of NIMOSEF, or a datalist of 4D image + 4D label pairs.

BIDS-like layout (Banus et al., NIMOSEF, MICCAI 2025)::

    ROOT/sub-0001/anat/sub-0001_img-short_axis_tp-2.nii.gz            4D cine (X, Y, Z, T)
    ROOT/derivatives/sa_segmentation/sub-0001/sub-0001_sa_seg.nii.gz  4D labels (optional)
    ROOT/derivatives/sa_coordinates/sub-0001/sa_axis_affine.tfm       local cardiac axes (optional)
    ROOT/derivatives/sa_roi/sub-0001/sub-0001_sa.nii.gz               cropped ROI image (optional)

The image is the file under ``anat/`` whose name holds ``short_axis``; the label the file under
``sa_segmentation/<sub>/`` ending in ``_sa_seg.nii.gz`` (``*_sa_seg_all_corrected`` is the label of
the uncropped image and is used when the ROI is not). Any other dataset :func:`load_cohort` reads
(a datalist JSON, ``images/`` + ``labels/``) works too, its images and labels being 4D.

Files are listed here; :func:`load_cine_subject` opens one subject and refuses, in one line naming
the file, a 3D image where a 4D cine is expected, a label with another frame count or grid, and a
missing transform when one is required.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medrefine.errors import InputError

__all__ = [
    "CINE_CLASSES",
    "CineSubject",
    "cine_cohort",
    "cohort_spatial_dims",
    "is_bids_cine",
    "load_cine_cases",
    "load_cine_subject",
    "read_bids_cine",
    "read_transform",
]

logger = logging.getLogger(__name__)

TRANSFORM_FILE = "sa_axis_affine.tfm"
#: The class table of a cine cohort without ``classes.json`` (NIMOSEF's four classes).
CINE_CLASSES: dict[int, str] = {0: "background", 1: "left_ventricle", 2: "myocardium", 3: "right_ventricle"}
_NIFTI = (".nii.gz", ".nii")
_LPS = np.diag([-1.0, -1.0, 1.0])


def _nifti_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(_NIFTI))


def _subject_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("sub-"))


def is_bids_cine(root: str | Path) -> bool:
    """True when ``root`` holds ``sub-*/anat/`` folders with a ``*short_axis*`` NIfTI file."""
    root = Path(root)
    if not root.is_dir():
        return False
    return any(any("short_axis" in p.name for p in _nifti_files(s / "anat")) for s in _subject_dirs(root))


def _bids_cases(root: Path, *, require_label: bool, require_transform: bool, use_roi: bool
                ) -> tuple[list[dict[str, Any]], list[tuple[str, Path, str]]]:
    """The subjects of a BIDS-like cine folder and its problems ``(case, file or folder, problem)`` (only
    what is required is a problem when absent)."""
    derivatives = root / "derivatives"
    cases, problems = [], []
    for sub in _subject_dirs(root):
        sid = sub.name
        anat = [p for p in _nifti_files(sub / "anat") if "short_axis" in p.name]
        if use_roi:
            anat = _nifti_files(derivatives / "sa_roi" / sid)
        if not anat:
            where = derivatives / "sa_roi" / sid if use_roi else sub / "anat"
            problems.append((sid, where, "expected a short-axis cine NIfTI file, found none"))
            continue
        if len(anat) > 1:
            problems.append((sid, anat[0].parent, f"expected one short-axis cine, found {len(anat)} ({anat[0].name}, ...)"))
            continue
        case: dict[str, Any] = {"case": sid, "image": str(anat[0])}
        segs = _nifti_files(derivatives / "sa_segmentation" / sid)
        plain = [p for p in segs if p.name.split(".")[0].endswith("_sa_seg")]
        full = [p for p in segs if "_sa_seg_all_corrected" in p.name]
        chosen = (plain or full) if use_roi else (full or plain)
        if chosen:
            case["label"] = str(chosen[0])
        elif require_label:
            problems.append((sid, derivatives / "sa_segmentation" / sid, "expected a *_sa_seg.nii.gz label, found none"))
        tfm = derivatives / "sa_coordinates" / sid / TRANSFORM_FILE
        if tfm.is_file():
            case["transform"] = str(tfm)
        elif require_transform:
            problems.append((sid, tfm, "expected the subject's short-axis transform, found no file"))
        cases.append(case)
    return cases, problems


def read_bids_cine(root: str | Path, *, require_label: bool = True, require_transform: bool = False,
                   use_roi: bool = False) -> list[dict[str, Any]]:
    """List the subjects of a BIDS-like cine dataset (files listed, not opened).

    Args:
        root: dataset folder.
        require_label: every subject must have a segmentation.
        require_transform: every subject must have ``sa_coordinates/<sub>/sa_axis_affine.tfm``.
        use_roi: read ``derivatives/sa_roi/<sub>/*.nii.gz`` as the image (and ``*_sa_seg`` as its label).

    Returns:
        One dict per subject: ``case``, ``image`` and, when present, ``label`` and ``transform``.

    Raises:
        InputError: one line per problem (all listed), naming the folder or file.
    """
    root = Path(root).resolve()
    cases, found = _bids_cases(root, require_label=require_label, require_transform=require_transform, use_roi=use_roi)
    problems = [f"{file}: {problem}" for _, file, problem in found]
    if not cases and not problems:
        raise InputError(f"{root}: expected sub-*/anat/*short_axis*.nii.gz subjects, found none")
    if problems:
        raise InputError(problems[0] if len(problems) == 1 else
                         f"{root}: {len(problems)} problems:\n  " + "\n  ".join(problems))
    return cases


def cine_cohort(path: str | Path, *, require: Sequence[str] = ("image", "label"), strict: bool = True,
                layouts: Sequence[str] = ("cine",)) -> Any:
    """A BIDS-like cine folder as a :class:`~medrefine.data.cohort.Cohort` (layout ``"cine"``), for
    :func:`~medrefine.data.cohort.load_cohort`: one case per subject with ``image``, ``label`` and
    ``transform`` when present; ``require`` names what every subject must have (``"label"``,
    ``"transform"``). The class table is the folder's ``classes.json``, else :data:`CINE_CLASSES`.

    Raises:
        InputError: with ``strict``, the problems (one line for one); else they are in ``problems``.
    """
    from medrefine.data.classes import load_classes
    from medrefine.data.cohort import CLASSES_FILE, Cohort, CohortProblem

    root = Path(path).resolve()
    cases, found = _bids_cases(root, require_label="label" in require, require_transform="transform" in require,
                               use_roi=False)
    if not cases and not found:
        raise InputError(f"{root}: expected sub-*/anat/*short_axis*.nii.gz subjects, found none")
    if strict and found:
        read_bids_cine(root, require_label="label" in require, require_transform="transform" in require)
    classes = load_classes(root / CLASSES_FILE) if (root / CLASSES_FILE).is_file() else dict(CINE_CLASSES)
    problems = tuple(CohortProblem(case, str(file), problem) for case, file, problem in found)
    return Cohort(cases=cases, classes=classes, layout="cine", root=root, source=root, layouts=tuple(layouts),
                  problems=problems)


def cohort_spatial_dims(cohort: Any, *, sample: int = 20) -> int:
    """The dimensionality ``medrefine validate`` checks a cohort's images and labels against: 4 for a
    BIDS-like cine cohort; for another layout, 4 when most of (the first ``sample``) readable image
    headers are 4D with more than one frame (a datalist of 4D pairs), else 3."""
    import nibabel as nib

    if cohort.layout == "cine":
        return 4
    votes = []
    for case in cohort.cases[: int(sample)]:
        image = str(case.get("image", ""))
        if not image.lower().endswith(_NIFTI):
            continue
        try:
            shape = nib.load(image).header.get_data_shape()
        except Exception:  # an unreadable file is the checks' business
            continue
        votes.append(len(shape) == 4 and shape[3] > 1)
    return 4 if votes and sum(votes) * 2 > len(votes) else 3


def load_cine_cases(source: str | Path, *, key: str | None = "training", require_label: bool = True,
                    require_transform: bool = False, use_roi: bool = False) -> list[dict[str, Any]]:
    """The cases of a cine dataset: the BIDS-like layout, or anything :func:`load_cohort` reads.

    A datalist entry may name its ``transform`` (a ``.tfm`` file) beside ``image`` and ``label``.

    Raises:
        InputError: as :func:`read_bids_cine` / :func:`~medrefine.data.cohort.load_cohort`.
    """
    if is_bids_cine(source):
        return read_bids_cine(source, require_label=require_label, require_transform=require_transform,
                              use_roi=use_roi)
    from medrefine.data.cohort import load_cohort

    cohort = load_cohort(source, key=key, require=("image", "label") if require_label else ("image",))
    if require_transform:
        for case in cohort.cases:
            if "transform" not in case:
                raise InputError(f"{cohort.source}: expected a 'transform' (.tfm) for case {case['case']!r}, found none")
    return [dict(c) for c in cohort.cases]


def read_transform(path: str | Path) -> np.ndarray:
    """Read an ITK transform file (local cardiac axes -> physical LPS) as a ``(4, 4)`` local -> world RAS matrix.

    Raises:
        InputError: the file is missing, unreadable or not an affine (linear) 3D transform.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: expected a transform file (.tfm), found no file")
    try:
        transform = sitk.ReadTransform(str(path))
        if transform.GetName() == "CompositeTransform":
            transform = sitk.CompositeTransform(transform).GetNthTransform(0)
        transform = transform.Downcast()
        if transform.GetDimension() != 3 or not hasattr(transform, "GetMatrix"):
            raise ValueError(f"a {transform.GetDimension()}D {transform.GetName()}")
        matrix = np.asarray(transform.GetMatrix(), dtype=np.float64).reshape(3, 3)
        translation = np.asarray(transform.GetTranslation(), dtype=np.float64)
        center = np.asarray(transform.GetCenter(), dtype=np.float64)
    except (RuntimeError, ValueError, AttributeError) as err:
        lines = [line for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        reason = lines[-1].split("): ", 1)[-1].strip()  # ITK: "ITK ERROR: TxtTransformIOTemplate(0x..): <reason>"
        raise InputError(f"{path}: expected a 3D affine ITK transform, found an unreadable one ({reason})") from None
    out = np.eye(4)
    out[:3, :3] = _LPS @ matrix
    out[:3, 3] = _LPS @ (translation + center - matrix @ center)
    if abs(np.linalg.det(out[:3, :3])) < 1e-9:
        raise InputError(f"{path}: expected an invertible transform, found a singular matrix")
    return out


@dataclass
class CineSubject:
    """One opened subject.

    Attributes:
        case: subject id.
        image: ``(X, Y, Z, T)`` float32 cine.
        label: ``(X, Y, Z, T)`` uint8 labels or None.
        affine: ``(4, 4)`` RAS voxel -> world matrix of every frame.
        local_to_world: ``(4, 4)`` local cardiac axes -> world RAS (the transform file, or a
            translation to the grid centre when there is none).
        frame_duration: seconds per frame when the file records it, else None.
        path: the image file.
    """

    case: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    local_to_world: np.ndarray
    frame_duration: float | None
    path: Path

    @property
    def frames(self) -> int:
        return int(self.image.shape[3])

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


def grid_centre_frame(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Local axes = world axes, origin at the centre of the grid (the fallback without a transform)."""
    centre = (np.asarray(shape[:3], dtype=np.float64) - 1.0) / 2.0
    out = np.eye(4)
    out[:3, 3] = affine[:3, :3] @ centre + affine[:3, 3]
    return out


def load_cine_subject(case: Mapping[str, Any], *, num_classes: int | None = None, require_label: bool = True,
                      require_transform: bool = False, nan_policy: str = "refuse") -> CineSubject:
    """Open a case of :func:`load_cine_cases` and check it.

    ``nan_policy="zero"`` (a bundle's key) accepts NaN/Inf image voxels and replaces them by 0.

    Raises:
        InputError: ``"<file>: expected a 4D cine (X, Y, Z, T), found shape (..)"``; a label whose
            frame count, shape or affine differs from the image; labels outside ``num_classes``;
            a missing label or transform when required.
    """
    import nibabel as nib

    from medrefine.data.validate import refuses_nonfinite
    from medrefine.io import load_image, load_label
    from medrefine.io.checks import check_same_grid
    from medrefine.io.volume import Volume
    from medrefine.workflows.preflight import zero_nonfinite

    finite = refuses_nonfinite(nan_policy)
    image = load_image(case["image"], dtype=np.float32, finite=finite)
    if not finite:
        image = Volume(zero_nonfinite(image.array), image.affine, image.path)
    if image.array.ndim != 4 or image.array.shape[3] < 2:
        raise InputError(f"{image.path}: expected a 4D cine (X, Y, Z, T) with >= 2 frames, found shape {image.shape}")
    label = None
    if case.get("label"):
        lab = load_label(case["label"], num_classes=num_classes)
        if lab.array.ndim != 4:
            raise InputError(f"{lab.path}: expected a 4D label (X, Y, Z, T) like {image.path.name}, found shape {lab.shape}")
        if lab.array.shape[3] != image.array.shape[3]:
            raise InputError(f"{lab.path}: expected {image.array.shape[3]} frames like {image.path.name}, "
                             f"found {lab.array.shape[3]}")
        check_same_grid(Volume(image.array[..., 0], image.affine, image.path), Volume(lab.array[..., 0], lab.affine, lab.path))
        label = np.ascontiguousarray(lab.array, dtype=np.uint8)
    elif require_label:
        raise InputError(f"{image.path}: expected a label for case {case['case']!r}, found none")
    if case.get("transform"):
        local_to_world = read_transform(case["transform"])
    elif require_transform:
        raise InputError(f"{image.path}: expected a short-axis transform (.tfm) for case {case['case']!r}, found none")
    else:
        local_to_world = grid_centre_frame(image.affine, image.shape)
    duration = None
    if str(image.path).lower().endswith(_NIFTI):
        zooms = nib.load(str(image.path)).header.get_zooms()
        duration = float(zooms[3]) if len(zooms) > 3 and zooms[3] > 0 else None
    return CineSubject(case=str(case["case"]), image=np.ascontiguousarray(image.array, dtype=np.float32), label=label,
                       affine=image.affine, local_to_world=local_to_world, frame_duration=duration, path=Path(image.path))

"""Read images and labels with their geometry from NIfTI, NRRD, MHA/MHD, DICOM series and .npy.

Every reader returns a :class:`~medrefine.io.volume.Volume` in one convention, nibabel's: the
array is indexed ``(i, j, k)`` = ``(x, y, z)`` and the affine maps voxel indices to world
millimetres in RAS+. ITK formats (NRRD, MHA/MHD, DICOM), which store LPS+ geometry and which
SimpleITK hands over as ``(z, y, x)`` arrays, are converted on the way in, so a voxel read from a
NIfTI file and from its NRRD twin land on the same world point.

NIfTI goes through nibabel; the ITK formats go through SimpleITK. MONAI's ``LoadImage`` wraps the
same libraries but returns torch MetaTensors and reports unreadable files with generic errors; here
we want plain numpy, the file named in every error, and the checks below on every load.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medrefine.errors import InputError, did_you_mean
from medrefine.io.checks import (
    as_label_array,
    check_affine,
    check_finite,
    check_not_empty,
    check_same_grid,
)
from medrefine.io.volume import Volume

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

__all__ = ["load_image", "load_label", "load_pair", "SUPPORTED_SUFFIXES", "itk_to_ras_affine"]

logger = logging.getLogger(__name__)

#: file endings the readers understand (a DICOM series is given as its folder)
SUPPORTED_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".npy")

_NIFTI = (".nii", ".nii.gz")
_ITK = (".nrrd", ".nhdr", ".mha", ".mhd")

# LPS+ <-> RAS+: negate the first two world axes
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return "".join(path.suffixes[-2:]).lower() or path.suffix.lower()


def _spacing_affine(spacing: Sequence[float], ndim: int, source: str, origin: Sequence[float] | None = None) -> np.ndarray:
    """An axis-aligned RAS+ affine from voxel sizes (and an optional origin)."""
    try:
        values = [float(s) for s in spacing]
    except (TypeError, ValueError):
        raise InputError(f"{source}: `spacing` must be a sequence of numbers, got {spacing!r}") from None
    n_expected = min(max(ndim, 2), 3)
    if len(values) == 2 and n_expected == 2:
        values = [*values, 1.0]
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"{source}: `spacing` must have {n_expected} positive values (mm), got {tuple(spacing)}")
    affine = np.diag([*values, 1.0])
    if origin is not None:
        try:
            org = [float(o) for o in origin]
        except (TypeError, ValueError):
            raise InputError(f"{source}: `origin` must be a sequence of numbers, got {origin!r}") from None
        if len(org) == 2:
            org = [*org, 0.0]
        if len(org) != 3 or not all(np.isfinite(org)):
            raise InputError(f"{source}: `origin` must have 3 finite values (mm), got {tuple(origin)}")
        affine[:3, 3] = org
    return affine


def itk_to_ras_affine(spacing: Sequence[float], origin: Sequence[float], direction: Sequence[float]) -> np.ndarray:
    """The RAS+ voxel-to-world affine of an ITK image given its LPS+ spacing, origin and direction.

    ITK's geometry maps index ``(i, j, k)`` to LPS point ``origin + direction @ diag(spacing) @ ijk``;
    RAS flips the sign of the first two world coordinates. The index order is kept: pair the
    result with the ``(x, y, z)`` array (SimpleITK's ``(z, y, x)`` array transposed).

    Args:
        spacing: voxel sizes, ``image.GetSpacing()`` (2 or 3 values).
        origin: world position of voxel 0 in LPS, ``image.GetOrigin()``.
        direction: row-major direction cosines, ``image.GetDirection()`` (4 or 9 values).

    Returns:
        ``(4, 4)`` float64 affine.

    Example:
        >>> itk_to_ras_affine((1, 1, 2), (10, 20, 30), (1, 0, 0, 0, 1, 0, 0, 0, 1))[:3, 3]
        array([-10., -20.,  30.])
    """
    dim = len(spacing)
    lps = np.eye(4)
    lps[:dim, :dim] = np.asarray(direction, dtype=np.float64).reshape(dim, dim) @ np.diag(np.asarray(spacing, dtype=np.float64))
    lps[:dim, 3] = np.asarray(origin, dtype=np.float64)
    return _LPS_TO_RAS @ lps


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        # nibabel reads lazily: force the read here so a truncated or corrupt file fails inside the try
        array = np.asanyarray(img.dataobj)
        affine = img.affine
    except MemoryError:
        raise
    except Exception as exc:  # nibabel/gzip/zlib raise many types on broken files
        raise InputError(
            f"{path}: expected a NIfTI image, found content that could not be read as NIfTI; the file is "
            f"truncated, corrupt or not a NIfTI file ({type(exc).__name__}: {' '.join(str(exc).split())})"
        ) from exc
    return np.asarray(array), np.asarray(affine)


def _sitk_to_array(image, path: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(image)
    dim = image.GetDimension()
    if dim not in (2, 3):
        raise InputError(f"{path}: expected a 2D or 3D image, found a {dim}D image of size {image.GetSize()}")
    # SimpleITK: (z, y, x[, components]) -> ours: (x, y, z[, components])
    axes = tuple(range(dim))[::-1] + tuple(range(dim, array.ndim))
    array = np.ascontiguousarray(np.transpose(array, axes))
    affine = itk_to_ras_affine(image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    return array, affine


def _itk_message(exc: BaseException) -> str:
    """The useful part of a SimpleITK exception (drops source locations, object addresses, stale errno)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception thrown in"):
        lines = lines[1:]
    lines = [re.sub(r"^(ITK ERROR|sitk::ERROR):\s*(\w+\(0x[0-9a-fA-F]+\):\s*)?", "", line) for line in lines]
    lines = [line for line in lines if not line.startswith("Reason:")]
    return "; ".join(lines) or type(exc).__name__


def _read_itk(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(
            f"{path}: could not read with SimpleITK; the file is truncated, corrupt, or its data file is missing "
            f"({_itk_message(exc)})"
        ) from exc
    return _sitk_to_array(image, path)


def _read_dicom_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise InputError(f"{folder}: expected a DICOM series folder (or an image file), found an empty folder")
    reader = sitk.ImageSeriesReader()
    # GDCM prints "No Series were found" to stderr; we raise a clearer error ourselves
    show_warnings = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        series_ids = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as exc:
        raise InputError(f"{folder}: could not scan the folder for DICOM files ({_itk_message(exc)})") from exc
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(show_warnings)
    if not series_ids:
        shown = ", ".join(sorted(p.name for p in entries)[:5]) + (", ..." if len(entries) > 5 else "")
        raise InputError(
            f"{folder}: expected a folder holding one DICOM series, found no DICOM files among "
            f"its {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} ({shown})"
        )
    files_per_series = {sid: reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids}
    series_id = max(series_ids, key=lambda sid: len(files_per_series[sid]))
    if len(series_ids) > 1:
        logger.warning(
            "%s holds %d DICOM series; reading the largest, %r (%d files)",
            folder, len(series_ids), series_id, len(files_per_series[series_id]),
        )
    reader.SetFileNames(files_per_series[series_id])
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(
            f"{folder}: could not read the DICOM series {series_id!r} ({len(files_per_series[series_id])} files); "
            f"a slice is truncated or corrupt ({_itk_message(exc)})"
        ) from exc
    return _sitk_to_array(image, folder)


def _npy_sidecar(path: Path) -> Path:
    return path.with_name(path.name[: -len(".npy")] + ".json")


def _read_npy(path: Path, spacing: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    try:
        array = np.load(str(path), allow_pickle=False)
    except Exception as exc:
        raise InputError(
            f"{path}: could not read as a .npy array; the file is truncated, corrupt or holds Python objects "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(array, np.ndarray):  # pragma: no cover - np.load of .npy always gives an array
        raise InputError(f"{path}: expected one array in the .npy file, found {type(array).__name__}")
    if spacing is not None:
        return array, _spacing_affine(spacing, array.ndim, str(path))
    sidecar = _npy_sidecar(path)
    if not sidecar.is_file():
        raise InputError(
            f"{path}: a .npy array carries no geometry; expected `spacing=` or a sidecar {sidecar.name} "
            f'holding {{"spacing": [sx, sy, sz]}} or {{"affine": [[...], ...]}}, found neither'
        )
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{sidecar}: could not read the sidecar of {path.name} as JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise InputError(f"{sidecar}: expected a JSON object with 'spacing' or 'affine', found {type(meta).__name__}")
    if "affine" in meta:
        try:
            affine = np.asarray(meta["affine"], dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{sidecar}: 'affine' must be a 4x4 list of numbers, got {meta['affine']!r}") from None
        return array, check_affine(affine, sidecar)
    if "spacing" in meta:
        return array, _spacing_affine(meta["spacing"], array.ndim, str(sidecar), origin=meta.get("origin"))
    raise InputError(
        f"{sidecar}: expected the key 'spacing' or 'affine', found keys {sorted(meta)}"
        + did_you_mean(next(iter(meta), ""), ["spacing", "affine"])
    )


def _read_any(
    path: str | PathLike, spacing: Sequence[float] | None, finite: bool = True
) -> tuple[Path, np.ndarray, np.ndarray]:
    path = Path(path).expanduser()
    if not path.exists():
        hint = ""
        if path.parent.is_dir():
            hint = did_you_mean(path.name, [p.name for p in path.parent.iterdir()])
        raise InputError(f"{path}: file or folder not found.{hint}".rstrip())
    if path.is_dir():
        array, affine = _read_dicom_series(path)
    else:
        suffix = _suffix(path)
        if suffix not in SUPPORTED_SUFFIXES:
            raise InputError(
                f"{path}: unsupported file type {suffix or '(no suffix)'!r}; expected one of "
                f"{', '.join(SUPPORTED_SUFFIXES)} or a DICOM series folder.{did_you_mean(suffix, SUPPORTED_SUFFIXES)}"
            )
        try:
            if path.stat().st_size == 0:
                raise InputError(f"{path}: expected an image file, found an empty file (0 bytes)")
        except OSError as exc:
            raise InputError(f"{path}: could not access the file ({exc})") from exc
        if suffix in _NIFTI:
            array, affine = _read_nifti(path)
        elif suffix in _ITK:
            array, affine = _read_itk(path)
        else:
            array, affine = _read_npy(path, spacing)
            spacing = None
    if spacing is not None:
        logger.debug("%s: `spacing` ignored, the file carries its own geometry", path)
    # a NIfTI of shape (X, Y, Z, 1) is a 3D volume
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    check_not_empty(array, path)
    if finite:
        check_finite(array, path)
    affine = check_affine(affine, path)
    return path, array, affine


def load_image(
    path: str | PathLike, *, spacing: Sequence[float] | None = None, dtype: DTypeLike | None = None,
    finite: bool = True,
) -> Volume:
    """Load an image with its geometry from NIfTI, NRRD, MHA/MHD, a DICOM series folder or .npy.

    Args:
        path: a ``.nii``/``.nii.gz``, ``.nrrd``/``.nhdr``, ``.mha``/``.mhd`` or ``.npy`` file, or a
            folder holding one DICOM series (the largest series is read if there are several).
        spacing: voxel sizes in mm for a ``.npy`` array, which carries no geometry; without it the
            sidecar ``<stem>.json`` (``{"spacing": [..], "origin": [..]}`` or ``{"affine": [[..]]}``)
            is read. Ignored for formats that store their own geometry. Default ``None``.
        dtype: cast the array to this dtype; default keeps the file's type (NIfTI scaling applied).
        finite: refuse NaN/Inf voxels (default). False lets them through, for a caller that
            replaces them itself (the bundles' ``nan_policy: "zero"``).

    Returns:
        A :class:`Volume` with the array in ``(x, y, z)`` order, the RAS+ affine and ``path`` set.

    Raises:
        InputError: naming the file when it is missing, of an unsupported type, unreadable or
            truncated, holds NaN/Inf or zero voxels, has a singular affine, or when a ``.npy`` array
            has neither ``spacing`` nor a sidecar.

    Example:
        >>> vol = load_image("ct.nii.gz")
        >>> vol.shape, vol.spacing, vol.orientation
        ((122, 101, 30), (3.0, 3.0, 3.0), 'RAS')
    """
    path, array, affine = _read_any(path, spacing, finite)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return Volume(array=array, affine=affine, path=path)


def load_label(
    path: str | PathLike, *, num_classes: int | None = None, spacing: Sequence[float] | None = None
) -> Volume:
    """Load a label map: like :func:`load_image`, then check the values are class indices.

    Float files whose values are all integral are accepted and cast.

    Args:
        path: see :func:`load_image`.
        num_classes: when given, every value must be in ``0..num_classes-1``. Default ``None``.
        spacing: voxel sizes for a ``.npy`` array, see :func:`load_image`.

    Returns:
        A :class:`Volume` whose array is ``uint8`` when the largest label fits, else ``int16`` or ``int32``.

    Raises:
        InputError: as :func:`load_image`, and when values are non-integer, negative or
            ``>= num_classes``.

    Example:
        >>> lab = load_label("ct_seg.nii.gz", num_classes=118)
        >>> lab.array.dtype
        dtype('uint8')
    """
    path, array, affine = _read_any(path, spacing)
    array = as_label_array(array, path, num_classes=num_classes)
    return Volume(array=array, affine=affine, path=path)


def load_pair(
    image_path: str | PathLike,
    label_path: str | PathLike,
    *,
    num_classes: int | None = None,
    atol: float = 1e-3,
) -> tuple[Volume, Volume]:
    """Load an image and its label map and check that they share one voxel grid.

    Args:
        image_path: the image, any format of :func:`load_image`.
        label_path: the label map, any format of :func:`load_label`.
        num_classes: passed to :func:`load_label`. Default ``None``.
        atol: affine tolerance (mm) of :func:`~medrefine.io.checks.check_same_grid`. Default ``1e-3``.

    Returns:
        ``(image, label)``.

    Raises:
        InputError: if either file is bad (see :func:`load_image`, :func:`load_label`).
        GeometryError: naming both files when shapes or affines differ.

    Example:
        >>> image, label = load_pair("ct.nii.gz", "ct_seg.nii.gz")
    """
    image = load_image(image_path)
    label = load_label(label_path, num_classes=num_classes)
    check_same_grid(image, label, atol=atol, names=(str(image.path), str(label.path)))
    return image, label

"""Write files atomically, and NIfTI volumes with their geometry, never over an input.

A crash or Ctrl-C in the middle of a write leaves either the old file or the new one, never half a
file: :func:`atomic_write` hands out a temporary path next to the target and renames it onto the
target only when the body finished without an exception (``os.replace`` is atomic on one file
system, and the temporary file lives in the target's folder so it is on the same one).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medrefine.errors import InputError
from medrefine.io.checks import check_affine
from medrefine.io.volume import Volume

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

__all__ = ["atomic_write", "save_nifti"]

logger = logging.getLogger(__name__)

_NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _temporary_sibling(path: Path) -> Path:
    """``dir/.name.tmp-<token>.<suffixes>``: hidden, unique, same folder and same suffix as ``path``."""
    suffixes = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffixes)] if suffixes else path.name
    return path.with_name(f".{stem}.tmp-{secrets.token_hex(4)}{suffixes}")


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. a folder on some platforms
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems without fsync
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success, delete it on error.

    The temporary file has the same suffix as ``path`` (``.nii.gz`` stays ``.nii.gz``), so writers
    that pick the format from the name behave the same. Parent folders are created.

    Args:
        path: the final file.

    Yields:
        The temporary path to write to.

    Raises:
        FileNotFoundError: if the body finished without creating the temporary file.

    Example:
        >>> with atomic_write("out/table.csv") as tmp:
        ...     df.to_csv(tmp)
    """
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(target)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic_write({str(target)!r}): the body did not write the temporary file {tmp}")
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:  # pragma: no cover
        pass
    return a.resolve() == b.resolve()


def _nifti_dtype(array: np.ndarray) -> np.ndarray:
    """Cast types NIfTI cannot hold (or that viewers choke on) to the nearest safe one."""
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype in (np.int64, np.uint64) and array.size:
        lo, hi = int(array.min()), int(array.max())
        for candidate in (np.uint8, np.int16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return array.astype(candidate)
    return array


def save_nifti(
    data: Volume | np.ndarray,
    path: str | PathLike,
    *,
    affine: np.ndarray | None = None,
    dtype: DTypeLike | None = None,
    protect: Iterable[str | PathLike] = (),
) -> Path:
    """Save a volume (or array) as NIfTI with its geometry, atomically and never over an input.

    Args:
        data: a :class:`Volume` (its affine is used) or an array ``(X, Y, Z[, C])``.
        path: the output, ending in ``.nii.gz`` or ``.nii``. Parent folders are created.
        affine: ``(4, 4)`` RAS+ voxel-to-world matrix; overrides the volume's. Default: the
            volume's affine, or the identity for a bare array.
        dtype: on-disk dtype; default the array's (bool -> uint8, float16 -> float32, int64 ->
            the smallest integer type that holds the values).
        protect: paths that must not be overwritten (the inputs). The ``.path`` of ``data`` is
            always protected.

    Returns:
        The written path.

    Raises:
        InputError: if ``path`` is an input (in ``protect`` or ``data.path``), does not end in
            ``.nii``/``.nii.gz``, or the array/affine is unusable.

    Example:
        >>> vol = load_image("ct.nii.gz")
        >>> save_nifti(vol.with_array(vol.array > 0), "out/body.nii.gz", protect=[vol.path])
        PosixPath('out/body.nii.gz')
    """
    import nibabel as nib

    out = Path(path).expanduser()
    if not out.name.lower().endswith(_NIFTI_SUFFIXES):
        raise InputError(f"{out}: expected an output path ending in .nii.gz or .nii, got {out.name!r}")
    protected = [Path(p).expanduser() for p in protect]
    if isinstance(data, Volume):
        if data.path is not None:
            protected.append(Path(data.path))
        array = np.asarray(data.array)
        geometry = data.affine if affine is None else affine
    elif isinstance(data, np.ndarray):
        array = data
        geometry = np.eye(4) if affine is None else affine
        if affine is None:
            logger.debug("%s: no affine given, writing with the identity (1 mm voxels at the origin)", out)
    else:
        raise InputError(f"`data` must be a Volume or a numpy array, got {type(data).__name__}")
    for src in protected:
        if _same_file(out, src):
            raise InputError(
                f"{out}: refusing to overwrite an input file ({src}); expected a new output path"
            )
    if array.size == 0 or array.ndim < 2:
        raise InputError(f"{out}: expected a 2D or 3D array to save, got shape {tuple(array.shape)}")
    geometry = check_affine(geometry, f"`affine` for {out}")
    array = array.astype(dtype) if dtype is not None else _nifti_dtype(array)
    image = nib.Nifti1Image(array, geometry)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(geometry, code=1)
    image.set_sform(geometry, code=1)
    with atomic_write(out) as tmp:
        nib.save(image, str(tmp))
    logger.debug("wrote %s shape %s dtype %s", out, array.shape, array.dtype)
    return out

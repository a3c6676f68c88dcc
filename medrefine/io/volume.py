"""The in-memory image: a voxel array with the geometry that places it in the world."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Volume"]


@dataclass
class Volume:
    """A 3D (or 2D) image or label with its geometry.

    Conventions (nibabel's): ``array`` is indexed ``(i, j, k)`` in voxel order and ``affine``
    maps voxel indices to world coordinates in millimetres in RAS+ (+x towards the patient's
    Right, +y Anterior, +z Superior). Readers of ITK formats (NRRD, MHA, DICOM), which use LPS+,
    convert to this convention so every volume in medrefine speaks the same language.

    Args:
        array: voxel values, shape ``(X, Y, Z)`` (or ``(X, Y)``).
        affine: ``(4, 4)`` voxel-to-world matrix (RAS+, mm).
        path: the file it was read from, if any; used in error messages.
    """

    array: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    path: Path | None = None

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"`affine` must be a 4x4 matrix, got shape {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        """Voxel grid shape."""
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis (norms of the affine's columns)."""
        ndim = min(self.array.ndim, 3)
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :ndim], axis=0))

    @property
    def origin(self) -> tuple[float, float, float]:
        """World position (RAS+, mm) of voxel ``(0, 0, 0)``."""
        return tuple(float(v) for v in self.affine[:3, 3])  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Axis codes, e.g. ``"RAS"`` or ``"LPS"``: where each array axis points."""
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))

    def with_array(self, array: np.ndarray) -> Volume:
        """A new volume on the same grid holding ``array``."""
        if tuple(array.shape[:3]) != self.shape[:3]:
            raise ValueError(f"`array` must have the grid shape {self.shape[:3]}, got {array.shape}")
        return Volume(array=array, affine=self.affine.copy(), path=None)

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.3g}" for s in self.spacing)
        src = f", path={str(self.path)!r}" if self.path else ""
        return f"Volume(shape={self.shape}, dtype={self.array.dtype}, spacing=({sp}), orientation={self.orientation}{src})"

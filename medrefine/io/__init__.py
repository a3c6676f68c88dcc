"""Load and save images and labels with their geometry; atomic writes; checks with clear errors.

Every volume in medrefine is a :class:`Volume`: a numpy array indexed ``(x, y, z)`` plus a
voxel-to-world affine in RAS+ millimetres (nibabel's convention). The readers accept NIfTI, NRRD,
MHA/MHD, DICOM series folders and ``.npy`` (with a spacing), convert ITK's LPS geometry to RAS,
and check every file on the way in; every error names the file, the expectation and the finding.

Importing this package only imports numpy: nibabel, SimpleITK and scipy load on first use.

Example:
    >>> from medrefine.io import load_pair, resample_to, save_nifti
    >>> image, label = load_pair("ct.nii.gz", "ct_seg.nii.gz", num_classes=118)
    >>> save_nifti(label.with_array(label.array == 5), "out/liver.nii.gz", protect=[label.path])
"""

from __future__ import annotations

from medrefine.io.checks import check_same_grid
from medrefine.io.jsonfile import read_json
from medrefine.io.readers import SUPPORTED_SUFFIXES, load_image, load_label, load_pair
from medrefine.io.resample import resample_to
from medrefine.io.volume import Volume
from medrefine.io.writers import atomic_write, save_nifti

__all__ = [
    "read_json",
    "Volume",
    "load_image",
    "load_label",
    "load_pair",
    "save_nifti",
    "atomic_write",
    "check_same_grid",
    "resample_to",
    "SUPPORTED_SUFFIXES",
]

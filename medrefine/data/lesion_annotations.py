"""The seed's lesion folders: ``annotations.json`` read safely, and the small parsers it needs.

Split from :mod:`medrefine.data.lesions` (which combines these records with lesion tables into a
cohort): the folder layout and its string-encoded fields are described there. Lists are read with
:func:`ast.literal_eval` and JSON, never ``eval``; every malformed value is one
:class:`~medrefine.errors.InputError` line naming the file, the key and what was found.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medrefine.errors import InputError

__all__ = ["ANNOTATIONS_FILE", "parse_distance", "parse_literal", "read_lesion_folders"]

ANNOTATIONS_FILE = "annotations.json"
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
_DISTANCE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(mm)?\s*$")
_TARGET_KEY = re.compile(r"^label\d*$")
_PATIENT = re.compile(r"^(.+?)_lesion\d+")
_ROW = re.compile(r"^(.*) \(row (\d+)\)$")


def _as_problem(message: str, case: str = "") -> Any:
    """``"<file>: expected ..."`` (or ``"<table> (row 3): ..."``) as a :class:`~medrefine.data.cohort.CohortProblem`."""
    from medrefine.data.cohort import CohortProblem

    file, _, text = message.partition(": ")
    row = _ROW.match(file)
    if row:
        file, text = row.group(1), f"row {row.group(2)}: {text}"
    elif not case and (Path(file).parent / ANNOTATIONS_FILE).is_file():
        case = Path(file).parent.name  # a file of a lesion folder: its lesion
    return CohortProblem(case, file, text)


def _refuse(problems: list | None, message: str, case: str = "") -> None:
    """Raise ``message``; with a ``problems`` list, record it there instead."""
    if problems is None:
        raise InputError(message)
    problems.append(_as_problem(message, case))


def _collect(problems: list | None, call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``; with a ``problems`` list, its InputError is recorded there (None returned)."""
    try:
        return call(*args, **kwargs)
    except InputError as err:
        if problems is None:
            raise
        problems.append(_as_problem(str(err)))
        return None


# ------------------------------------------------------------------------------- parsing


def parse_literal(value: Any, *, where: str, key: str) -> Any:
    """A list/number stored as a string (``"[1, 2]"``) or as JSON, read with ``ast.literal_eval``.

    Raises:
        InputError: ``"<where>: expected a literal list in 'key', found '...'"``.
    """
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise InputError(f"{where}: expected a literal list or number in {key!r}, found {value[:60]!r}") from None


def parse_distance(value: Any, *, where: str, key: str = "distance") -> float:
    """A lesion diameter: a positive number or a string like ``"16.7 mm"``.

    Raises:
        InputError: ``"<where>: expected a diameter like '16.7 mm' in 'distance', found 'abc'"``.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        found = _DISTANCE.match(str(value)) if isinstance(value, str) else None
        if found is None:
            raise InputError(f"{where}: expected a diameter like '16.7 mm' in {key!r}, found {value!r}")
        number = float(found.group(1))
    if not np.isfinite(number) or number <= 0:
        raise InputError(f"{where}: expected a positive diameter in {key!r}, found {value!r}")
    return number


def _modality_name(file_name: str) -> str:
    for suffix in _IMAGE_SUFFIXES:
        if file_name.endswith(suffix):
            return file_name[: -len(suffix)]
    return Path(file_name).stem


def _points(value: Any, count: int, *, where: str, key: str) -> list[list[float]]:
    points = parse_literal(value, where=where, key=key)
    try:
        array = np.asarray(points, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{where}: expected {count} points of 3 numbers in {key!r}, found {str(value)[:60]!r}") from None
    if array.ndim == 1 and array.shape == (3,) and count == 1:
        array = array[None]
    if array.shape != (count, 3) or not np.all(np.isfinite(array)):
        raise InputError(f"{where}: expected {count} points of 3 numbers in {key!r} (one per file of 'nifti_files'), "
                         f"found shape {array.shape}")
    return array.tolist()


def _target_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return None if text == "" or text.lower() in ("nan", "none", "null") else text


# ------------------------------------------------------------------------------- folders


def _read_annotation(path: Path, *, target_keys: Sequence[str] | None) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: expected an annotations JSON object, found unreadable content ({err})") from None
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected a JSON object of ROIs keyed by id, found {type(data).__name__}")
    folder = path.parent
    records = []
    for roi_key, roi in data.items():
        if not isinstance(roi, dict):
            raise InputError(f"{path}: expected ROI {roi_key!r} to be an object, found {type(roi).__name__}")
        for needed in ("nifti_files", "distance"):
            if needed not in roi:
                raise InputError(f"{path}: expected key {needed!r} in ROI {roi_key!r}, found keys {sorted(roi)}")
        files = parse_literal(roi["nifti_files"], where=str(path), key="nifti_files")
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise InputError(f"{path}: expected a non-empty list of file names in 'nifti_files', found {roi['nifti_files']!r}")
        if "np_loc_zyx" in roi:
            centres = [p[::-1] for p in _points(roi["np_loc_zyx"], len(files), where=str(path), key="np_loc_zyx")]
            space = "voxel"
        elif "phy_loc_xyz" in roi:
            lps = _points(roi["phy_loc_xyz"], len(files), where=str(path), key="phy_loc_xyz")
            centres = [[-p[0], -p[1], p[2]] for p in lps]
            space = "ras"
        else:
            raise InputError(f"{path}: expected 'np_loc_zyx' or 'phy_loc_xyz' in ROI {roi_key!r}, found keys {sorted(roi)}")
        images: dict[str, str | None] = {}
        centre_of: dict[str, list[float]] = {}
        for name, centre in zip(files, centres):
            modality = _modality_name(name)
            file = folder / name
            if not file.is_file():
                raise InputError(f"{file}: expected the {modality!r} image listed in {path.name}, found no file "
                                 "(a missing modality is one left out of 'nifti_files')")
            images[modality] = str(file.resolve())
            centre_of[modality] = [float(v) for v in centre]
        keys = list(target_keys) if target_keys else sorted((k for k in roi if _TARGET_KEY.match(k)), key=_label_order)
        roi_id = str(roi.get("id", roi_key))
        patient = str(roi["patient"]) if "patient" in roi else _patient_of(folder.name)
        case = folder.name if len(data) == 1 else f"{folder.name}#{roi_id}"
        records.append({
            "case": case, "patient": patient, "source": str(path),
            "diameter_mm": parse_distance(roi["distance"], where=str(path)),
            "images": images, "centres": centre_of, "centre_space": space,
            "targets": {k: _target_value(roi.get(k)) for k in keys},
        })
    return records


def _label_order(key: str) -> int:
    digits = key[len("label"):]
    return int(digits) if digits else 1


def _patient_of(folder_name: str) -> str:
    found = _PATIENT.match(folder_name)
    return found.group(1) if found else folder_name


def read_lesion_folders(root: str | Path, *, target_keys: Sequence[str] | None = None,
                        problems: list | None = None) -> list[dict[str, Any]]:
    """Read every ``<lesion folder>/annotations.json`` under ``root`` (see the module docstring).

    Args:
        root: the folder of lesion folders.
        target_keys: annotation keys that are targets; default ``label``, ``label2``, ...
        problems: record a malformed ``annotations.json`` here and skip its lesions (default: raise).

    Returns:
        The lesion records, sorted by folder name.

    Raises:
        InputError: no lesion folder, or a malformed ``annotations.json`` or a listed image file
            that does not exist (names the file).
    """
    root = Path(root)
    files = sorted(root.glob(f"*/{ANNOTATIONS_FILE}"))
    if not files:
        raise InputError(f"{root}: expected lesion folders holding {ANNOTATIONS_FILE}, found none")
    records = []
    for path in files:
        records.extend(_collect(problems, _read_annotation, path, target_keys=target_keys) or [])
    return records


# --------------------------------------------------------------------------------- table

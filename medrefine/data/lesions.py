"""Lesion cohorts for classification: several modalities, several categorical targets per lesion.

Two forms are read into one list of lesion records.

**Folders** (the RRMediCa layout): one folder per lesion holding the modality images and an
``annotations.json``::

    ROOT/P007_lesion1_17.3mm/annotations.json
    ROOT/P007_lesion1_17.3mm/T1.nii.gz
    ROOT/P007_lesion1_17.3mm/T2.nii.gz

    {"0": {"id": "0", "tag": "P007", "label": "1", "label2": "0",
           "nifti_files": "['T1.nii.gz', 'T2.nii.gz']",
           "phy_loc_xyz": "[[99.7, -100.7, 46.7], [99.3, -100.5, 46.6]]",
           "np_loc_zyx": "[[23, 151, 149], [23, 151, 149]]",
           "distance": "16.7 mm"}}

String-encoded lists are read with :func:`ast.literal_eval` (literals only, never ``eval``). The
centre of each modality is ``np_loc_zyx`` (the voxel index in the ``(z, y, x)`` order of a
SimpleITK array) or, without it, ``phy_loc_xyz`` (ITK physical LPS millimetres). Targets are the
keys ``label``, ``label2``, ... (or the names given, or those a ``cohort.json`` beside the lesion
folders declares as ``{"targets": {name: [class values]}}``; its ``"modalities"`` list fixes the
channel order). The patient is the ``patient`` key, else
the folder name before ``_lesion`` (``P007``).

**Table** (CSV, or a JSON file with a list ``"lesions"`` of the same rows): one row per lesion::

    patient,lesion,diameter_mm,image_T1,centre_T1,image_T2,centre_T2,target_grade
    P007,P007_l1,17.3,P007/T1.nii.gz,"[12.0, -40.5, 33.0]",P007/T2.nii.gz,"[12.4, -40.1, 33.0]",2

``image_<modality>`` is a path (relative to the table), ``centre_<modality>`` the lesion centre
in world RAS millimetres (medrefine's convention), ``target_<name>`` a class value; an empty
image cell is a missing modality, an empty target cell an unlabelled target.

A modality is missing from a lesion when it is not listed (``nifti_files``) or its image cell is
empty; a listed file that does not exist is an error, not a missing modality.

Every problem raises :class:`~medrefine.errors.InputError` in one line naming the file, what was
expected and what was found (with a ``problems`` list, :func:`load_lesions` records them there and
reads on, as ``medrefine validate`` wants). :func:`check_lesion_images` opens every image with the
checks every bundle and ``medrefine validate`` share (:func:`medrefine.data.validate.check_cohort`:
readable, 3D, finite values) and refuses a centre outside its image; :meth:`LesionCohort.as_cohort`
is the form those checks read.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrefine.data.lesion_annotations import (  # noqa: F401  (the seed's folders; re-exported)
    ANNOTATIONS_FILE,
    _collect,
    _points,
    _refuse,
    _target_value,
    parse_distance,
    parse_literal,
    read_lesion_folders,
)
from medrefine.errors import InputError, did_you_mean

if TYPE_CHECKING:
    from medrefine.data.cohort import Cohort

__all__ = [
    "ANNOTATIONS_FILE",
    "LesionCohort",
    "centre_problem",
    "check_lesion_images",
    "is_lesion_cohort",
    "load_lesions",
    "parse_distance",
    "parse_literal",
    "read_lesion_folders",
    "read_lesion_table",
    "voxel_centre",
]

COHORT_FILE = "cohort.json"

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class LesionCohort:
    """The lesions of a cohort with their modalities and targets.

    Attributes:
        records: one dict per lesion: ``case`` (unique lesion id), ``patient``, ``source`` (the
            file that describes it), ``diameter_mm``, ``images`` ``{modality: path or None}``,
            ``centres`` ``{modality: [x, y, z]}``, ``centre_space`` (``"voxel"``: array indices,
            or ``"ras"``: world mm), ``targets`` ``{name: class value (str) or None}``.
        modalities: the modality names, in input-channel order.
        targets: ``{name: [class values]}``, in output order.
        source: what was read.
    """

    records: list[dict[str, Any]]
    modalities: tuple[str, ...]
    targets: dict[str, list[str]]
    source: Path

    def __len__(self) -> int:
        return len(self.records)

    @property
    def case_ids(self) -> list[str]:
        return [r["case"] for r in self.records]

    @property
    def num_classes(self) -> list[int]:
        """Classes per target, in target order."""
        return [len(v) for v in self.targets.values()]

    def label_indices(self, record: Mapping[str, Any]) -> list[int]:
        """The class index of each target of ``record`` (-1: not labelled)."""
        out = []
        for name, values in self.targets.items():
            value = record["targets"].get(name)
            out.append(-1 if value is None else values.index(value))
        return out

    def label_matrix(self) -> np.ndarray:
        """``(lesions, targets)`` class indices, -1 where not labelled."""
        return np.array([self.label_indices(r) for r in self.records], dtype=np.int64).reshape(len(self), -1)

    def patients(self) -> list[str]:
        return [r["patient"] for r in self.records]

    def subset(self, cases: Sequence[str]) -> LesionCohort:
        """The lesions named in ``cases`` (same modalities and targets), in cohort order."""
        wanted = set(cases)
        unknown = wanted - set(self.case_ids)
        if unknown:
            first = sorted(unknown)[0]
            raise InputError(f"{self.source}: no lesion {first!r}.{did_you_mean(first, self.case_ids)}")
        return LesionCohort([r for r in self.records if r["case"] in wanted], self.modalities, self.targets, self.source)

    def as_cohort(self, problems: Sequence[Any] = ()) -> Cohort:
        """The lesions as a :class:`~medrefine.data.cohort.Cohort` of layout ``"lesions"``: one case per
        lesion with ``image_<modality>`` (the present modalities' files), ``source`` (its
        ``annotations.json`` or table) and ``record``; what :func:`medrefine.data.validate.check_cohort`
        and :func:`medrefine.workflows.preflight.preflight` read."""
        from medrefine.data.cohort import Cohort

        cases = [{"case": r["case"], **{f"image_{m}": p for m, p in r["images"].items() if p}, "source": r["source"],
                  "record": r} for r in self.records]
        root = (self.source if self.source.is_dir() else self.source.parent).resolve()
        return Cohort(cases=cases, classes=None, layout="lesions", root=root, source=self.source, layouts=("lesions",),
                      problems=tuple(problems))


# ------------------------------------------------------------------------------- problems


def _table_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".json":
        from medrefine.io import read_json

        data = read_json(path, what="lesion table")
        rows = data.get("lesions") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InputError(f"{path}: expected a JSON object with a list 'lesions' of rows, found "
                             f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
        return rows
    try:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: expected a CSV lesion table, found unreadable content ({err})") from None


def read_lesion_table(path: str | Path, *, allow_missing: bool = True, problems: list | None = None) -> list[dict[str, Any]]:
    """Read a lesion table (CSV or JSON ``{"lesions": [...]}``; columns in the module docstring).

    Args:
        path: the table.
        allow_missing: an empty image cell is a missing modality; with False it is refused.
        problems: record a bad row here and skip it (default: raise).

    Raises:
        InputError: missing columns, an unparseable centre or diameter, an image file that does not
            exist, an empty image cell without ``allow_missing`` (names the table and row).
    """
    path = Path(path)
    rows = _table_rows(path)
    if not rows:
        raise InputError(f"{path}: expected at least one lesion row, found none")
    columns = list(rows[0])
    modalities = [c[len("image_"):] for c in columns if c.startswith("image_")]
    targets = [c[len("target_"):] for c in columns if c.startswith("target_")]
    missing = [c for c in ("patient", "lesion") if c not in columns] + [f"centre_{m}" for m in modalities if f"centre_{m}" not in columns]
    size_key = "diameter_mm" if "diameter_mm" in columns else "size_mm"
    if size_key not in columns:
        missing.append("diameter_mm")
    if missing or not modalities:
        raise InputError(f"{path}: expected columns patient, lesion, diameter_mm, image_<modality>, centre_<modality>, "
                         f"target_<name>; missing {missing or ['image_<modality>']}")
    root = path.resolve().parent
    records = [_collect(problems, _table_row, row, f"{path} (row {index + 1})", str(path), root, modalities, targets,
                        size_key, allow_missing) for index, row in enumerate(rows)]
    return [r for r in records if r is not None]


def _table_row(row: Mapping[str, Any], where: str, source: str, root: Path, modalities: Sequence[str],
               targets: Sequence[str], size_key: str, allow_missing: bool) -> dict[str, Any]:
    images: dict[str, str | None] = {}
    centres: dict[str, list[float]] = {}
    for m in modalities:
        cell = str(row.get(f"image_{m}") or "").strip()
        if not cell:
            if not allow_missing:
                raise InputError(f"{where}: expected the {m!r} image, found an empty 'image_{m}' cell "
                                 "(presence flags are off, so every modality must exist)")
            images[m] = None
            continue
        file = Path(cell) if Path(cell).is_absolute() else root / cell
        if not file.is_file():
            raise InputError(f"{file}: expected the {m!r} image named in {where}, found no file "
                             f"(a missing modality is an empty 'image_{m}' cell)")
        images[m] = str(file.resolve())
        centres[m] = _points(row.get(f"centre_{m}"), 1, where=where, key=f"centre_{m}")[0]
    return {
        "case": str(row["lesion"]), "patient": str(row["patient"]), "source": source,
        "diameter_mm": parse_distance(row.get(size_key), where=where, key=size_key),
        "images": images, "centres": centres, "centre_space": "ras",
        "targets": {t: _target_value(row.get(f"target_{t}")) for t in targets},
    }


# ------------------------------------------------------------------------------------ API


def _sort_values(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def is_lesion_cohort(path: str | Path) -> bool:
    """Whether ``path`` is a lesion cohort: a folder of lesion folders (``*/annotations.json``) or
    holding ``lesions.csv``, a CSV table, or a JSON file holding a list ``"lesions"`` (listing only,
    except that a JSON file is read)."""
    path = Path(path)
    if path.is_dir():
        return (path / "lesions.csv").is_file() or any(path.glob(f"*/{ANNOTATIONS_FILE}"))
    if path.suffix.lower() == ".csv":
        return True
    if path.suffix.lower() == ".json" and path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return isinstance(data, dict) and isinstance(data.get("lesions"), list)
    return False


def load_lesions(
    source: str | Path,
    *,
    modalities: Sequence[str] | None = None,
    targets: Sequence[str] | Mapping[str, Sequence[Any]] | None = None,
    allow_missing: bool = True,
    check_images: bool = False,
    unlabelled: bool = False,
    nan_policy: str = "refuse",
    problems: list | None = None,
) -> LesionCohort:
    """Read a lesion cohort: a folder of lesion folders, or a lesion table (CSV / JSON).

    Args:
        source: the folder (RRMediCa layout) or the table file.
        modalities: the modalities to use, in channel order; default every modality found, in
            order of first appearance.
        targets: target names (class values parsed from the data, sorted) or
            ``{name: [declared class values]}`` (a value outside them is refused); default every
            target found.
        allow_missing: a modality left out of a lesion becomes zeros with a presence flag 0; with
            False every lesion must have every modality. (A listed file that does not exist is
            refused either way.)
        check_images: also open every image (:func:`check_lesion_images`: readable, 3D, finite,
            centre inside).
        unlabelled: a declared target (``targets`` as a mapping) may be absent from the data
            (inference on new lesions); its values are then all unlabelled.
        nan_policy: with ``check_images``: ``"refuse"`` NaN/Inf voxels, or ``"zero"`` (accepted;
            the crop sets them to 0).
        problems: record the problems of single lesions (a malformed ``annotations.json``, a bad
            table row, a value outside the declared set, ...) here as
            :class:`~medrefine.data.cohort.CohortProblem` and leave those lesions out, instead of
            raising; problems of the cohort as a whole still raise.

    Returns:
        The :class:`LesionCohort`.

    Raises:
        InputError: one line naming the file: malformed ``annotations.json``, unparseable
            diameter or centre, target value outside the declared set, unknown modality or
            target name, repeated lesion id, a listed image file that does not exist, a missing
            modality without ``allow_missing``; with ``check_images``, what
            :func:`check_lesion_images` refuses.

    Example:
        >>> cohort = load_lesions("lesions", targets=["label", "label2"])  # doctest: +SKIP
        >>> cohort.modalities, cohort.num_classes  # doctest: +SKIP
        (('T1', 'T2', 'ADC'), [2, 3])
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(f"{path}: expected a lesion cohort, found no such file or folder")
    if path.is_dir() and (path / "lesions.csv").is_file():
        path = path / "lesions.csv"
    if path.is_dir():
        if (path / COHORT_FILE).is_file():
            declared_targets, declared_modalities = _declared(path / COHORT_FILE)
            targets = declared_targets if targets is None else targets
            modalities = declared_modalities if modalities is None else modalities
        keys = list(targets) if targets is not None else None
        records = read_lesion_folders(path, target_keys=keys, problems=problems)
    else:
        records = read_lesion_table(path, allow_missing=allow_missing, problems=problems)
    seen: dict[str, str] = {}
    unique = []
    for r in records:
        if r["case"] in seen:
            _refuse(problems, f"{r['source']}: expected unique lesion ids, found {r['case']!r} also in {seen[r['case']]}",
                    r["case"])
            continue
        seen[r["case"]] = r["source"]
        unique.append(r)
    chosen = modalities is not None
    found_modalities = list(dict.fromkeys(m for r in unique for m in r["images"]))
    if modalities is None:
        modalities = found_modalities
    for m in modalities:
        if unique and m not in found_modalities:
            raise InputError(f"{path}: expected modality {m!r} in the cohort, found {found_modalities}.{did_you_mean(m, found_modalities)}")
    records = []
    for r in unique:
        for m in set(r["images"]) - set(modalities):
            r["images"].pop(m)
            r["centres"].pop(m, None)
        for m in modalities:
            r["images"].setdefault(m, None)
        if not allow_missing and any(r["images"][m] is None for m in modalities):
            absent = next(m for m in modalities if r["images"][m] is None)
            _refuse(problems, f"{r['source']}: expected a {absent!r} image (presence flags are off), found none listed",
                    r["case"])
        elif not chosen and not any(r["images"].values()):
            _refuse(problems, f"{r['source']}: expected at least one of the modalities {list(modalities)}, found none",
                    r["case"])
        else:
            records.append(r)
    if not records and problems:  # every lesion has a problem: nothing more to say of the cohort
        return LesionCohort([], tuple(modalities), {}, path)
    table, records = _target_table(records, targets, path, unlabelled=unlabelled, problems=problems)
    cohort = LesionCohort(records, tuple(modalities), table, path)
    return check_lesion_images(cohort, nan_policy=nan_policy) if check_images else cohort


def _target_table(records: list[dict], targets: Any, path: Path, *, unlabelled: bool = False,
                  problems: list | None = None) -> tuple[dict[str, list[str]], list[dict]]:
    """The target table, and the records whose values are in it."""
    found_names = list(dict.fromkeys(t for r in records for t in r["targets"]))
    names = list(targets) if targets is not None else found_names
    if not names:
        raise InputError(f"{path}: expected at least one target (label, label2, ... or target_<name>), found none")
    table: dict[str, list[str]] = {}
    refused: set[str] = set()
    for name in names:
        if unlabelled and isinstance(targets, Mapping) and name not in found_names:
            table[name] = [str(_target_value(v)) for v in targets[name]]
            continue
        if name not in found_names:
            raise InputError(f"{path}: expected target {name!r}, found {found_names}.{did_you_mean(name, found_names)}")
        declared = targets.get(name) if isinstance(targets, Mapping) else None
        values = {r["targets"].get(name) for r in records} - {None}
        if declared is not None:
            allowed = [str(_target_value(v)) for v in declared]
            for r in records:
                value = r["targets"].get(name)
                if value is not None and value not in allowed and r["case"] not in refused:
                    _refuse(problems, f"{r['source']}: expected {name!r} in {allowed}, found {value!r}", r["case"])
                    refused.add(r["case"])
            table[name] = allowed
        else:
            if not values:
                raise InputError(f"{path}: expected some lesion labelled for target {name!r}, found none")
            table[name] = _sort_values(values)
    kept = [r for r in records if r["case"] not in refused]
    for r in kept:
        r["targets"] = {n: r["targets"].get(n) for n in names}
    return table, kept


def _declared(path: Path) -> tuple[dict[str, list[str]] | None, list[str] | None]:
    """The targets and modalities a ``cohort.json`` declares (None where it declares none)."""
    from medrefine.io import read_json

    data = read_json(path, what="cohort description")
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with 'targets' and/or 'modalities', found {type(data).__name__}")
    table, modalities = data.get("targets"), data.get("modalities")
    if table is not None and (not isinstance(table, dict) or not all(isinstance(v, list) for v in table.values())):
        raise InputError(f"{path}: expected 'targets' as {{name: [class values]}}, found {str(table)[:60]!r}")
    if modalities is not None and not (isinstance(modalities, list) and all(isinstance(m, str) for m in modalities)):
        raise InputError(f"{path}: expected 'modalities' as a list of names, found {str(modalities)[:60]!r}")
    targets = None if table is None else {str(k): [str(v) for v in values] for k, values in table.items()}
    return targets, modalities


def voxel_centre(record: Mapping[str, Any], modality: str, affine: np.ndarray) -> np.ndarray:
    """The lesion centre of ``modality`` as continuous voxel indices of its image."""
    centre = np.asarray(record["centres"][modality], dtype=float)
    if record["centre_space"] == "voxel":
        return centre
    return (np.linalg.inv(affine) @ np.append(centre, 1.0))[:3]


def centre_problem(record: Mapping[str, Any], modality: str, shape: Sequence[int], affine: np.ndarray) -> str | None:
    """``"expected the 'T2' centre inside its image of shape (64, 64, 48), found voxel (70.0, 12.0, 3.0)"``,
    or None when the centre of ``modality`` lies inside its image of ``shape`` and ``affine``."""
    shape = tuple(int(s) for s in shape)
    voxel = voxel_centre(record, modality, affine)
    if np.any(voxel < -0.5) or np.any(voxel > np.asarray(shape) - 0.5):
        shown = ", ".join(f"{v:.1f}" for v in voxel)
        return f"expected the {modality!r} centre inside its image of shape {shape}, found voxel ({shown})"
    return None


def check_lesion_images(cohort: LesionCohort, *, nan_policy: str = "refuse") -> LesionCohort:
    """Open every image with the checks of ``medrefine validate`` and every bundle
    (:func:`medrefine.data.validate.require_valid` on :meth:`LesionCohort.as_cohort`: readable, 3D,
    finite unless ``nan_policy="zero"``) and refuse a centre outside its image. Returns ``cohort``.

    Raises:
        InputError: one line, the first problem: ``"<annotations.json>: expected the 'T2' centre
            inside its image of shape (64, 64, 48), found voxel (70.0, 12.0, 3.0) (case ...)"``,
            or the image file and what is wrong with it.
    """
    from medrefine.data.validate import require_valid

    require_valid(cohort.as_cohort(), nan_policy=nan_policy)
    return cohort

"""Check a dataset folder or datalist and list its problems, one row per problem.

The cases checked are the ones :func:`medrefine.data.cohort.load_cohort` reads (any layout it
knows: datalist, ``images/`` + ``labels/``, ``imagesTr/`` + ``labelsTr/``, MultiNeAR,
TotalSegmentator cases, ...); the bundles' case loaders call :func:`require_valid` with the same
checks, so a dataset without error rows is one every bundle accepts. A folder written by
``medrefine prepare --layout multinear`` holds both a datalist and the MultiNeAR arrays: both
are checked.

Checks per case (severity ``error`` unless noted): missing file; unreadable file (truncated,
not an image, NaN/Inf, zero size); image/label grids that differ (shape, spacing, affine);
label values that are not integers, negative, or ``>= num_classes``; a label without any
foreground (``warning``); images without a label and labels without an image; repeated case ids;
TotalSegmentator masks that are not 0/1 or not on the CT's grid. A lesion cohort
(:mod:`medrefine.data.lesions`): every modality image readable, 3D and finite, each on its own
grid, with the lesion's centre inside it; a malformed ``annotations.json`` or table row, an
unparseable diameter or centre, a target value outside the declared set, a listed file that does
not exist. A cine cohort (:mod:`medrefine.data.cine`: the BIDS-like layout, or a datalist of 4D
pairs): images and labels 4D, the label with the image's frame count and grid, transform files
(``.tfm``) readable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrefine.errors import InputError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

    from medrefine.data.cohort import Cohort

__all__ = ["COLUMNS", "NAN_POLICIES", "refuses_nonfinite", "validate_dataset", "check_cohort", "require_valid", "format_problems", "has_errors"]

logger = logging.getLogger(__name__)

#: Columns of the problems table.
COLUMNS = ["case", "file", "severity", "problem"]



class _Problems:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows: list[dict[str, str]] = []

    def add(self, case: Any, file: str | Path | None, problem: str, severity: str = "error") -> None:
        shown = ""
        if file is not None:
            path = Path(file)
            try:
                shown = path.resolve().relative_to(self.root.resolve()).as_posix()
            except ValueError:
                shown = str(path)
            # the io errors start with the path: keep the table narrow
            for prefix in (str(file), str(path.resolve())):
                if problem.startswith(prefix + ": "):
                    problem = problem[len(prefix) + 2 :]
        case = "" if case is None else str(case)
        self.rows.append({"case": case, "file": shown, "severity": severity, "problem": problem})

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        frame = pd.DataFrame(self.rows, columns=COLUMNS)
        return frame.sort_values("case", kind="stable").reset_index(drop=True)


def _label_problems(label: np.ndarray, source: Path | str, num_classes: int | None) -> list[tuple[str, str]]:
    """[(severity, problem)] for the values of one label array (the readers' check, :func:`as_label_array`)."""
    from medrefine.io.checks import as_label_array

    array = np.asarray(label)
    if array.size and not (array != 0).any():
        return [("warning", "label is empty (no voxel > 0)")]
    try:
        as_label_array(array, source, num_classes=num_classes)
    except InputError as err:
        return [("error", str(err))]
    return []


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _grid_problem(err: BaseException, reference_key: str, reference: Path) -> str:
    """``expected the voxel grid of the image (x.nii.gz), found shape ... vs ...`` from a GeometryError."""
    found = _first_line(err).split(" found ", 1)[-1].rstrip(".")
    return f"expected the voxel grid of the {reference_key} ({reference.name}), found {found}"


def _what(key: str) -> str:
    """How a message names the file of ``key``: ``image``, ``label``, ``'T2' image`` (a lesion's ``image_T2``)."""
    return f"{key[len('image_'):]!r} image" if key.startswith("image_") else key


def _check_nifti_case(
    problems: _Problems, entry: Mapping[str, Any], num_classes: int | None, *,
    keys: Sequence[str] | None = None, spatial_dims: int = 3, finite: bool = True, one_grid: bool = True,
) -> dict[str, Any]:
    """One case of files with geometry: readable, ``spatial_dims``-D, finite, labels in range, one grid
    (unless ``one_grid`` is False: a lesion's modalities each have their own), points inside.

    Returns:
        ``{key: Volume}`` of the files that passed.
    """
    from medrefine.data.datalist import NON_PATH_KEYS
    from medrefine.io import check_same_grid, load_image
    from medrefine.io.checks import check_ndim

    case = entry.get("case")
    volumes = {}
    point_files = {}
    for key, value in entry.items():
        if key in NON_PATH_KEYS or not isinstance(value, str) or (keys is not None and key not in keys):
            continue
        path = Path(value)
        if not path.exists():
            continue  # reported by load_cohort
        if value.lower().endswith(".json"):
            point_files[key] = path  # point lists: checked against the image below
            continue
        if value.lower().endswith(".tfm"):  # a cine subject's cardiac axes
            from medrefine.data.cine import read_transform

            try:
                read_transform(path)
            except InputError as err:
                problems.add(case, path, " ".join(str(err).split()))
            continue
        try:
            volume = load_image(path, finite=finite or key.startswith("label"))
        except Exception as err:  # a reader crashing on a broken file is still a problem of the file
            text = str(err) if isinstance(err, InputError) else f"expected a readable {_what(key)}, found {type(err).__name__}: {err}"
            problems.add(case, path, " ".join(text.split()))
            continue
        try:
            check_ndim(volume.array, path, ndim=spatial_dims, what=_what(key))
        except InputError as err:
            problems.add(case, path, str(err))
            continue
        volumes[key] = volume
        if key.startswith("label"):
            for severity, problem in _label_problems(volume.array, path, num_classes):
                problems.add(case, path, problem, severity)
    reference_key = "image" if "image" in volumes else next(iter(volumes), None)
    for key, volume in volumes.items():
        if key == reference_key or not one_grid:
            continue
        reference = volumes[reference_key]
        if volume.shape[3:] != reference.shape[3:]:  # 4D: the frames
            problems.add(case, entry[key], f"expected {reference.shape[3]} frames like the {reference_key} "
                                           f"({Path(entry[reference_key]).name}), found {volume.shape[3]}")
            continue
        try:
            check_same_grid(volumes[reference_key], volume, names=(str(reference_key), str(key)))
        except InputError as err:
            problems.add(case, entry[key], _grid_problem(err, reference_key, Path(entry[reference_key])))
    if point_files and "image" in volumes:
        from medrefine.points.files import load_points

        for key, path in point_files.items():
            try:
                load_points(path, image=volumes["image"])
            except InputError as err:
                problems.add(case, path, _first_line(err))
    return volumes


def _check_lesion_case(problems: _Problems, case: Mapping[str, Any], finite: bool) -> None:
    """A lesion (:meth:`~medrefine.data.lesions.LesionCohort.as_cohort`): every modality image as
    :func:`_check_nifti_case` checks a case's files, each on its own grid, and each modality's
    centre inside its image (a problem of the file that gives the centre: annotations.json or table)."""
    from medrefine.data.lesions import centre_problem

    keys = [k for k in case if k.startswith("image_")]
    volumes = _check_nifti_case(problems, case, None, keys=keys, finite=finite, one_grid=False)
    for key, volume in volumes.items():
        problem = centre_problem(case["record"], key[len("image_"):], volume.shape[:3], volume.affine)
        if problem is not None:
            problems.add(case["case"], case["source"], problem)


def _check_multinear(cohort: Cohort, problems: _Problems, num_classes: int | None) -> None:
    """MultiNeAR cases: arrays (not files with geometry) read with ``np.load``; unlisted arrays."""
    ids = set()
    for case in cohort.cases:
        cid = str(case["case"])
        ids.add(cid)
        arrays = {}
        for key in ("image", "label"):
            path = Path(case[key])
            if not path.is_file():
                continue  # reported by load_cohort
            try:
                arrays[key] = np.load(path, mmap_mode="r", allow_pickle=False)
            except Exception as err:
                problems.add(cid, path, f"expected a .npy array, found unreadable content ({_first_line(err)})")
                continue
            if arrays[key].ndim != 3:
                problems.add(cid, path, f"expected a 3D array, found shape {arrays[key].shape}")
        if "image" in arrays and not np.all(np.isfinite(arrays["image"])):
            problems.add(cid, case["image"], "expected finite voxel values, found NaN or Inf values")
        if "label" in arrays:
            for severity, problem in _label_problems(np.asarray(arrays["label"]), case["label"], num_classes):
                problems.add(cid, case["label"], problem, severity)
        if len(arrays) == 2 and arrays["image"].shape != arrays["label"].shape:
            problem = f"shape {arrays['label'].shape} differs from appearance {arrays['image'].shape}"
            problems.add(cid, case["label"], problem)
    _check_unlisted_arrays(cohort.root, ids, problems)


def _check_unlisted_arrays(root: Path, ids: set[str], problems: _Problems) -> None:
    for folder in ("appearance", "shape"):
        if (root / folder).is_dir():
            for path in sorted((root / folder).glob("*.npy")):
                if path.stem not in ids:
                    problems.add(path.stem, path, "not listed in info.csv", "warning")


def _check_totalseg_case(problems: _Problems, case: Mapping[str, Any], classes: Mapping[int, str] | None) -> None:
    """A TotalSegmentator case: the CT and every chosen mask (0/1 values, the CT's grid)."""
    from medrefine.data.layouts import totalseg_structures
    from medrefine.io import check_same_grid, load_image

    cid = case["case"]
    ct = None
    if Path(case["image"]).is_file():
        try:
            ct = load_image(case["image"])
        except Exception as err:
            problems.add(cid, case["image"], " ".join(str(err).split()))
    try:
        masks = totalseg_structures(Path(case["segmentations"]).parent)
    except InputError as err:
        problems.add(cid, case["segmentations"], str(err))
        return
    wanted = [name for value, name in (classes or {}).items() if value] or sorted(masks)
    for name in wanted:
        if name not in masks:
            problems.add(cid, case["segmentations"], f"no mask for structure {name!r}.{did_you_mean(name, masks)}")
            continue
        try:
            mask = load_image(masks[name])
        except Exception as err:
            problems.add(cid, masks[name], " ".join(str(err).split()))
            continue
        values = np.unique(np.asarray(mask.array))
        if not set(values.tolist()) <= {0, 1}:
            problems.add(cid, masks[name], f"expected mask values 0/1, found {values[:5].tolist()}")
        if ct is not None:
            try:
                check_same_grid(ct, mask, names=("ct.nii.gz", masks[name].name))
            except InputError as err:
                problems.add(cid, masks[name], _grid_problem(err, "image", Path(case["image"])))


def _add_cohort_problems(problems: _Problems, cohort: Cohort, keys: Sequence[str] | None = None) -> None:
    for item in cohort.problems:
        if keys is not None and item.key and item.key not in keys:
            continue
        if item.problem == "file not found":
            text = f"expected the {item.key or 'case'} file, found no file at this path"
        else:
            text = f"{item.problem} ({item.key!r})" if item.key else item.problem
        problems.add(item.case or None, item.file or None, text)


def validate_dataset(path: str | Path, *, num_classes: int | None = None, key: str | None = None) -> pd.DataFrame:
    """Check a dataset and return its problems, one row per problem.

    The cases are the ones :func:`medrefine.data.cohort.load_cohort` reads (so a dataset without
    error rows is one every bundle accepts); then every file is opened and checked, plus the
    layout's own extras (MultiNeAR arrays not listed in ``info.csv``, TotalSegmentator masks).

    Args:
        path: a datalist JSON, or a folder in any layout :func:`~medrefine.data.cohort.load_cohort`
            reads (``datalist.json``, ``images/`` + ``labels/``, ``imagesTr/`` + ``labelsTr/``,
            MultiNeAR, TotalSegmentator cases, ...), or a lesion cohort (folders or table).
        num_classes: number of classes including background; label values must be below it.
            Default: from the cohort's class table (datalist ``labels`` or ``classes.json``), else
            not checked.
        key: check only this list of a datalist (default every one of training, validation, test).

    Returns:
        DataFrame with columns ``case``, ``file`` (relative to the dataset folder when inside it),
        ``severity`` (``"error"`` or ``"warning"``) and ``problem``; empty when all is well.

    Raises:
        InputError: ``path`` is missing, an empty folder, not a recognised dataset, or an
            unreadable datalist (these stop the check as a whole).

    Example:
        >>> problems = validate_dataset("cohort")  # doctest: +SKIP
        >>> print(format_problems(problems))  # doctest: +SKIP
        no problems found
    """
    from medrefine.data.cohort import load_cohort

    if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 1):
        raise InputError(f"`num_classes` must be >= 1 (background included), got {num_classes!r}")
    from medrefine.data.cine import cohort_spatial_dims

    cohort = load_cohort(path, key=key, strict=False, lesions=True)
    return check_cohort(cohort, num_classes=num_classes, spatial_dims=cohort_spatial_dims(cohort))


def check_cohort(
    cohort: Cohort, *, num_classes: int | None = None, keys: Sequence[str] | None = None,
    spatial_dims: int | None = None, nan_policy: str = "refuse",
) -> pd.DataFrame:
    """Open and check every file of a cohort (the checks of :func:`validate_dataset`).

    Args:
        cohort: from :func:`medrefine.data.cohort.load_cohort`; its ``problems`` become rows.
        num_classes: classes including background; default the cohort's class table.
        keys: check only these entry keys (what a mode reads: inference reads ``("image",)``);
            default every file of each case.
        spatial_dims: the dimensionality every image and label must have (4: a cine cohort, whose
            labels must also have the image's frame count). Default 4 for the ``cine`` layout, else 3.
        nan_policy: ``"refuse"`` (default) flags NaN/Inf image voxels; ``"zero"`` accepts them (the
            bundle replaces them by 0 when loading).

    Returns:
        The problems table (columns :data:`COLUMNS`).
    """
    from medrefine.data.cohort import load_cohort

    finite = refuses_nonfinite(nan_policy)
    if spatial_dims is None:
        spatial_dims = 4 if cohort.layout == "cine" else 3
    problems = _Problems(cohort.root)
    _add_cohort_problems(problems, cohort, keys)
    if num_classes is None:
        num_classes = cohort.num_classes
    if cohort.layout == "multinear":
        _check_multinear(cohort, problems, num_classes)
        return problems.frame()
    if cohort.layout == "lesions":
        for case in cohort.cases:
            _check_lesion_case(problems, case, finite)
        return problems.frame()
    if "multinear" in cohort.layouts and keys is None:  # e.g. `medrefine prepare --layout multinear`: both are checked
        arrays = load_cohort(cohort.root, layout="multinear", strict=False)
        _add_cohort_problems(problems, arrays)
        _check_multinear(arrays, problems, num_classes)
    for case in cohort.cases:
        if cohort.layout == "totalsegmentator":
            _check_totalseg_case(problems, case, cohort.classes)
        else:
            _check_nifti_case(problems, case, num_classes, keys=keys, spatial_dims=spatial_dims, finite=finite)
    return problems.frame()


#: Values of a bundle's ``nan_policy`` key.
NAN_POLICIES = ("refuse", "zero")


def refuses_nonfinite(nan_policy: str) -> bool:
    """Whether ``nan_policy`` (one of :data:`NAN_POLICIES`) refuses NaN/Inf image voxels."""
    if nan_policy not in NAN_POLICIES:
        raise InputError(f"`nan_policy` must be one of {list(NAN_POLICIES)}, got {nan_policy!r}.{did_you_mean(nan_policy, NAN_POLICIES)}")
    return nan_policy == "refuse"


def require_valid(
    cohort: Cohort, *, num_classes: int | None = None, keys: Sequence[str] | None = None,
    spatial_dims: int | None = None, nan_policy: str = "refuse",
) -> Cohort:
    """Return ``cohort`` when :func:`check_cohort` finds no error; raise otherwise.

    The bundles' case loaders call this before their first output, so they accept exactly the
    datasets ``medrefine validate`` passes (warnings, such as an empty label, do not refuse).
    Arguments as :func:`check_cohort`.

    Raises:
        InputError: one line: the first error's file and problem (``<file>: expected ..., found
            ...``), its case, and how many more errors ``medrefine validate`` would list.
    """
    problems = check_cohort(cohort, num_classes=num_classes, keys=keys, spatial_dims=spatial_dims,
                            nan_policy=nan_policy)
    errors = problems[problems["severity"] == "error"] if len(problems) else problems
    if len(errors):
        first = errors.iloc[0]
        where = str(cohort.root / first["file"]) if first["file"] else str(cohort.source)
        more = (f"; {len(errors) - 1} more error(s): `medrefine validate {cohort.source}` lists them all"
                if len(errors) > 1 else "")
        case = f"case {first['case']!r}" if first["case"] else "the dataset"
        raise InputError(f"{where}: {' '.join(first['problem'].split())} ({case}{more})")
    return cohort


def has_errors(problems: pd.DataFrame) -> bool:
    """Whether the problems table holds any ``error`` row."""
    return bool((problems["severity"] == "error").any()) if len(problems) else False


def format_problems(problems: pd.DataFrame, *, max_width: int | None = None) -> str:
    """Render the problems table as left-aligned text with a summary line.

    Args:
        problems: the table from :func:`validate_dataset`.
        max_width: cut problem texts longer than this (default: keep them whole).

    Returns:
        The table, or ``"no problems found"`` when it is empty.
    """
    if problems.empty:
        return "no problems found"
    rows = []
    for record in problems[COLUMNS].astype(str).to_dict(orient="records"):
        text = " ".join(record["problem"].split())
        if max_width is not None and len(text) > max_width:
            text = text[: max_width - 3] + "..."
        rows.append([record["case"], record["file"], record["severity"], text])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(COLUMNS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    n_err = int((problems["severity"] == "error").sum())
    n_warn = int((problems["severity"] == "warning").sum())
    cases = problems["case"][problems["case"] != ""].nunique()
    lines.append(f"{n_err} error(s), {n_warn} warning(s) in {cases} case(s)")
    return "\n".join(lines)

"""Check a dataset folder or datalist and list its problems, one row per problem.

Recognised inputs: a datalist JSON; a folder holding ``datalist.json``; a folder with
``images/`` + ``labels/`` (or nnU-Net's ``imagesTr/`` + ``labelsTr/``) paired by case id; a
MultiNeAR folder (``appearance/``, ``shape/``, ``info.csv``). A folder written by
``medrefine prepare --layout multinear`` holds both a datalist and the MultiNeAR arrays: both
are checked.

Checks per case (severity ``error`` unless noted): missing file; unreadable file (truncated,
not an image, NaN/Inf, zero size); image/label grids that differ (shape, spacing, affine);
label values that are not integers, negative, or ``>= num_classes``; a label without any
foreground (``warning``); images without a label and labels without an image; repeated case ids.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrefine.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "validate_dataset", "format_problems", "has_errors"]

logger = logging.getLogger(__name__)

#: Columns of the problems table.
COLUMNS = ["case", "file", "severity", "problem"]

_PAIR_FOLDERS = (("images", "labels"), ("imagesTr", "labelsTr"))
_DATALIST_KEYS = ("training", "validation", "test")


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


def _num_classes_from(labels: Any) -> int | None:
    if not isinstance(labels, Mapping) or not labels:
        return None
    from medrefine.data.classes import parse_classes

    try:
        return max(parse_classes(labels, source="datalist labels")) + 1
    except InputError:
        return None


def _check_label_values(label: np.ndarray, num_classes: int | None) -> list[tuple[str, str]]:
    """[(severity, problem)] for the values of one label array."""
    out = []
    array = np.asarray(label)
    if not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.bool_):
            array = array.astype(np.uint8)
        else:
            frac = array != np.round(array)
            if frac.any():
                sample = np.unique(array[frac])[:3]
                problem = f"label values must be integers, found {int(frac.sum())} voxel(s) like {sample.tolist()}"
                out.append(("error", problem))
                return out
    if array.size and array.min() < 0:
        out.append(("error", f"label values must be >= 0, found {array.min()}"))
    if num_classes is not None and array.size and array.max() >= num_classes:
        bad = sorted(int(v) for v in np.unique(array[array >= num_classes]))[:10]
        out.append(("error", f"label values {bad} >= num_classes={num_classes} (valid: 0..{num_classes - 1})"))
    if array.size and not (array > 0).any():
        out.append(("warning", "label is empty (no voxel > 0)"))
    return out


def _check_nifti_case(problems: _Problems, entry: Mapping[str, Any], num_classes: int | None) -> None:
    from medrefine.data.datalist import NON_PATH_KEYS
    from medrefine.io import check_same_grid, load_image

    case = entry.get("case")
    volumes = {}
    for key, value in entry.items():
        if key in NON_PATH_KEYS or not isinstance(value, str):
            continue
        path = Path(value)
        if not path.exists():
            problems.add(case, path, f"file not found ({key!r})")
            continue
        try:
            volume = load_image(path)
        except InputError as err:
            problems.add(case, path, f"unreadable {key}: {err}")
            continue
        except Exception as err:  # a reader crashing on a broken file is still a problem of the file
            problems.add(case, path, f"unreadable {key}: {type(err).__name__}: {err}")
            continue
        volumes[key] = volume
        if key.startswith("label"):
            for severity, problem in _check_label_values(volume.array, num_classes):
                problems.add(case, path, problem, severity)
    reference_key = "image" if "image" in volumes else next(iter(volumes), None)
    for key, volume in volumes.items():
        if key == reference_key:
            continue
        try:
            check_same_grid(volumes[reference_key], volume, names=(str(reference_key), str(key)))
        except InputError as err:
            problems.add(case, entry[key], f"grid differs from {reference_key}: {err}")


def _entries_from_datalist(path: Path, key: str | None, problems: _Problems) -> tuple[list[dict], int | None]:
    from collections import Counter

    from medrefine.data.datalist import NON_PATH_KEYS, case_id, read_datalist
    from medrefine.errors import did_you_mean

    data = read_datalist(path)
    if key is not None and key not in data:
        raise InputError(f"{path}: datalist has no list {key!r}; it has {sorted(data)}.{did_you_mean(key, data)}")
    keys = [key] if key is not None else [k for k in _DATALIST_KEYS if isinstance(data.get(k), list)]
    if not keys:
        raise InputError(f"{path}: datalist has no list 'training', 'validation' or 'test'; it has {sorted(data)}")
    root = path.resolve().parent
    entries: list[dict] = []
    for k in keys:
        items = data[k]
        if not isinstance(items, list):
            raise InputError(f"{path}: {k!r} must be a list of entries, got {type(items).__name__}")
        for index, item in enumerate(items):
            if isinstance(item, str):
                item = {"image": item}
            if not isinstance(item, Mapping):
                problems.add(None, path, f"entry {index} of {k!r} must be an object or a path, got {item!r}")
                continue
            entry = {
                name: str(root / value) if name not in NON_PATH_KEYS and isinstance(value, str) else value
                for name, value in item.items()
            }
            entry.setdefault("case", case_id(entry.get("image", f"{k}_{index}")))
            entries.append(entry)
    if not entries:
        raise InputError(f"{path}: datalist lists no cases")
    for cid, count in Counter(str(e["case"]) for e in entries).items():
        if count > 1:
            problems.add(cid, path, f"case id listed {count} times in the datalist")
    return entries, _num_classes_from(data.get("labels"))


def _entries_from_pair_folders(image_dir: Path, label_dir: Path, problems: _Problems) -> list[dict]:
    from medrefine.data.datalist import list_cases

    def listed(folder: Path, what: str) -> dict[str, Path]:
        try:
            return list_cases(folder, what=what)
        except InputError as err:
            if "is empty" in str(err):
                return {}
            raise

    images, labels = listed(image_dir, "image"), listed(label_dir, "label")
    if not images and not labels:
        raise InputError(f"{image_dir} and {label_dir} are empty: no cases to check")
    for cid in sorted(set(images) - set(labels)):
        problems.add(cid, images[cid], f"image has no label in {label_dir.name}/ (files are paired by name)")
    for cid in sorted(set(labels) - set(images)):
        problems.add(cid, labels[cid], f"label has no image in {image_dir.name}/ (files are paired by name)")
    entries = []
    for cid in sorted(set(images) | set(labels)):
        entry: dict[str, Any] = {"case": cid}
        if cid in images:
            entry["image"] = str(images[cid])
        if cid in labels:
            entry["label"] = str(labels[cid])
        entries.append(entry)
    return entries


def _check_multinear(root: Path, problems: _Problems, num_classes: int | None) -> None:
    from medrefine.data.layouts import _read_info_csv

    table = _read_info_csv(root)
    ids = table["id"].astype(str).tolist()
    if not ids:
        raise InputError(f"{root / 'info.csv'}: lists no cases")
    for cid in ids:
        arrays = {}
        for folder in ("appearance", "shape"):
            path = root / folder / f"{cid}.npy"
            if not path.is_file():
                problems.add(cid, path, "file not found")
                continue
            try:
                arrays[folder] = np.load(path, mmap_mode="r", allow_pickle=False)
            except Exception as err:
                problems.add(cid, path, f"unreadable .npy file ({err})")
                continue
            if arrays[folder].ndim != 3:
                problems.add(cid, path, f"expected a 3D array, got shape {arrays[folder].shape}")
        if "appearance" in arrays and not np.all(np.isfinite(arrays["appearance"])):
            problems.add(cid, root / "appearance" / f"{cid}.npy", "image holds NaN or Inf values")
        if "shape" in arrays:
            for severity, problem in _check_label_values(np.asarray(arrays["shape"]), num_classes):
                problems.add(cid, root / "shape" / f"{cid}.npy", problem, severity)
        if len(arrays) == 2 and arrays["appearance"].shape != arrays["shape"].shape:
            problem = f"shape {arrays['shape'].shape} differs from appearance {arrays['appearance'].shape}"
            problems.add(cid, root / "shape" / f"{cid}.npy", problem)
    for folder in ("appearance", "shape"):
        if (root / folder).is_dir():
            for path in sorted((root / folder).glob("*.npy")):
                if path.stem not in ids:
                    problems.add(path.stem, path, "not listed in info.csv", "warning")


def validate_dataset(path: str | Path, *, num_classes: int | None = None, key: str | None = None) -> pd.DataFrame:
    """Check a dataset and return its problems, one row per problem.

    Args:
        path: a datalist JSON, or a folder (with ``datalist.json``, ``images/`` + ``labels/``,
            ``imagesTr/`` + ``labelsTr/``, or the MultiNeAR layout).
        num_classes: number of classes including background; label values must be below it.
            Default: from the datalist's ``labels`` table when present, else not checked.
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
    from medrefine.data.layouts import is_multinear

    if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 1):
        raise InputError(f"`num_classes` must be >= 1 (background included), got {num_classes!r}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"dataset not found: {path}")
    root = path.parent if path.is_file() else path
    problems = _Problems(root)
    if path.is_dir() and not any(path.iterdir()):
        raise InputError(f"{path}: folder is empty, no dataset to check")
    datalist = path if path.is_file() else path / "datalist.json"
    if path.is_dir() and is_multinear(path):
        _check_multinear(path, problems, num_classes)
        if not datalist.is_file():
            return problems.frame()
    if datalist.is_file():
        entries, from_labels = _entries_from_datalist(datalist, key, problems)
        num_classes = num_classes if num_classes is not None else from_labels
    else:
        pairs = [(path / i, path / lab) for i, lab in _PAIR_FOLDERS if (path / i).is_dir() and (path / lab).is_dir()]
        pair = pairs[0] if pairs else None
        if pair is None:
            raise InputError(
                f"{path}: not a dataset: expected datalist.json, images/ + labels/, imagesTr/ + labelsTr/, or the "
                "MultiNeAR layout (appearance/, shape/, info.csv)"
            )
        entries = _entries_from_pair_folders(*pair, problems)
        if num_classes is None and (path / "classes.json").is_file():
            from medrefine.data.classes import load_classes

            num_classes = max(load_classes(path / "classes.json")) + 1
    for entry in entries:
        _check_nifti_case(problems, entry, num_classes)
    return problems.frame()


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

"""Datalists: MONAI decathlon-style JSON files that list the cases of a dataset.

A datalist names every file of every case, with paths relative to the JSON file so the dataset
folder can be moved as a whole::

    {"name": "cohort", "description": "", "labels": {"0": "background", "1": "liver"},
     "numTraining": 2,
     "training": [{"case": "case_000", "image": "images/case_000.nii.gz",
                   "label": "labels/case_000.nii.gz"}, ...],
     "test": []}

MONAI's :func:`monai.data.load_decathlon_datalist` reads the same files; :func:`load_datalist`
adds what it lacks: every file is checked to exist and a missing one is reported with the
datalist, the entry and the key that name it, and every entry carries its ``case`` id.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from medrefine.errors import InputError, did_you_mean

__all__ = [
    "IMAGE_SUFFIXES",
    "NON_PATH_KEYS",
    "case_id",
    "is_dicom_series",
    "list_cases",
    "resolve_entry",
    "match_cases",
    "drop_channel_suffix",
    "datalist_from_folders",
    "datalist_from_dataset",
    "write_datalist",
    "read_datalist",
    "load_datalist",
]

logger = logging.getLogger(__name__)

#: File name endings recognised as images or labels (longest first so ``.nii.gz`` wins over ``.gz``).
IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd", ".npy")

#: Keys of a datalist entry that hold values, not file paths.
NON_PATH_KEYS: frozenset[str] = frozenset({"case", "id", "fold", "split", "subject"})

_LIST_KEYS = ("training", "validation", "test")


def case_id(path: str | Path) -> str:
    """The case id of a file: its name without the image suffix.

    Args:
        path: a file name or path such as ``"images/case_000.nii.gz"``.

    Returns:
        ``"case_000"``; for unknown endings the name without its last suffix.

    Example:
        >>> case_id("labels/s0001.nii.gz")
        's0001'
    """
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


#: Case-id endings of the files the bundles write (``<case>_seg.nii.gz``); image folder scans skip them.
OUTPUT_POSTFIXES = ("_seg",)


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and not name.startswith(".") and any(name.endswith(s) for s in IMAGE_SUFFIXES)


def is_dicom_series(folder: str | Path) -> bool:
    """Whether ``folder`` holds a DICOM series: files only, the first one a DICOM file.

    Only the first file's 132-byte preamble is read (``.dcm`` ending or the ``DICM`` marker), so
    the test is cheap; :func:`medrefine.io.load_image` reads the series.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return False
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    if not entries or any(p.is_dir() for p in entries):
        return False
    first = entries[0]
    if first.name.lower().endswith(".dcm"):
        return True
    try:
        with open(first, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def list_cases(folder: str | Path, *, what: str = "image", series: bool = False) -> dict[str, Path]:
    """Map case id -> file for the image files directly inside ``folder`` (sorted by case id).

    Sub-folders (unless ``series``), hidden files and files with other endings (``.json``
    sidecars, ``.csv``) are ignored; so are, for ``what="image"``, files whose case id ends with
    one of :data:`OUTPUT_POSTFIXES` (what a bundle wrote there: a second run does not segment
    its own outputs).

    Args:
        folder: the folder to list.
        what: what the folder holds, used in error messages (``"image"``, ``"label"``).
        series: also list sub-folders holding a DICOM series (case id = folder name).

    Returns:
        ``{case_id: absolute Path}``.

    Raises:
        InputError: the folder does not exist, holds no image files, or two files share a case id
            (``a.nii`` and ``a.nii.gz``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{what} folder not found: {folder}")
    cases: dict[str, Path] = {}
    skipped = []
    for path in sorted(folder.iterdir()):
        if not (_is_image_file(path) or (series and not path.name.startswith(".") and is_dicom_series(path))):
            continue
        cid = case_id(path)
        if what == "image" and cid.endswith(OUTPUT_POSTFIXES):
            skipped.append(path.name)  # a segmentation a bundle wrote here, not an image to segment
            continue
        if cid in cases:
            raise InputError(f"{folder}: two {what} files for case {cid!r}: {cases[cid].name} and {path.name}")
        cases[cid] = path.resolve()
    if skipped:
        logger.info("%s: skipped %d file(s) named like medrefine outputs (%s)", folder, len(skipped), ", ".join(skipped[:3]))
    if not cases:
        if series:
            raise InputError(
                f"{what} folder {folder} is empty: no image files (expected names ending in "
                f"{', '.join(IMAGE_SUFFIXES)}) or DICOM series folders"
            )
        raise InputError(
            f"{what} folder {folder} is empty: no image files (expected names ending in {', '.join(IMAGE_SUFFIXES)})"
        )
    return dict(sorted(cases.items()))


def match_cases(folders: Mapping[str, str | Path]) -> list[dict[str, str]]:
    """Pair the files of several folders by case id.

    Images named the nnU-Net way (``<case>_0000.nii.gz``) pair with ``<case>`` in the other
    folders (:func:`drop_channel_suffix`).

    Args:
        folders: key -> folder, e.g. ``{"image": "imagesTr", "label": "labelsTr"}``. Every folder
            must hold the same case ids. The ``image`` folder may hold DICOM series folders
            (case id = the series folder's name).

    Returns:
        One entry per case, ``{"case": id, key: absolute path, ...}``, sorted by case id.

    Raises:
        InputError: a folder is missing or empty, or some cases are not in every folder; the
            message (one line) lists the unmatched files of each folder.
    """
    listed = {key: list_cases(folder, what=key, series=key == "image") for key, folder in folders.items()}
    if "image" in listed:
        others = set().union(*(set(v) for k, v in listed.items() if k != "image"))
        listed["image"] = drop_channel_suffix(listed["image"], others)
    all_ids = set().union(*(set(v) for v in listed.values()))
    problems = []
    for key, cases in listed.items():
        for cid in sorted(all_ids - set(cases)):
            others = [f"{k}={listed[k][cid].name}" for k in listed if cid in listed[k]]
            problems.append(f"case {cid!r} has no {key} in {folders[key]} (found {', '.join(others)})")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise InputError(f"{len(problems)} unmatched file(s), files are paired by case name: " + "; ".join(shown))
    return [{"case": cid, **{key: str(listed[key][cid]) for key in listed}} for cid in sorted(all_ids)]


#: nnU-Net's channel suffix: ``case_0000.nii.gz`` is channel 0 of case ``case``.
_CHANNEL_SUFFIX = re.compile(r"_0000$")


def drop_channel_suffix(images: Mapping[str, Path], case_ids: set[str]) -> dict[str, Path]:
    """Key nnU-Net-named images (``<case>_0000``) by their case, where other folders name the case so.

    Only single-channel names are mapped: ``<case>_0000`` becomes ``<case>`` when ``case_ids``
    holds ``<case>`` and not ``<case>_0000``, and no other image is already called ``<case>``.

    Args:
        images: case id -> file, from :func:`list_cases`.
        case_ids: the case ids of the folders the images are paired with (labels, ...).

    Returns:
        ``{case id: file}`` sorted by case id.

    Example:
        >>> drop_channel_suffix({"la_003_0000": Path("la_003_0000.nii.gz")}, {"la_003"})
        {'la_003': PosixPath('la_003_0000.nii.gz')}
    """
    out: dict[str, Path] = {}
    for cid, path in images.items():
        base = _CHANNEL_SUFFIX.sub("", cid)
        if base != cid and base in case_ids and cid not in case_ids and base not in images:
            cid = base
        out[cid] = path
    return dict(sorted(out.items()))


def datalist_from_folders(
    image_dir: str | Path,
    label_dir: str | Path | None = None,
    *,
    extra: Mapping[str, str | Path] | None = None,
    name: str = "",
    description: str = "",
    labels: Mapping[int, str] | None = None,
) -> dict:
    """Build a datalist from an image folder and (optionally) label folders paired by case id.

    Args:
        image_dir: folder of images (``<case>.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ...).
        label_dir: folder of labels with the same case ids, stored under ``"label"``.
        extra: more folders keyed by datalist key, e.g. ``{"label_clean": "labels_reference"}``.
        name: the datalist's ``name``.
        description: the datalist's ``description``.
        labels: class table ``{value: name}`` stored under ``"labels"`` (decathlon style).

    Returns:
        The datalist dict with absolute paths (:func:`write_datalist` makes them relative).

    Raises:
        InputError: a folder is missing or empty, or files do not pair up (listed in the message).

    Example:
        >>> dl = datalist_from_folders("cohort/images", "cohort/labels")  # doctest: +SKIP
        >>> write_datalist(dl, "cohort/datalist.json")  # doctest: +SKIP
    """
    folders: dict[str, str | Path] = {"image": image_dir}
    if label_dir is not None:
        folders["label"] = label_dir
    for key, folder in (extra or {}).items():
        if key in folders or key in NON_PATH_KEYS:
            raise InputError(f"`extra` key {key!r} is reserved; use another name (e.g. 'label_clean')")
        folders[key] = folder
    entries = match_cases(folders)
    dl: dict = {"name": name, "description": description}
    if labels is not None:
        dl["labels"] = {str(k): str(v) for k, v in sorted(labels.items())}
    dl.update({"numTraining": len(entries), "training": entries, "test": []})
    return dl


def datalist_from_dataset(
    source: str | Path,
    *,
    labels_dir: str | Path | None = None,
    structures: list[str] | None = None,
    task: str | None = None,
    name: str = "",
) -> dict:
    """Build a datalist from a dataset folder given without a label folder.

    - TotalSegmentator cases (``<case>/ct.nii.gz`` + ``<case>/segmentations/<structure>.nii.gz``):
      the masks are merged into one multi-label map per case under ``labels_dir/labels/``
      (:meth:`medrefine.data.cohort.Cohort.materialize_labels`, with ``labels_dir/classes.json``),
      the entries pair ``ct.nii.gz`` with it and the class table goes under ``"labels"``;
    - a folder of images and/or DICOM series folders, or one DICOM series folder: entries with
      ``image`` only (for inference).

    Args:
        source: the dataset folder.
        labels_dir: TotalSegmentator: where the merged maps go (required for that layout; keep it
            outside the case folders: inputs are never written to).
        structures: TotalSegmentator: the structures to keep (default every mask of the first
            case, alphabetically, or the table of a ``classes.json`` in ``source``).
        task: the table inside a ``classes.json`` holding several (TotalSegmentator's ``"total"``).
        name: the datalist's ``name``.

    Returns:
        The datalist dict with absolute paths (:func:`write_datalist` makes them relative).

    Raises:
        InputError: ``source`` is no such dataset, a mask is unreadable or on another grid, or a
            structure is unknown (one line naming the file).
    """
    from medrefine.data.cohort import load_cohort

    source = Path(source)
    cohort = load_cohort(source, key=None, require=("image",), structures=structures, task=task,
                         cache_dir=labels_dir, strict=True)
    if cohort.layout == "totalsegmentator":
        if labels_dir is None:
            raise InputError(f"{source}: TotalSegmentator cases need a folder for the merged label maps (`labels_dir`)")
        cohort.materialize_labels()
        keys: tuple[str, ...] = ("case", "image", "label")
    elif cohort.layout in ("image_folder", "dicom_series"):
        keys = ("case", "image")
    else:
        raise InputError(f"{source}: expected TotalSegmentator cases, image files or DICOM series folders when no "
                         f"label folder is given, found the {cohort.layout!r} layout; pass the label folder too")
    entries = [{k: str(c[k]) for k in keys} for c in cohort.cases]
    dl: dict = {"name": name or source.resolve().name, "description": ""}
    if cohort.classes is not None and cohort.layout == "totalsegmentator":
        dl["labels"] = {str(k): str(v) for k, v in sorted(cohort.classes.items())}
    dl.update({"numTraining": len(entries), "training": entries, "test": []})
    return dl


def _relative(value: str, root: Path) -> str:
    path = Path(value)
    if not path.is_absolute():
        return path.as_posix()
    return Path(os.path.relpath(path, root)).as_posix()


def write_datalist(datalist: Mapping, path: str | Path) -> Path:
    """Write a datalist JSON with file paths relative to the JSON's folder (atomically).

    Absolute paths in the ``training``/``validation``/``test`` lists are made relative to
    ``path``'s folder; relative paths are kept as given (taken to be relative to it already).
    ``numTraining`` is updated.

    Args:
        datalist: the datalist dict (e.g. from :func:`datalist_from_folders`).
        path: where to write, e.g. ``DIR/datalist.json``.

    Returns:
        ``path``.

    Raises:
        InputError: ``datalist`` has no list of entries under any of ``training``, ``validation``,
            ``test``.
    """
    from medrefine.io import atomic_write

    path = Path(path)
    root = path.resolve().parent
    out = dict(datalist)
    if not any(isinstance(out.get(k), list) for k in _LIST_KEYS):
        raise InputError(f"datalist for {path} has no list under {'/'.join(_LIST_KEYS)}; got keys {sorted(out)}")
    for key in _LIST_KEYS:
        if key not in out:
            continue
        converted = []
        for entry in out[key]:
            if isinstance(entry, str):
                converted.append(_relative(entry, root))
            elif isinstance(entry, Mapping):
                converted.append(
                    {
                        k: _relative(v, root) if isinstance(v, (str, Path)) and k not in NON_PATH_KEYS else v
                        for k, v in entry.items()
                    }
                )
            else:
                raise InputError(f"datalist for {path}: entries of {key!r} must be objects or paths, got {entry!r}")
        out[key] = converted
    if isinstance(out.get("training"), list):
        out["numTraining"] = len(out["training"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        Path(tmp).write_text(json.dumps(out, indent=1) + "\n")
    return path


def read_datalist(path: str | Path) -> dict:
    """Read a datalist JSON as it is stored (relative paths untouched).

    Raises:
        InputError: the file is missing, is not valid JSON, or is not a JSON object.
    """
    from medrefine.io import read_json

    path = Path(path)
    data = read_json(path, what="datalist")
    if not isinstance(data, dict):
        raise InputError(f"{path}: a datalist must be a JSON object, got {type(data).__name__}")
    return data


def resolve_entry(item: str | Mapping, root: str | Path, *, index: int = 0) -> dict:
    """One datalist entry with absolute paths and a ``case`` id.

    Args:
        item: the entry as stored: an object, or a bare path (decathlon ``test`` lists), which
            becomes ``{"image": path}``.
        root: the folder relative paths start from (the datalist's folder).
        index: the entry's position, naming it when it has neither ``case`` nor a path.

    Returns:
        The entry with every path-valued key (all but ``case``, ``id``, ``fold``, ...) absolute;
        ``case`` is filled from the image name when absent.

    Raises:
        InputError: the entry is neither an object nor a path.
    """
    if isinstance(item, str):
        item = {"image": item}
    if not isinstance(item, Mapping):
        raise InputError(f"entry {index} must be an object or a path, got {item!r}")
    root = Path(root)
    entry: dict = {}
    for k, v in item.items():
        if k in NON_PATH_KEYS or not isinstance(v, str):
            entry[k] = v
        else:
            entry[k] = str((root / v).resolve()) if not Path(v).is_absolute() else v
    if "case" not in entry:
        first = entry.get("image") or next((v for k, v in entry.items() if isinstance(v, str)), f"entry_{index}")
        entry["case"] = case_id(first)
    return entry


def load_datalist(
    path: str | Path,
    key: str = "training",
    *,
    check_files: bool = True,
    base_dir: str | Path | None = None,
) -> list[dict]:
    """Read the entries of one list of a datalist with absolute paths.

    Args:
        path: the datalist JSON.
        key: which list, ``"training"`` (default), ``"validation"`` or ``"test"``.
        check_files: check that every file exists (default ``True``).
        base_dir: folder relative paths start from; default the JSON's folder.

    Returns:
        One dict per entry. Path-valued keys (everything but ``case``, ``id``, ``fold``, ...) hold
        absolute path strings; ``case`` is filled from the image name when absent. Bare-string
        entries (decathlon ``test`` lists) become ``{"case": ..., "image": path}``.

    Raises:
        InputError: the datalist is unreadable, has no list ``key`` (with a did-you-mean), an entry
            is not an object, or (``check_files``) a file is missing: the message names the
            datalist, the entry and its key, and the missing file.

    Example:
        >>> entries = load_datalist("cohort/datalist.json")  # doctest: +SKIP
        >>> entries[0]["image"]  # doctest: +SKIP
        '/abs/cohort/images/case_000.nii.gz'
    """
    path = Path(path)
    data = read_datalist(path)
    if key not in data:
        raise InputError(f"{path}: datalist has no list {key!r}; it has {sorted(data)}.{did_you_mean(key, data)}")
    items = data[key]
    if not isinstance(items, list):
        raise InputError(f"{path}: {key!r} must be a list of entries, got {type(items).__name__}")
    root = Path(base_dir) if base_dir is not None else path.resolve().parent
    entries: list[dict] = []
    for index, item in enumerate(items):
        try:
            entry = resolve_entry(item, root, index=index)
        except InputError as err:
            raise InputError(f"{path}: {err} (list {key!r})") from None
        if check_files:
            for k, v in entry.items():
                if k in NON_PATH_KEYS or not isinstance(v, str):
                    continue
                if not Path(v).exists():
                    raise InputError(
                        f"{path}: file not found: {v} (entry {index} of {key!r}, case {entry['case']!r}, key {k!r})"
                    )
        entries.append(entry)
    counts = Counter(str(e["case"]) for e in entries)
    duplicates = sorted(c for c, n in counts.items() if n > 1)
    if duplicates:
        raise InputError(f"{path}: case ids must be unique in {key!r}, repeated: {duplicates}")
    return entries

"""One cohort loader: the only code that turns "a dataset" into cases and a class table.

Every workflow, ``medrefine validate``, ``medrefine prepare`` and ``medrefine evaluate`` call
:func:`load_cohort`, so ``medrefine validate X`` passes exactly when the bundles accept ``X``.
Layouts recognised (in this order, the first that fits is read):

=====================  ===================================================================
``datalist``           a datalist JSON file, or a folder holding ``datalist.json``
``multinear``          ``appearance/<id>.npy`` + ``shape/<id>.npy`` + ``info.csv``
``image_label_folders`` ``images/`` + ``labels/`` (or nnU-Net's ``imagesTr/`` + ``labelsTr/``)
                       paired by case id; images may be DICOM series folders
``totalsegmentator``   ``<case>/ct.nii.gz`` + ``<case>/segmentations/<structure>.nii.gz``
``lesions``            lesion folders (``<lesion>/annotations.json`` + one image per modality)
                       or a lesion table (``lesions.csv``, a CSV or a ``{"lesions": [...]}``
                       JSON file): :func:`medrefine.data.lesions.load_lesions`, one case per
                       lesion with ``image_<modality>`` files
``cine``               BIDS-like short-axis cine (``sub-*/anat/*short_axis*.nii.gz``, labels under
                       ``derivatives/sa_segmentation/``): :func:`medrefine.data.cine.cine_cohort`
``dicom_series``       a folder whose files are one DICOM series (one image, no label)
``image_folder``       a folder of image files and/or DICOM series folders (images only, e.g.
                       for inference)
=====================  ===================================================================

The class table comes from the cohort: a datalist's own ``"labels"``, else a ``classes.json``
beside the datalist / in the folder, else (TotalSegmentator) the structure names numbered
1..N. Reading is fast: files are listed and checked to exist, never opened (checking what they
hold is :func:`medrefine.data.validate.validate_dataset`'s job). TotalSegmentator masks are
merged into multi-label maps by :meth:`Cohort.materialize_labels`, cached beside the data.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrefine.errors import InputError, did_you_mean

__all__ = ["LAYOUTS", "Cohort", "CohortProblem", "load_cohort", "cohort_classes"]

logger = logging.getLogger(__name__)

#: Layout names, in the order they are tried.
LAYOUTS: tuple[str, ...] = (
    "datalist", "multinear", "image_label_folders", "totalsegmentator", "lesions", "cine", "dicom_series", "image_folder",
)

DATALIST_FILE = "datalist.json"
CLASSES_FILE = "classes.json"
_PAIR_FOLDERS = (("images", "labels"), ("imagesTr", "labelsTr"))
_DATALIST_LISTS = ("training", "validation", "test")
_LOOKED_FOR = (
    "datalist.json, images/ + labels/, imagesTr/ + labelsTr/, MultiNeAR (appearance/, shape/, info.csv), "
    "TotalSegmentator cases (<case>/ct.nii.gz + <case>/segmentations/), lesion folders (<lesion>/annotations.json) "
    "or a lesion table (lesions.csv), BIDS-like cine (sub-*/anat/*short_axis*.nii.gz), a DICOM series or image files"
)
_FILL_SUFFIXES = (".json",)


@dataclass(frozen=True)
class CohortProblem:
    """A problem found while reading a cohort: the case, the file and what is wrong."""

    case: str
    file: str
    problem: str
    key: str = ""

    def __str__(self) -> str:
        if not self.file:
            return f"case {self.case!r}: {self.problem}" if self.case else self.problem
        where = ", ".join(p for p in (f"case {self.case!r}" if self.case else "", f"key {self.key!r}" if self.key else "") if p)
        return f"{self.problem}: {self.file}" + (f" ({where})" if where else "")


@dataclass(frozen=True)
class Cohort:
    """The cases and the class table of a dataset, as :func:`load_cohort` read them.

    Attributes:
        cases: one dict per case with ``case`` and absolute paths ``image``, ``label`` (when the
            case has one) and every other key of the entry (``label_clean``, ``points``, ...;
            MultiNeAR: ``info``, the case's other ``info.csv`` columns; TotalSegmentator:
            ``segmentations``, the mask folder).
        classes: ``{value: name}`` with ``0: "background"``, or None when the cohort has none.
        layout: which of :data:`LAYOUTS` was read.
        root: the dataset folder (a datalist's folder).
        source: what was given (the datalist file for a folder holding ``datalist.json``).
        layouts: every layout found at ``root`` (e.g. a prepared folder is a datalist and MultiNeAR).
        name: the datalist's ``name`` ("" for other layouts).
        problems: what :func:`load_cohort` found wrong with ``strict=False`` (empty otherwise).
        cache_dir: where :meth:`materialize_labels` writes merged TotalSegmentator labels.
    """

    cases: list[dict[str, Any]]
    classes: dict[int, str] | None
    layout: str
    root: Path
    source: Path
    layouts: tuple[str, ...] = ()
    name: str = ""
    problems: tuple[CohortProblem, ...] = ()
    cache_dir: Path | None = None

    @property
    def num_classes(self) -> int | None:
        """Classes including background (largest label value + 1), or None without a class table."""
        return max(self.classes) + 1 if self.classes else None

    @property
    def case_ids(self) -> list[str]:
        """The case ids in cohort order."""
        return [str(c["case"]) for c in self.cases]

    def __len__(self) -> int:
        return len(self.cases)

    def materialize_labels(self) -> Cohort:
        """Make sure every case's ``label`` file exists; return the cohort.

        A no-op except for TotalSegmentator cohorts, whose masks are merged once into multi-label
        maps (:func:`~medrefine.data.layouts.totalseg_to_multilabel`, the cohort's class table)
        under ``cache_dir/labels/<case>.nii.gz`` with ``cache_dir/classes.json``. A cached map is
        rebuilt when a mask is newer or the class table changed.

        Raises:
            InputError: a mask is unreadable, on another grid, or a structure is missing.
        """
        if self.layout != "totalsegmentator":
            return self
        from medrefine.data.classes import load_classes, save_classes
        from medrefine.data.layouts import totalseg_to_multilabel
        from medrefine.io import save_nifti

        if self.cache_dir is None or self.classes is None:
            raise InputError(f"{self.source}: a TotalSegmentator cohort needs `cache_dir` and a class table")
        table = {k: v for k, v in self.classes.items() if k}
        table_file = self.cache_dir / CLASSES_FILE
        same_table = table_file.is_file() and load_classes(table_file) == self.classes
        for case in self.cases:
            out = Path(case["label"])
            masks = Path(case["segmentations"])
            newest = max((p.stat().st_mtime for p in masks.iterdir()), default=0.0)
            if same_table and out.is_file() and out.stat().st_mtime >= newest:
                continue
            label, _ = totalseg_to_multilabel(masks.parent, structures=list(table.values()), classes=table)
            out.parent.mkdir(parents=True, exist_ok=True)
            save_nifti(label.array, out, affine=label.affine)
        save_classes(self.classes, table_file)
        return self


class _Problems:
    """Problems of a cohort; raised together at the end in strict mode."""

    def __init__(self) -> None:
        self.items: list[CohortProblem] = []

    def add(self, case: Any, file: Any, problem: str, key: str = "") -> None:
        self.items.append(
            CohortProblem("" if case is None else str(case), "" if file is None else str(file), problem, key)
        )

    def raise_if_any(self, source: Path) -> None:
        if not self.items:
            return
        if len(self.items) == 1:
            raise InputError(f"{source}: {self.items[0]}")
        shown = [str(p) for p in self.items[:20]]
        if len(self.items) > 20:
            shown.append(f"... and {len(self.items) - 20} more")
        raise InputError(f"{source}: {len(self.items)} problems:\n  " + "\n  ".join(shown))


# ------------------------------------------------------------------------------- detection


def _layouts_at(path: Path) -> tuple[str, ...]:
    """Every layout ``path`` fits, in :data:`LAYOUTS` order (listing only, nothing opened)."""
    from medrefine.data.cine import is_bids_cine
    from medrefine.data.datalist import _is_image_file, is_dicom_series
    from medrefine.data.layouts import is_multinear
    from medrefine.data.lesions import is_lesion_cohort

    if path.is_file():
        if is_lesion_cohort(path):
            return ("lesions",)
        return ("datalist",) if path.name.lower().endswith(".json") else ()
    found = []
    if (path / DATALIST_FILE).is_file():
        found.append("datalist")
    if is_multinear(path):
        found.append("multinear")
    if any((path / i).is_dir() and (path / lab).is_dir() for i, lab in _PAIR_FOLDERS):
        found.append("image_label_folders")
    if any(p.is_dir() and (p / "segmentations").is_dir() for p in path.iterdir() if not p.name.startswith(".")):
        found.append("totalsegmentator")
    if is_lesion_cohort(path):
        found.append("lesions")
    if is_bids_cine(path):
        found.append("cine")
    if is_dicom_series(path):
        found.append("dicom_series")
    elif any(_is_image_file(p) or is_dicom_series(p) for p in path.iterdir()):
        found.append("image_folder")  # image files and/or DICOM series folders
    return tuple(found)


# --------------------------------------------------------------------------------- readers


def _read_datalist(path: Path, key: str | None, problems: _Problems) -> tuple[list[dict], dict]:
    from medrefine.data.datalist import read_datalist, resolve_entry

    data = read_datalist(path)
    if key is not None and key not in data:
        raise InputError(f"{path}: datalist has no list {key!r}; it has {sorted(data)}.{did_you_mean(key, data)}")
    keys = [key] if key is not None else [k for k in _DATALIST_LISTS if isinstance(data.get(k), list)]
    if not keys:
        raise InputError(f"{path}: datalist has no list 'training', 'validation' or 'test'; it has {sorted(data)}")
    root = path.resolve().parent
    entries: list[dict] = []
    for k in keys:
        items = data[k]
        if not isinstance(items, list):
            raise InputError(f"{path}: {k!r} must be a list of entries, got {type(items).__name__}")
        for index, item in enumerate(items):
            try:
                entry = resolve_entry(item, root, index=index)
            except InputError as err:
                problems.add(None, path, f"{err} (list {k!r})")
                continue
            entries.append((k, entry))
    if not entries:
        raise InputError(f"{path}: datalist lists no cases under {'/'.join(keys)}")
    for cid, count in Counter(str(e["case"]) for _, e in entries).items():
        if count > 1:
            problems.add(cid, path, f"case id listed {count} times in the datalist (case ids must be unique)")
    return entries, data


def _read_pair_folders(root: Path, problems: _Problems) -> list[dict]:
    from medrefine.data.datalist import drop_channel_suffix, list_cases

    image_dir, label_dir = next((root / i, root / lab) for i, lab in _PAIR_FOLDERS
                                if (root / i).is_dir() and (root / lab).is_dir())

    def listed(folder: Path, what: str, series: bool) -> dict[str, Path]:
        try:
            return list_cases(folder, what=what, series=series)
        except InputError as err:
            if "is empty" in str(err):
                return {}
            raise

    labels = listed(label_dir, "label", False)
    images = drop_channel_suffix(listed(image_dir, "image", True), set(labels))  # nnU-Net's <case>_0000
    if not images and not labels:
        raise InputError(f"{image_dir} and {label_dir} are empty: no cases")
    for cid in sorted(set(images) - set(labels)):
        problems.add(cid, images[cid], f"image has no label in {label_dir.name}/ (files are paired by name)")
    for cid in sorted(set(labels) - set(images)):
        problems.add(cid, labels[cid], f"label has no image in {image_dir.name}/ (files are paired by name)")
    cases = []
    for cid in sorted(set(images) | set(labels)):
        case: dict[str, Any] = {"case": cid}
        if cid in images:
            case["image"] = str(images[cid])
        if cid in labels:
            case["label"] = str(labels[cid])
        cases.append(case)
    return cases


def _read_multinear(root: Path, problems: _Problems) -> list[dict]:
    from medrefine.data.layouts import _read_info_csv

    table = _read_info_csv(root)
    cases = []
    for row in table.to_dict(orient="records"):
        cid = str(row.pop("id"))
        case = {"case": cid, "image": str((root / "appearance" / f"{cid}.npy").resolve()),
                "label": str((root / "shape" / f"{cid}.npy").resolve()), "info": row}
        cases.append(case)
    if not cases:
        raise InputError(f"{root / 'info.csv'}: lists no cases")
    return cases


def _totalseg_classes(root: Path, case_dirs: Sequence[Path], structures: Sequence[str] | None,
                      task: str | None) -> dict[int, str]:
    from medrefine.data.classes import load_classes
    from medrefine.data.layouts import totalseg_structures

    if (root / CLASSES_FILE).is_file():
        table = load_classes(root / CLASSES_FILE, task=task)
        if not structures:
            return table
        by_name = {name: value for value, name in table.items() if value}
        unknown = [s for s in structures if s not in by_name]
        if unknown:
            raise InputError(f"{root / CLASSES_FILE}: no structure {unknown[0]!r}.{did_you_mean(unknown[0], by_name)}")
        return {0: "background", **dict(sorted((by_name[s], s) for s in structures))}
    names = list(structures) if structures else sorted(totalseg_structures(case_dirs[0]))
    return {0: "background", **{i + 1: name for i, name in enumerate(names)}}


def _read_totalseg(root: Path, cache_dir: Path, problems: _Problems) -> list[dict]:
    from medrefine.data.layouts import list_totalseg_cases

    cases = []
    for case_dir in list_totalseg_cases(root):
        ct = case_dir / "ct.nii.gz"
        case = {"case": case_dir.name, "image": str(ct.resolve()),
                "label": str((cache_dir / "labels" / f"{case_dir.name}.nii.gz").resolve()),
                "segmentations": str((case_dir / "segmentations").resolve())}
        if not ct.is_file():
            problems.add(case_dir.name, ct, "file not found (a TotalSegmentator case holds ct.nii.gz)", "image")
        cases.append(case)
    return cases


def _read_image_folder(root: Path) -> list[dict]:
    from medrefine.data.datalist import list_cases

    return [{"case": cid, "image": str(path)} for cid, path in list_cases(root, what="image", series=True).items()]


def _find_case_file(folder: Path, case: str) -> Path | None:
    from medrefine.data.datalist import IMAGE_SUFFIXES

    for suffix in _FILL_SUFFIXES + IMAGE_SUFFIXES:
        candidate = folder / f"{case}{suffix}"
        if candidate.is_file():
            return candidate.resolve()
    return None


def _classes_of(root: Path, datalist: Mapping | None, task: str | None) -> dict[int, str] | None:
    from medrefine.data.classes import load_classes, parse_classes

    labels = (datalist or {}).get("labels")
    if isinstance(labels, Mapping) and labels:
        return parse_classes(labels, source=f"{root / DATALIST_FILE} 'labels'")
    if (root / CLASSES_FILE).is_file():
        return load_classes(root / CLASSES_FILE, task=task)
    return None


# ----------------------------------------------------------------------------------- API


def load_cohort(
    source: str | Path,
    *,
    key: str | None = "training",
    label_key: str = "label",
    require: Sequence[str] = ("image", "label"),
    fill_from: Mapping[str, str | Path | None] | None = None,
    structures: Sequence[str] | None = None,
    task: str | None = None,
    cache_dir: str | Path | None = None,
    layout: str | None = None,
    strict: bool = True,
    lesions: bool = False,
) -> Cohort:
    """Read a dataset of any recognised layout into cases and a class table.

    Args:
        source: a datalist JSON, or a folder in one of the :data:`LAYOUTS` (see the module
            docstring).
        key: the datalist list to read (``"training"``, ``"validation"``, ``"test"``); None reads
            every one. Other layouts have one list of cases and ignore it.
        label_key: the entry key that becomes ``label`` (e.g. ``"label_clean"`` of a phantom
            cohort); the entry's own ``label`` is replaced.
        require: keys every case must have (after ``label_key`` and ``fill_from``); with
            ``key=None`` entries of ``validation``/``test`` lists need only ``image``.
        fill_from: ``{key: folder}``: an entry without ``key`` takes ``folder/<case>.json`` (or an
            image file of that case) when it exists, e.g. ``{"points": "points/"}``.
        structures: TotalSegmentator: the structures to keep (default all, numbered 1..N in this
            order or alphabetically; a ``classes.json`` in the folder fixes the values).
        task: the table inside a ``classes.json`` holding several (TotalSegmentator's ``"total"``).
        cache_dir: TotalSegmentator: where merged labels go (default ``<folder>/.multilabel``).
        layout: read this layout when the folder holds several (a prepared folder is both a
            datalist and MultiNeAR); default the first of :data:`LAYOUTS` found.
        strict: raise one :class:`InputError` listing every problem (missing files, repeated case
            ids, unmatched files, missing required keys); with False they are returned in
            :attr:`Cohort.problems` instead (as ``medrefine validate`` reports them).
        lesions: read a lesion cohort (layout ``"lesions"``: one case per lesion with
            ``image_<modality>`` files, not ``image``/``label``; ``key``, ``label_key``,
            ``require`` and ``fill_from`` do not apply) rather than refuse it, as ``medrefine
            validate`` does; the image/label loaders of the other bundles refuse it.

    Returns:
        The :class:`Cohort`.

    Raises:
        InputError: ``source`` is missing, an empty folder, or not a recognised layout (one line
            naming the path and what was looked for); an unreadable datalist or class table; and
            with ``strict``, any problem of the cases.

    Example:
        >>> cohort = load_cohort("cohort")  # doctest: +SKIP
        >>> cohort.layout, cohort.case_ids[:2], cohort.classes[1]  # doctest: +SKIP
        ('datalist', ['case_000', 'case_001'], 'myocardium')
    """
    from medrefine.data.datalist import NON_PATH_KEYS

    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(f"{path}: expected a dataset, found no such file or folder")
    if path.is_dir() and not any(path.iterdir()):
        raise InputError(f"{path}: expected a dataset, found an empty folder")
    layouts = _layouts_at(path)
    if not layouts:
        raise InputError(f"{path}: not a dataset: looked for {_LOOKED_FOR}")
    if layout is None:
        layout = layouts[0]
    elif layout not in layouts:
        raise InputError(f"{path}: is not in the {layout!r} layout; found {list(layouts)}.{did_you_mean(layout, LAYOUTS)}")
    if layout == "lesions":  # their own reader, which also checks every listed file exists
        from medrefine.data.lesions import load_lesions

        if not lesions:
            raise InputError(f"{path}: expected cases of {'/'.join(require) or 'images'}, found a lesion cohort "
                             "(lesion folders or a lesion table: the lesion_classification bundle reads it)")
        found: list[CohortProblem] | None = None if strict else []
        return load_lesions(path, problems=found).as_cohort(problems=found or ())
    if layout == "cine":  # their own reader (medrefine.data.cine)
        from medrefine.data.cine import cine_cohort

        return cine_cohort(path, require=require, strict=strict, layouts=layouts)
    root = path.resolve().parent if path.is_file() else path.resolve()
    datalist_file = path if path.is_file() else path / DATALIST_FILE
    problems = _Problems()
    header: dict | None = None
    cache = None
    list_of: dict[int, str] = {}
    if layout == "datalist":
        listed, header = _read_datalist(datalist_file, key, problems)
        cases = [entry for _, entry in listed]
        list_of = {i: k for i, (k, _) in enumerate(listed)}
        classes = _classes_of(root, header, task)
        shown_source = datalist_file
    else:
        shown_source = path
        if layout == "multinear":
            cases = _read_multinear(root, problems)
        elif layout == "image_label_folders":
            cases = _read_pair_folders(root, problems)
        elif layout == "totalsegmentator":
            from medrefine.data.layouts import list_totalseg_cases

            cache = Path(cache_dir).resolve() if cache_dir else root / ".multilabel"
            cases = _read_totalseg(root, cache, problems)
        elif layout == "dicom_series":
            cases = [{"case": root.name, "image": str(root)}]
        else:
            cases = _read_image_folder(root)
        if layout == "totalsegmentator":
            classes = _totalseg_classes(root, list_totalseg_cases(root), structures, task)
        else:
            classes = _classes_of(root, None, task)

    unpaired = {p.case for p in problems.items} if layout == "image_label_folders" else set()
    out = []
    for index, entry in enumerate(cases):
        case = dict(entry)
        if label_key != "label":
            case.pop("label", None)
            if label_key in case:
                case["label"] = case.pop(label_key)
        for k, folder in (fill_from or {}).items():
            if folder is not None and k not in case:
                found = _find_case_file(Path(folder), str(case["case"]))
                if found is not None:
                    case[k] = str(found)
        needed = list(require)
        if list_of.get(index, "training") != "training" and key is None:
            needed = [k for k in needed if k == "image"]
        for k in needed:
            if k not in case and str(case["case"]) not in unpaired:
                shown = label_key if k == "label" else k
                problems.add(case["case"], None, f"has no {shown!r}; it has {sorted(entry)}")
        for k, v in case.items():
            if k in NON_PATH_KEYS or not isinstance(v, str):
                continue
            if layout == "totalsegmentator" and k == "label":
                continue  # built by materialize_labels
            if not Path(v).exists():
                problems.add(case["case"], v, "file not found", k)
        out.append(case)
    if strict:
        problems.raise_if_any(shown_source)
    return Cohort(
        cases=out, classes=classes, layout=layout, root=root, source=Path(shown_source), layouts=layouts,
        name=str((header or {}).get("name", "")), problems=tuple(problems.items), cache_dir=cache,
    )


def cohort_classes(
    source: str | Path,
    *,
    default: int | Mapping[int, str] | None = None,
    task: str | None = None,
    structures: Sequence[str] | None = None,
) -> dict[int, str]:
    """The class table of a dataset (one line in a bundle config).

    Args:
        source: anything :func:`load_cohort` reads.
        default: used when the cohort has no class table: a number of classes (background
            included; names ``class_<i>``) or a table.
        task: the table inside a ``classes.json`` holding several.
        structures: TotalSegmentator: the structures to keep.

    Returns:
        ``{value: name}`` with ``0: "background"``, sorted by value.

    Raises:
        InputError: the source is not a dataset, or it has no class table and no ``default``.

    Example:
        >>> cohort_classes("cohort", default=11)  # doctest: +SKIP
        {0: 'background', 1: 'myocardium', ...}
    """
    from medrefine.data.classes import default_classes

    cohort = load_cohort(source, key=None, require=(), structures=structures, task=task, strict=False)
    if cohort.classes is not None:
        return dict(sorted(cohort.classes.items()))
    if default is None:
        raise InputError(
            f"{cohort.source}: no class table (looked for the datalist's 'labels' and {CLASSES_FILE}); "
            "set `num_classes`"
        )
    if isinstance(default, Mapping):
        return dict(sorted((int(k), str(v)) for k, v in default.items()))
    return default_classes(int(default))


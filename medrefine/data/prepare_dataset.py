"""Prepare a whole dataset: every case cropped and resampled to a cube, written with its geometry.

The per-case geometry lives in :mod:`medrefine.data.prepare`; this module walks a datalist or a
pair of folders, writes the cubes (NIfTI and optionally the MultiNeAR layout), ``prepare_info.json``
with what maps each result back onto its original grid, and a new datalist, all into a temporary
folder that is renamed onto the output only when every case succeeded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medrefine.data.prepare import (
    _LAYOUTS,
    _RESERVED_FOLDERS,
    _SAFE_CASE,
    INFO_FILE,
    _check_interpolation,
    _triple,
    apply_prepare,
    normalize_appearance,
    prepare_case,
)
from medrefine.errors import InputError, did_you_mean

__all__ = ["prepare_dataset"]

logger = logging.getLogger(__name__)



def _entries_from_source(source: Any, key: str) -> tuple[list[dict], dict, list[Path]]:
    """(entries with absolute paths, header ``{"name", "labels"}``, folders the source lives in).

    A path is read with :func:`medrefine.data.cohort.load_cohort` (any layout it knows); a dict
    or list holds entries with paths already (as from ``datalist_from_folders``).
    """
    from medrefine.data.datalist import NON_PATH_KEYS

    if isinstance(source, (str, Path)):
        from medrefine.data.cohort import load_cohort

        cohort = load_cohort(source, key=key).materialize_labels()
        header: dict = {"name": cohort.name}
        if cohort.classes is not None:
            header["labels"] = {str(k): v for k, v in cohort.classes.items()}
        # TotalSegmentator's mask folder is what the merged label was made from, not a label to prepare
        cases = [{k: v for k, v in c.items() if k != "segmentations"} for c in cohort.cases]
        return cases, header, [cohort.root]
    if isinstance(source, Mapping):
        if key not in source:
            raise InputError(f"datalist has no list {key!r}; keys: {sorted(source)}.{did_you_mean(key, source)}")
        header, items = dict(source), source[key]
    else:
        header, items = {}, list(source)
    entries = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InputError(f"datalist entry {index} must be an object, got {item!r}")
        entry = dict(item)
        for k, v in entry.items():
            if k not in NON_PATH_KEYS and isinstance(v, (str, Path)):
                if not Path(v).exists():
                    raise InputError(f"file not found: {v} (entry {index}, case {entry.get('case')!r}, key {k!r})")
                entry[k] = str(Path(v).resolve())
        entries.append(entry)
    return entries, header, []


def _path_items(entry: Mapping) -> list[tuple[str, str]]:
    from medrefine.data.datalist import NON_PATH_KEYS

    return [(k, v) for k, v in entry.items() if k not in NON_PATH_KEYS and isinstance(v, str)]


def _check_output(out_dir: Path, entries: list[dict], input_dirs: list[Path], overwrite: bool) -> None:
    out = out_dir.resolve()
    folders = set(input_dirs)
    for entry in entries:
        for _, v in _path_items(entry):
            folders.add(Path(v).parent)
    for folder in sorted(folders):
        if out == folder or out in folder.parents:
            raise InputError(f"--out {out_dir} would replace the input folder {folder}; write somewhere else")
        if folder in out.parents and folder not in input_dirs:
            raise InputError(f"--out {out_dir} is inside the input folder {folder}; write somewhere else")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError(
            f"output folder {out_dir} exists and is not empty; choose another or pass --overwrite (overwrite=True)"
        )


def prepare_dataset(
    source: str | Path | Mapping | Sequence[Mapping],
    out_dir: str | Path,
    *,
    size: int | Sequence[int] = 128,
    margin_mm: float | Sequence[float] = 10.0,
    layout: str = "nifti",
    key: str = "training",
    label_interpolation: str = "linear",
    window: Sequence[float] | None = (-1000.0, 1000.0),
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Prepare every case of a datalist: crop, resample to a cube, write with the way back.

    Writes ``out_dir/images/<case>.nii.gz`` (float32), ``out_dir/labels/<case>.nii.gz`` (and
    ``out_dir/<key>/<case>.nii.gz`` for more label keys of the entries, e.g. ``label_clean``), all
    with the cube affine; ``prepare_info.json`` (per case: original paths, shape, affine, crop
    box, cube affine); ``datalist.json`` (relative paths, the input's class table kept);
    ``classes.json`` when the input datalist has ``labels``; and with ``layout="multinear"``
    also ``appearance/<case>.npy`` (normalised float32), ``shape/<case>.npy`` (uint8) and
    ``info.csv``. Everything is written to a hidden temporary folder next to ``out_dir`` that is
    renamed to ``out_dir`` at the end: after an error nothing is left behind.

    Args:
        source: a dataset path :func:`~medrefine.data.cohort.load_cohort` reads (a datalist JSON,
            a folder holding ``datalist.json``, ``images/`` + ``labels/``, ...), a datalist dict with
            absolute paths (as from :func:`~medrefine.data.datalist.datalist_from_folders`), or a
            list of such entries. Entries need ``image`` and ``label``.
        out_dir: output folder; must not be (or contain, or lie inside) a folder of input files.
        size: cube shape (one int or three). Default 128.
        margin_mm: margin around the labels' bounding box in mm. Default 10.
        layout: ``"nifti"`` or ``"multinear"`` (NIfTI plus the MultiNeAR arrays).
        key: datalist list to prepare. Default ``"training"``.
        label_interpolation: ``"linear"`` (one-hot vote, default) or ``"nearest"``.
        window: intensity window for MultiNeAR's appearance (see :func:`normalize_appearance`).
        overwrite: replace a non-empty ``out_dir``.
        progress: show a tqdm progress bar over cases.

    Returns:
        The new datalist, ``out_dir/datalist.json``.

    Raises:
        InputError: bad arguments, no cases, missing/unreadable files, an empty label, grids that
            differ (the message names the case and file), or an unsafe ``out_dir``.

    Example:
        >>> prepare_dataset("cohort/datalist.json", "prepared", size=64, margin_mm=5)  # doctest: +SKIP
        PosixPath('prepared/datalist.json')
    """
    from tqdm.auto import tqdm

    from medrefine.data.classes import parse_classes, save_classes
    from medrefine.data.datalist import write_datalist
    from medrefine.data.layouts import save_multinear_case, write_info_csv
    from medrefine.io import check_same_grid, load_image, load_label, save_nifti

    if layout not in _LAYOUTS:
        raise InputError(f"`layout` must be one of {_LAYOUTS}, got {layout!r}.{did_you_mean(layout, _LAYOUTS)}")
    _check_interpolation(label_interpolation)
    cube = _triple(size, "size", integer=True, minimum=1)
    margin = _triple(margin_mm, "margin_mm")
    entries, header, input_dirs = _entries_from_source(source, key)
    if not entries:
        raise InputError(f"no cases to prepare: the datalist list {key!r} is empty")
    for index, entry in enumerate(entries):
        for needed in ("image", "label"):
            if needed not in entry:
                raise InputError(
                    f"datalist entry {index} (case {entry.get('case')!r}) has no {needed!r}; it has {sorted(entry)}"
                )
        entry.setdefault("case", f"case_{index:03d}")
        if not _SAFE_CASE.match(str(entry["case"])):
            raise InputError(
                f"datalist entry {index}: case id {entry['case']!r} cannot be a file name "
                "(use letters, digits, '_', '-', '.')"
            )
        for k, _ in _path_items(entry):
            if k not in ("image", "label") and (not _SAFE_CASE.match(k) or k in _RESERVED_FOLDERS):
                raise InputError(
                    f"datalist entry {index} (case {entry['case']!r}): key {k!r} cannot name an output folder "
                    f"(reserved: {sorted(_RESERVED_FOLDERS)})"
                )
    out_dir = Path(out_dir)
    _check_output(out_dir, entries, input_dirs, overwrite)
    protect = [Path(v) for e in entries for _, v in _path_items(e)]
    classes = None
    if isinstance(header.get("labels"), Mapping):
        classes = parse_classes(header["labels"], source="datalist labels")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        infos: dict[str, dict] = {}
        new_entries, rows = [], []
        for entry in tqdm(entries, desc="prepare", unit="case", disable=not progress):
            case = str(entry["case"])
            try:
                image = load_image(entry["image"])
                label = load_label(entry["label"])
                check_same_grid(image, label, names=(entry["image"], entry["label"]))
                extra_keys = [k for k, _ in _path_items(entry) if k not in ("image", "label")]
                extras = {k: load_label(entry[k]) for k in extra_keys}
                image_cube, label_cube, info = prepare_case(
                    image, label, size=cube, margin_mm=margin, extra_labels=extras,
                    label_interpolation=label_interpolation, case=case,
                )
                info["image"], info["label"] = entry["image"], entry["label"]
                # paths relative to the datalist: they hold after tmp is renamed to out_dir
                new_entry = {"case": case, "image": f"images/{case}.nii.gz", "label": f"labels/{case}.nii.gz"}
                save_nifti(image_cube, tmp / new_entry["image"], protect=protect)
                save_nifti(label_cube, tmp / new_entry["label"], protect=protect)
                for k, extra in extras.items():
                    info[k] = entry[k]
                    new_entry[k] = f"{k}/{case}.nii.gz"
                    save_nifti(apply_prepare(extra, info, is_label=True), tmp / new_entry[k], protect=protect)
                if layout == "multinear":
                    appearance = normalize_appearance(image_cube.array, window=window)
                    save_multinear_case(tmp, case, appearance, label_cube.array)
            except InputError as err:
                raise type(err)(f"case {case!r}: {err}") from err
            infos[case] = info
            new_entries.append(new_entry)
            rows.append({"id": case})
        meta = {
            "source": str(Path(source).resolve()) if isinstance(source, (str, Path)) else None,
            "size": list(cube),
            "margin_mm": list(margin),
            "label_interpolation": label_interpolation,
            "layout": layout,
            "cases": infos,
        }
        (tmp / INFO_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        if layout == "multinear":
            write_info_csv(tmp, rows)
        datalist = {
            "name": str(header.get("name", "")),
            "description": (
                f"prepared by medrefine: cropped to the labels + {'/'.join(f'{m:g}' for m in margin)} mm, "
                f"resampled to {'x'.join(map(str, cube))}"
            ),
        }
        if classes is not None:
            datalist["labels"] = {str(k): v for k, v in classes.items()}
            save_classes(classes, tmp / "classes.json")
        datalist.update({"training": new_entries, "test": []})
        write_datalist(datalist, tmp / "datalist.json")
        _replace_output(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("prepared %d case(s) into %s", len(infos), out_dir)
    return out_dir / "datalist.json"


def _replace_output(tmp: Path, dest: Path) -> None:
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    else:
        os.replace(tmp, dest)

"""Readers and writers for the data layouts of the seed projects.

MultiNeAR (cardiac CT annotation refinement)::

    ROOT/appearance/<id>.npy   image cube, float32 (ours: normalised to [0, 1])
    ROOT/shape/<id>.npy        label cube, integer class values 0..N-1 (ours: uint8)
    ROOT/info.csv              one row per case, column ``id`` (more columns allowed)

TotalSegmentator (one binary mask per structure)::

    CASE/ct.nii.gz
    CASE/segmentations/<structure>.nii.gz     0/1 masks on the CT's grid

:func:`totalseg_to_multilabel` merges the masks of a TotalSegmentator case into one multi-label
volume plus a class table; :func:`multilabel_to_totalseg` splits one back into masks.

Overlapping structures: when two masks claim the same voxel, the structure with the **higher
class value wins** (masks are painted in increasing class value, later ones over earlier ones)
and a warning with the number of contested voxels is logged; pass ``overlap="error"`` to refuse
such cases instead.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrefine.errors import InputError, did_you_mean

if TYPE_CHECKING:
    from medrefine.io import Volume

__all__ = [
    "read_multinear",
    "write_multinear",
    "is_multinear",
    "save_multinear_case",
    "write_info_csv",
    "list_totalseg_cases",
    "totalseg_structures",
    "totalseg_to_multilabel",
    "multilabel_to_totalseg",
]

logger = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


# ----------------------------------------------------------------------------------- MultiNeAR


def is_multinear(root: str | Path) -> bool:
    """Whether ``root`` looks like a MultiNeAR folder (``appearance/``, ``shape/``, ``info.csv``)."""
    root = Path(root)
    return (root / "info.csv").is_file() and (root / "shape").is_dir()


def _read_info_csv(root: Path):
    import pandas as pd

    info = root / "info.csv"
    if not info.is_file():
        raise InputError(f"{root}: not a MultiNeAR folder, info.csv not found (expected appearance/, shape/, info.csv)")
    try:
        table = pd.read_csv(info, dtype={"id": str})
    except Exception as err:  # pandas raises several parser errors
        raise InputError(f"{info}: cannot read the CSV ({err})") from None
    if "id" not in table.columns:
        raise InputError(f"{info}: needs a column 'id' with the case ids, found columns {list(table.columns)}")
    ids = table["id"].astype(str).tolist()
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise InputError(f"{info}: repeated case ids {repeated}")
    return table


def _load_npy(path: Path, *, lazy: bool) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    try:
        array = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
    except Exception as err:  # truncated or not a .npy file
        raise InputError(f"{path}: cannot read the .npy file ({err})") from None
    if array.ndim != 3:
        raise InputError(f"{path}: expected a 3D array, got shape {array.shape}")
    return array


def read_multinear(root: str | Path, *, lazy: bool = False) -> list[dict[str, Any]]:
    """Read a MultiNeAR folder.

    Args:
        root: folder holding ``appearance/``, ``shape/`` and ``info.csv``.
        lazy: memory-map the arrays instead of reading them (``np.load(mmap_mode="r")``).

    Returns:
        One dict per row of ``info.csv``, in its order: ``{"case": id, "appearance": (X, Y, Z)
        float array, "shape": (X, Y, Z) integer array, "info": {other columns}}``.

    Raises:
        InputError: ``info.csv`` missing or without an ``id`` column, a listed case without its
            ``.npy`` files, unreadable or non-3D arrays, appearance/shape of different shapes,
            non-integer or negative shape values.

    Example:
        >>> cases = read_multinear("near_data")  # doctest: +SKIP
        >>> cases[0]["shape"].shape  # doctest: +SKIP
        (128, 128, 128)
    """
    root = Path(root)
    table = _read_info_csv(root)
    cases = []
    for row in table.to_dict(orient="records"):
        cid = str(row.pop("id"))
        appearance = _load_npy(root / "appearance" / f"{cid}.npy", lazy=lazy)
        shape = _load_npy(root / "shape" / f"{cid}.npy", lazy=lazy)
        if appearance.shape != shape.shape:
            raise InputError(
                f"{root}: case {cid!r}: appearance shape {appearance.shape} differs from shape (label) {shape.shape}"
            )
        if not np.issubdtype(shape.dtype, np.integer):
            values = np.asarray(shape)
            if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
                raise InputError(f"{root / 'shape' / (cid + '.npy')}: label values must be integers, got {shape.dtype}")
            if not lazy:
                shape = values.astype(np.int16)
        if shape.size and not lazy and shape.min() < 0:
            raise InputError(f"{root / 'shape' / (cid + '.npy')}: label values must be >= 0, got {shape.min()}")
        cases.append({"case": cid, "appearance": appearance, "shape": shape, "info": row})
    return cases


def _replace_folder(tmp: Path, dest: Path, *, overwrite: bool) -> None:
    """Move the finished folder ``tmp`` onto ``dest`` (an existing one only with ``overwrite``)."""
    if dest.exists():
        if not dest.is_dir():
            raise InputError(f"output {dest} exists and is not a folder")
        if any(dest.iterdir()) and not overwrite:
            raise InputError(f"output folder {dest} exists and is not empty; choose another or pass overwrite=True")
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def save_multinear_case(root: str | Path, case: str, appearance: np.ndarray, shape: np.ndarray) -> None:
    """Write ``appearance/<case>.npy`` (float32) and ``shape/<case>.npy`` (uint8) under ``root``.

    A building block of :func:`write_multinear` for writers that stream cases into a folder
    they make complete themselves (such as :func:`medrefine.data.prepare.prepare_dataset`).
    """
    root = Path(root)
    arrays = {"appearance": np.asarray(appearance, dtype=np.float32), "shape": np.asarray(shape).astype(np.uint8)}
    for folder, array in arrays.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        np.save(root / folder / f"{case}.npy", array)


def write_info_csv(root: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write MultiNeAR's ``info.csv`` (column ``id`` first, then any other columns of ``rows``)."""
    import pandas as pd

    from medrefine.io.writers import atomic_write

    path = Path(root) / "info.csv"
    with atomic_write(path) as tmp:
        pd.DataFrame(list(rows)).to_csv(tmp, index=False)
    return path


def write_multinear(
    root: str | Path, cases: Iterable[Mapping[str, Any]], *, overwrite: bool = False
) -> Path:
    """Write cases in the MultiNeAR layout; the folder appears complete or not at all.

    Args:
        root: the folder to create.
        cases: dicts with ``case`` (id), ``appearance`` (float array) and ``shape`` (integer label
            array of the same shape); an optional ``info`` dict adds columns to ``info.csv``.
        overwrite: replace ``root`` when it exists and is not empty (default: refuse).

    Returns:
        ``root``.

    Raises:
        InputError: no cases, repeated or unsafe ids, shapes that differ, labels that are not
            integers in 0..255, or ``root`` exists and is not empty.
    """
    root = Path(root)
    if root.exists() and root.is_dir() and any(root.iterdir()) and not overwrite:
        raise InputError(f"output folder {root} exists and is not empty; choose another or pass overwrite=True")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        rows = []
        for item in cases:
            cid = str(item["case"])
            if not _SAFE_NAME.match(cid):
                raise InputError(f"case id {cid!r} cannot be a file name (use letters, digits, '_', '-', '.')")
            if any(r["id"] == cid for r in rows):
                raise InputError(f"repeated case id {cid!r}")
            appearance = np.asarray(item["appearance"], dtype=np.float32)
            shape = np.asarray(item["shape"])
            if appearance.ndim != 3 or appearance.shape != shape.shape:
                raise InputError(
                    f"case {cid!r}: appearance and shape must be 3D arrays of one shape, got {appearance.shape} "
                    f"and {shape.shape}"
                )
            if not np.issubdtype(shape.dtype, np.integer) and not np.all(shape == np.round(shape)):
                raise InputError(f"case {cid!r}: shape (label) values must be integers, got dtype {shape.dtype}")
            if shape.size and (shape.min() < 0 or shape.max() > 255):
                raise InputError(
                    f"case {cid!r}: shape (label) values must be in 0..255, got {shape.min()}..{shape.max()}"
                )
            save_multinear_case(tmp, cid, appearance, shape)
            rows.append({"id": cid, **dict(item.get("info") or {})})
        if not rows:
            raise InputError(f"no cases to write to {root}")
        write_info_csv(tmp, rows)
        _replace_folder(tmp, root, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


# ---------------------------------------------------------------------------- TotalSegmentator


def _mask_name(path: Path) -> str:
    from medrefine.data.datalist import case_id

    return case_id(path)


def totalseg_structures(case_dir: str | Path) -> dict[str, Path]:
    """Structure name -> mask file for the ``segmentations/`` folder of a TotalSegmentator case.

    Raises:
        InputError: ``case_dir/segmentations`` is missing or holds no ``.nii.gz`` / ``.nii`` files.
    """
    seg_dir = Path(case_dir) / "segmentations"
    if not seg_dir.is_dir():
        raise InputError(f"{case_dir}: not a TotalSegmentator case, folder 'segmentations' not found")
    files = sorted(p for p in seg_dir.iterdir() if p.is_file() and p.name.endswith((".nii.gz", ".nii")))
    if not files:
        raise InputError(f"{seg_dir}: is empty, no structure masks (<structure>.nii.gz) found")
    return {_mask_name(p): p for p in files}


def list_totalseg_cases(root: str | Path) -> list[Path]:
    """Case folders under ``root`` that hold ``segmentations/`` (sorted).

    Raises:
        InputError: ``root`` is missing or holds no such folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"TotalSegmentator folder not found: {root}")
    cases = sorted(p for p in root.iterdir() if (p / "segmentations").is_dir())
    if not cases:
        raise InputError(f"{root}: no TotalSegmentator cases (<case>/segmentations/<structure>.nii.gz) found")
    return cases


def _resolve_classes(
    available: Mapping[str, Path],
    structures: Sequence[str] | None,
    classes: Mapping[int, str] | str | Path | None,
    source: str,
) -> dict[int, str]:
    from medrefine.data.classes import load_classes, parse_classes

    if isinstance(classes, (str, Path)):
        classes = load_classes(classes)
    elif classes is not None:
        classes = parse_classes({str(k): v for k, v in classes.items()}, source="`classes`")
    if structures is not None:
        if isinstance(structures, str):
            structures = [structures]
        for name in structures:
            if name not in available:
                raise InputError(f"{source}: no structure {name!r}.{did_you_mean(name, available)} "
                                 f"It has {len(available)} structures, e.g. {sorted(available)[:5]}")
        wanted = list(dict.fromkeys(structures))
    else:
        wanted = sorted(available)
    if classes is None:
        return {0: "background", **{i + 1: name for i, name in enumerate(wanted)}}
    by_name = {name: value for value, name in classes.items() if value != 0}
    missing = [name for name in wanted if name not in by_name]
    if missing:
        hint = did_you_mean(missing[0], by_name)
        raise InputError(f"{source}: structures {missing} are not in the class table `classes`.{hint}")
    return {0: "background", **dict(sorted((by_name[name], name) for name in wanted))}


def totalseg_to_multilabel(
    case_dir: str | Path,
    *,
    structures: Sequence[str] | None = None,
    classes: Mapping[int, str] | str | Path | None = None,
    overlap: str = "last",
) -> tuple[Volume, dict[int, str]]:
    """Merge the masks of a TotalSegmentator case into one multi-label volume.

    Args:
        case_dir: folder holding ``segmentations/<structure>.nii.gz`` (and usually ``ct.nii.gz``,
            whose grid every mask must share).
        structures: names of the structures to keep (default all); a typo gets a did-you-mean.
        classes: class table ``{value: name}`` (or a JSON file, e.g. TotalSegmentator's) fixing
            the label values; default: the chosen structures numbered 1..N in alphabetical order
            (or in the order of ``structures`` when given).
        overlap: ``"last"`` (default): on voxels claimed by several masks the higher class value
            wins, with a logged warning; ``"error"``: raise instead.

    Returns:
        ``(label, classes)``: a :class:`~medrefine.io.Volume` (uint8 when it fits, else uint16)
        with the masks' affine, and ``{0: "background", value: name, ...}``.

    Raises:
        InputError: no ``segmentations`` folder or no masks, unknown structure names, structures
            missing from ``classes``, masks on different grids, or overlap with ``"error"``.

    Example:
        >>> label, classes = totalseg_to_multilabel("s0000", structures=["liver", "spleen"])  # doctest: +SKIP
        >>> classes  # doctest: +SKIP
        {0: 'background', 1: 'liver', 2: 'spleen'}
    """
    from medrefine.io import Volume, check_same_grid, load_image, load_label

    if overlap not in ("last", "error"):
        hint = did_you_mean(overlap, ["last", "error"])
        raise ValueError(f"`overlap` must be 'last' or 'error', got {overlap!r}.{hint}")
    case_dir = Path(case_dir)
    available = totalseg_structures(case_dir)
    table = _resolve_classes(available, structures, classes, str(case_dir))
    reference = None
    ct = case_dir / "ct.nii.gz"
    if ct.is_file():
        reference = load_image(ct)
    dtype = np.uint8 if max(table) <= 255 else np.uint16
    out: np.ndarray | None = None
    contested = 0
    for value, name in table.items():
        if value == 0:
            continue
        mask_vol = load_label(available[name])
        if reference is None:
            reference = mask_vol
        else:
            check_same_grid(reference, mask_vol, names=(str(reference.path or "first mask"), str(available[name])))
        mask = np.asarray(mask_vol.array) > 0
        if out is None:
            out = np.zeros(mask.shape, dtype=dtype)
        clash = mask & (out > 0)
        if clash.any():
            if overlap == "error":
                others = sorted({table[int(v)] for v in np.unique(out[clash])})
                raise InputError(
                    f"{available[name]}: {int(clash.sum())} voxel(s) of {name!r} overlap {others}; "
                    "use overlap='last' to let the higher class value win"
                )
            contested += int(clash.sum())
        out[mask] = value
    if contested:
        logger.warning("%s: %d voxel(s) claimed by several structures; the higher class value won", case_dir, contested)
    if out is None or reference is None:
        raise InputError(f"{case_dir}: `structures` selects no structure, got {structures!r}")
    return Volume(out, reference.affine.copy(), path=None), table


def multilabel_to_totalseg(
    label: Volume,
    classes: Mapping[int, str],
    case_dir: str | Path,
    *,
    image: Volume | None = None,
    include_empty: bool = True,
    overwrite: bool = False,
) -> Path:
    """Split a multi-label volume into TotalSegmentator's one-mask-per-structure layout.

    Writes ``case_dir/segmentations/<name>.nii.gz`` (uint8 0/1, the label's affine) for every
    class but background, and ``case_dir/ct.nii.gz`` when ``image`` is given. The
    ``segmentations`` folder is built aside and moved in when complete.

    Args:
        label: the multi-label volume.
        classes: ``{value: name}``; names become file names, so they must be file-safe.
        case_dir: the case folder to write into (created).
        image: optional image on the label's grid, written as ``ct.nii.gz``.
        include_empty: also write all-zero masks for classes absent from ``label`` (default,
            as TotalSegmentator does).
        overwrite: replace an existing non-empty ``segmentations`` folder (default: refuse).

    Returns:
        The ``segmentations`` folder.

    Raises:
        InputError: values in ``label`` missing from ``classes``, repeated or unsafe names, an
            image on another grid, or existing output without ``overwrite``.
    """
    from medrefine.io import check_same_grid, save_nifti

    case_dir = Path(case_dir)
    names = [str(n) for v, n in classes.items() if int(v) != 0]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"`classes` must have unique names to be file names, repeated: {repeated}")
    bad = [n for n in names if not _SAFE_NAME.match(n)]
    if bad:
        raise InputError(f"`classes` names must be file-safe (letters, digits, '_', '-', '.'), got {bad}")
    array = np.asarray(label.array)
    present = {int(v) for v in np.unique(array)} - {0}
    unknown = sorted(present - {int(v) for v in classes})
    if unknown:
        raise InputError(f"label values {unknown} are not in `classes` (it has {sorted(int(v) for v in classes)})")
    if image is not None:
        check_same_grid(image, label, names=("image", "label"))
    seg_dir = case_dir / "segmentations"
    if seg_dir.exists() and any(seg_dir.iterdir()) and not overwrite:
        raise InputError(f"{seg_dir} exists and is not empty; pass overwrite=True to replace it")
    case_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".segmentations.tmp-", dir=case_dir))
    try:
        for value, name in sorted(classes.items()):
            if int(value) == 0 or (not include_empty and int(value) not in present):
                continue
            save_nifti((array == int(value)).astype(np.uint8), tmp / f"{name}.nii.gz", affine=label.affine)
        _replace_folder(tmp, seg_dir, overwrite=overwrite)
        if image is not None:
            save_nifti(image, case_dir / "ct.nii.gz", protect=[p for p in (image.path, label.path) if p])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return seg_dir

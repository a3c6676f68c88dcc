"""Pre-processing of cine cohorts for implicit models: per-subject point tables, arrays and a split manifest.

As NIMOSEF's ``preprocess_data`` (Banus et al., MICCAI 2025), for every subject:

- ``implicit/<case>.parquet``: one row per voxel and frame with world ``x, y, z`` (RAS mm), local
  cardiac ``u, v, w`` (mm, from the subject's ``.tfm`` or the grid centre), phase ``t = frame /
  frames``, ``frame``, normalised ``intensity`` and ``label``;
- ``implicit/<case>.npz``: the same as arrays (``image``, ``label``, ``local_mm``, ``affine``,
  ``local_to_world``, ``ed_frame``), which training reads;
- ``manifests/dataset_manifest.json``: the subjects, their files, the end-diastolic frame (the
  frame of largest LV volume when labelled, else 0) and a seeded 70/15/15 train/val/test split,
  kept on later runs while the subjects stay the same.

Every subject is opened and checked before the first file is written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medrefine.errors import InputError

__all__ = ["MANIFEST_FILE", "load_split", "normalise_intensity", "prepare_subject", "preprocess_cine",
           "read_manifest", "subject_table"]

logger = logging.getLogger(__name__)

MANIFEST_FILE = "dataset_manifest.json"
SPLITS = ("train", "val", "test")


def normalise_intensity(image: np.ndarray, window: Sequence[float] = (1.0, 99.0)) -> np.ndarray:
    """Map the ``window`` percentiles of ``image`` (all frames) to 0 and 1, clipped: ``float32``."""
    low, high = (float(v) for v in window)
    if not 0.0 <= low < high <= 100.0:
        raise InputError(f"`window` must be two percentiles 0 <= low < high <= 100, got {list(window)}")
    lo, hi = np.percentile(image, [low, high])
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def local_coordinates(affine: np.ndarray, shape: Sequence[int], local_to_world: np.ndarray) -> np.ndarray:
    """Local cardiac coordinates (mm) of every voxel centre, ``(X, Y, Z, 3)`` float32."""
    idx = np.stack(np.meshgrid(*[np.arange(int(s), dtype=np.float64) for s in shape[:3]], indexing="ij"), axis=-1)
    world = idx @ affine[:3, :3].T + affine[:3, 3]
    inverse = np.linalg.inv(local_to_world)
    return (world @ inverse[:3, :3].T + inverse[:3, 3]).astype(np.float32)


def prepare_subject(subject: Any, window: Sequence[float] = (1.0, 99.0)) -> dict[str, Any]:
    """Arrays of an opened :class:`~medrefine.data.cine.CineSubject` as training and fitting read them."""
    label = subject.label
    ed_frame = 0
    if label is not None:
        ed_frame = int(np.argmax((label == 1).reshape(-1, label.shape[3]).sum(axis=0)))
    return {
        "case": subject.case,
        "image": normalise_intensity(subject.image, window),
        "label": label,
        "local_mm": local_coordinates(subject.affine, subject.image.shape, subject.local_to_world),
        "affine": np.asarray(subject.affine, dtype=np.float64),
        "local_to_world": np.asarray(subject.local_to_world, dtype=np.float64),
        "ed_frame": ed_frame,
    }


def subject_table(case: Mapping[str, Any]):
    """One row per voxel and frame (columns in the module docstring), a pandas DataFrame."""
    import pandas as pd

    image = case["image"]
    shape, frames = image.shape[:3], image.shape[3]
    idx = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    world = (idx @ case["affine"][:3, :3].T + case["affine"][:3, 3]).astype(np.float32)
    local = case["local_mm"].reshape(-1, 3)
    n = world.shape[0]
    label = case["label"]
    columns = {
        "x": np.tile(world[:, 0], frames), "y": np.tile(world[:, 1], frames), "z": np.tile(world[:, 2], frames),
        "u": np.tile(local[:, 0], frames), "v": np.tile(local[:, 1], frames), "w": np.tile(local[:, 2], frames),
        "t": np.repeat(np.arange(frames, dtype=np.float32) / frames, n),
        "frame": np.repeat(np.arange(frames, dtype=np.int16), n),
        "intensity": image.reshape(n, frames).T.reshape(-1),
    }
    if label is not None:
        columns["label"] = label.reshape(n, frames).T.reshape(-1).astype(np.uint8)
    return pd.DataFrame(columns)


def _same_cases(manifest: Mapping[str, Any], cases: Sequence[str], seed: int) -> bool:
    listed = sorted(c for split in SPLITS for c in manifest.get("splits", {}).get(split, []))
    return listed == sorted(cases) and manifest.get("seed") == seed


def preprocess_cine(source: str | Path, out_dir: str | Path, *, seed: int = 0,
                    fractions: Sequence[float] = (0.7, 0.15, 0.15), window: Sequence[float] = (1.0, 99.0),
                    require_transform: bool = False, use_roi: bool = False, write_parquet: bool = True,
                    key: str | None = "training", nan_policy: str = "refuse") -> Path:
    """Write ``out_dir/implicit/*`` and ``out_dir/manifests/dataset_manifest.json`` (see the module docstring).

    Args:
        source: a BIDS-like cine folder, or a datalist / folder of 4D image + label pairs.
        out_dir: where ``implicit/`` and ``manifests/`` go (NIMOSEF: ``<dataset>/derivatives``).
        seed: seed of the split.
        fractions: train / val / test shares (a subject set too small for a share gets none).
        window: intensity percentiles mapped to 0 and 1.
        require_transform: refuse subjects without a ``.tfm``.
        use_roi: read the ``sa_roi`` images.
        write_parquet: also write the per-voxel tables (the npz arrays are always written).
        key: datalist list to read.
        nan_policy: ``"refuse"`` NaN/Inf image voxels (default) or set them to ``"zero"``.

    Returns:
        Path of ``dataset_manifest.json``.

    Raises:
        InputError: any subject that cannot be read (checked before anything is written),
            fractions that do not sum to 1.
    """
    from medrefine.data.cine import load_cine_cases, load_cine_subject
    from medrefine.data.splits import split_cases
    from medrefine.io import atomic_write

    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise InputError(f"`fractions` must be three shares (train, val, test) summing to 1, got {list(fractions)}")
    cases = load_cine_cases(source, key=key, require_transform=require_transform, use_roi=use_roi)
    subjects = [load_cine_subject(c, num_classes=4, require_transform=require_transform, nan_policy=nan_policy)
                for c in cases]
    out_dir = Path(out_dir)
    implicit, manifests = out_dir / "implicit", out_dir / "manifests"
    implicit.mkdir(parents=True, exist_ok=True)
    manifests.mkdir(parents=True, exist_ok=True)
    ids = [s.case for s in subjects]
    manifest_path = manifests / MANIFEST_FILE
    old = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if old and _same_cases(old, ids, int(seed)):
        splits = old["splits"]
    else:
        n = len(ids)
        n_val = int(round(fractions[1] * n)) if n >= 3 else 0
        n_test = int(round(fractions[2] * n)) if n >= 3 else 0
        raw = split_cases(ids, val=n_val if n_val else 0.0, test=n_test if n_test else 0.0, seed=int(seed))
        splits = {split: list(raw[split]) for split in SPLITS}
    entries = {}
    for subject, case in zip(subjects, cases):
        prepared = prepare_subject(subject, window)
        npz = implicit / f"{subject.case}.npz"
        with atomic_write(npz) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **{k: v for k, v in prepared.items() if k != "case" and v is not None})
        entry = {"npz": npz.name, "image": str(case["image"]), "label": case.get("label"),
                 "transform": case.get("transform"), "ed_frame": prepared["ed_frame"],
                 "frames": int(subject.frames), "shape": list(subject.image.shape[:3])}
        if write_parquet:
            parquet = implicit / f"{subject.case}.parquet"
            with atomic_write(parquet) as tmp:
                subject_table(prepared).to_parquet(tmp, index=False)
            entry["parquet"] = parquet.name
        entries[subject.case] = entry
    manifest = {"source": str(Path(source).resolve()), "seed": int(seed), "window": [float(v) for v in window],
                "fractions": [float(v) for v in fractions], "splits": splits, "subjects": entries}
    with atomic_write(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    logger.info("pre-processed %d cine subjects into %s", len(entries), implicit)
    return manifest_path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read ``dataset_manifest.json`` (a file or its ``manifests/`` folder's parent)."""
    from medrefine.io.jsonfile import read_json

    path = Path(path)
    if path.is_dir():
        path = path / "manifests" / MANIFEST_FILE
    data = read_json(path, what="dataset manifest")
    if not isinstance(data, dict) or "splits" not in data or "subjects" not in data:
        raise InputError(f"{path}: expected a dataset manifest with 'splits' and 'subjects', found {type(data).__name__}")
    data["_path"] = str(path)
    return data


def load_split(manifest: str | Path | Mapping[str, Any], split: str | Sequence[str] = "train") -> list[dict[str, Any]]:
    """The prepared arrays of the subjects of one split (or several), in manifest order.

    Raises:
        InputError: unknown split, or a missing npz file.
    """
    data = read_manifest(manifest) if not isinstance(manifest, Mapping) else manifest
    folder = Path(data["_path"]).parent.parent / "implicit"
    names = [split] if isinstance(split, str) else list(split)
    out = []
    for name in names:
        if name not in data["splits"]:
            raise InputError(f"{data['_path']}: expected a split among {list(data['splits'])}, found {name!r}")
        for case in data["splits"][name]:
            path = folder / data["subjects"][case]["npz"]
            if not path.is_file():
                raise InputError(f"{path}: expected the pre-processed arrays of {case!r}, found no file")
            with np.load(path) as arrays:
                item = {k: arrays[k] for k in arrays.files}
            item["case"] = case
            item["ed_frame"] = int(item["ed_frame"])
            item.setdefault("label", None)
            out.append(item)
    return out

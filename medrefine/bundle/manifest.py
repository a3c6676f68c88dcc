"""What a shared bundle holds: the files to pack, and a manifest of their sha256 and size.

The MONAI model zoo keeps hashes only for its large files (``large_files.yml``); a bundle shared
by medrefine lists every file (``manifest.json`` at the bundle's top), so a change of one byte in
a config, a doc or the weights is found before the bundle is installed or run.

A bundle's shareable parts are ``configs/``, ``docs/``, ``LICENSE`` and its trained models: each
``models/<name>.pt`` with its ``models/<name>.json`` description (see
:mod:`medrefine.workflows.models`). Checkpoints, logs and outputs are not shared.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from medrefine.errors import InputError

__all__ = [
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "bundle_files",
    "build_manifest",
    "check_manifest",
    "file_sha256",
    "model_files",
    "read_manifest",
]

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _regular(path: Path, root: Path) -> bool:
    """True for a regular file to share; raises for a link (a shared bundle holds none)."""
    if path.is_symlink():
        raise InputError(f"{path}: expected a regular file in the bundle, found a symbolic link; "
                         "replace it by the file it points to")
    if path.name.startswith(".") or "__pycache__" in path.relative_to(root).parts:
        return False
    return path.is_file()


def model_files(root: str | Path, models: str | Path | None = None) -> list[str]:
    """The trained models of the bundle at ``root``: every ``models/<name>.pt`` with its ``<name>.json``.

    Args:
        root: the bundle folder.
        models: the folder holding the models, when not ``<root>/models`` (a run's work
            directory, ``<work_dir>/models``); they are listed as ``models/<name>`` all the same.

    Returns:
        Sorted POSIX paths relative to ``root`` (as the shared bundle holds them), weights and
        descriptions both.
    """
    root = Path(root)
    found: list[str] = []
    folder = Path(models) if models is not None else root / "models"
    if not folder.is_dir():
        return found
    base = folder if models is not None else root
    for weights in sorted(folder.glob("*.pt")):
        description = weights.with_suffix(".json")
        if _regular(weights, base) and description.exists() and _regular(description, base):
            found += [f"models/{weights.name}", f"models/{description.name}"]
    return sorted(found)


def bundle_files(root: str | Path, *, weights: bool = True) -> list[str]:
    """The files of the bundle at ``root`` that a shared copy holds, sorted POSIX paths relative to it.

    Args:
        root: the bundle folder (``configs/metadata.json`` inside).
        weights: include the trained models (``models/<name>.pt`` + ``.json``). Default True.

    Raises:
        InputError: a shared part is a symbolic link (one line naming it).
    """
    root = Path(root)
    found: list[str] = []
    for part in ("configs", "docs"):
        folder = root / part
        if folder.is_symlink():
            _regular(folder, root)
        if folder.is_dir():
            found += [p.relative_to(root).as_posix() for p in sorted(folder.rglob("*")) if _regular(p, root)]
    if (root / "LICENSE").exists() and _regular(root / "LICENSE", root):
        found.append("LICENSE")
    if weights:
        found += model_files(root)
    return sorted(found)


def build_manifest(root: str | Path, files: list[str], *, name: str, version: str,
                   sources: dict[str, Path] | None = None) -> dict[str, Any]:
    """The manifest of ``files`` under ``root``: ``{"format", "name", "version", "medrefine_version", "files"}``.

    ``sources`` maps a path of ``files`` to the file to read when it is not ``root / path`` (the
    models of a run's work directory).

    ``files`` maps each path to ``{"sha256": ..., "size": ...}``, in sorted order, with no time
    stamp, so the same files give the same manifest.
    """
    from medrefine import __version__

    root = Path(root)
    where = dict(sources or {})
    paths = {rel: Path(where.get(rel, root / rel)) for rel in files}
    entries = {rel: {"sha256": file_sha256(paths[rel]), "size": paths[rel].stat().st_size} for rel in sorted(files)}
    return {"format": MANIFEST_FORMAT, "name": name, "version": version, "medrefine_version": __version__, "files": entries}


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check the shape of a ``manifest.json``.

    Raises:
        InputError: missing, not JSON, or entries without a 64-hex sha256 and a size (one line naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: expected the bundle's manifest (sha256 and size of every file), found none; "
                         "pack the bundle with `medrefine bundle pack`")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: expected a JSON manifest, found unreadable content ({err})") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or data.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path}: expected a manifest of format {MANIFEST_FORMAT} with a 'files' table, "
                         f"found {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    for rel, entry in files.items():
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("size") if isinstance(entry, dict) else None
        if not (isinstance(sha, str) and len(sha) == 64 and isinstance(size, int) and size >= 0):
            raise InputError(f"{path}: expected a sha256 and a size for {rel!r}, found {entry!r}")
        if rel.startswith("/") or ".." in rel.split("/") or "\\" in rel:
            raise InputError(f"{path}: expected paths inside the bundle, found {rel!r}")
    return data


def check_manifest(root: str | Path, manifest: dict[str, Any], *, where: str | None = None) -> int:
    """Compare the bundle at ``root`` with its manifest: every listed file present with its size and
    sha256, and no shareable file (:func:`bundle_files`) the manifest does not list.

    Args:
        root: the bundle folder.
        manifest: from :func:`read_manifest`.
        where: how to name the bundle in messages (default: ``root``).

    Returns:
        The number of files checked.

    Raises:
        InputError: the first difference, one line naming the file:
            ``<where>: configs/train.json: expected sha256 1a2b..., found 3c4d... (changed since it was packed); refused``.
    """
    root = Path(root)
    where = where or str(root)
    files: dict[str, dict[str, Any]] = manifest["files"]
    for rel, entry in sorted(files.items()):
        path = root / rel
        if path.is_symlink() or not path.is_file():
            raise InputError(f"{where}: {rel}: expected a file of {entry['size']} bytes (listed in the manifest), "
                             "found none; refused")
        size = path.stat().st_size
        if size != entry["size"]:
            raise InputError(f"{where}: {rel}: expected {entry['size']} bytes, found {size} "
                             "(changed since it was packed); refused")
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            raise InputError(f"{where}: {rel}: expected sha256 {entry['sha256'][:16]}..., found {digest[:16]}... "
                             "(changed since it was packed); refused")
    extra = sorted(set(bundle_files(root)) - set(files))
    if extra:
        raise InputError(f"{where}: {extra[0]}: expected only the files the manifest lists, found this one "
                         f"unlisted{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}; refused")
    return len(files)
